"""A real ``bot-bridge serve`` polling Telegram, killed with SIGKILL in the middle of a batch, then restarted.

The batch is six voice notes handed out by one getUpdates. The test holds
the fourth one's row in an open PostgreSQL transaction (an uncommitted
INSERT of the same platform and delivery id), so the poller records three
and then waits on the fourth, deterministically mid-batch, and is killed
there. Downloads are held too, so no reply is on its way at the moment of
the kill (a reply cut off mid-send is ``unconfirmed`` by design, another
test's subject). After the restart the new process takes over the pull
lease once the dead one's has run out, pulls the same batch again from the
saved offset (never advanced past unrecorded updates), records the three
missing notes, finds the three recorded ones, and every voice note gets
exactly one reply.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timezone

import pytest
import yaml
from sqlalchemy import text

from bot_bridge.remembering.cursors import Cursors
from bot_bridge.remembering.store import NoteStatus, Store, VoiceNoteRow
from tests import services
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import TEST_INBOUND, TEST_QUEUE, without_webhooks
from tests.platforms.telegram import FakeTelegram, voice_update
from tests.processes import free_port, serve, wait_for

BATCH = 6
HELD = 3  # index of the update whose recording the test holds up


@pytest.fixture
def deployment(tmp_path, tiny_model_dir):
    fake = FakeTelegram().start()
    database_url = services.create_postgres_database()
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": database_url,
        "model": {"name": str(tiny_model_dir), "threads": 1},
        "queue": {**TEST_QUEUE, "shutdown_grace_s": 1},
        "inbound": TEST_INBOUND,
    }))
    environ = {**os.environ, **without_webhooks(telegram=fake), "BOT_BRIDGE_CONFIG": str(config),
               "BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_PROCESSES": "1"}
    store = Store(database_url, tmp_path / "outputs")
    processes: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        port = free_port()
        process = serve(environ, port, tmp_path / f"{name}.log", "--port", str(port), ready="/readyz")
        processes.append(process)
        return process

    try:
        yield fake, store, start
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
        fake.stop()
        store.close()
        services.drop_postgres_database(database_url)


def test_a_poller_killed_mid_batch_answers_every_update_once_after_restart(deployment):
    fake, store, start = deployment
    audio = encode(speech_clip(2), 16000, "ogg_opus")
    updates = [voice_update(fake.add_file(audio)) for _ in range(BATCH)]
    for update in updates:
        fake.push_update(update)
    fake.delay_next("getFile", 120, times=100)  # no reply leaves before the kill
    blocker = store.session()
    blocker.add(_row_for(updates[HELD]))
    blocker.flush()  # an INSERT of the same key, not committed: the poller's INSERT of it waits

    first = start("first")
    wait_for(lambda: _recorded(store) == HELD, 60, f"the first {HELD} updates recorded")
    wait_for(lambda: _inserts_waiting_for_a_lock(store), 30, "the poller waiting to record the held update")
    assert _recorded(store) == HELD and Cursors(store).get("pull:telegram") is None
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    blocker.rollback()
    blocker.close()
    fake.clear_faults()

    start("second")
    fake.wait_for_messages(BATCH, timeout=90)
    notes = wait_for(lambda: _all_replied(store), 30, "every note replied")
    _wait_until_quiet(fake, seconds=TEST_QUEUE["lease_s"] + TEST_INBOUND["lease_s"] + 1)

    replied_to = sorted(m["params"]["reply_parameters"]["message_id"] for m in fake.sent_messages)
    assert replied_to == sorted(u["message"]["message_id"] for u in updates), "each update answered exactly once"
    assert sorted(int(note.delivery_id) for note in notes) == [u["update_id"] for u in updates]
    assert Cursors(store).get("pull:telegram") == str(updates[-1]["update_id"] + 1)
    assert fake.updates == [], "every update confirmed to Telegram"


def _row_for(update: dict) -> VoiceNoteRow:
    now = datetime.now(timezone.utc)
    return VoiceNoteRow(platform="telegram", delivery_id=str(update["update_id"]), kind="voice", chat_id="1",
                        received_at=now, status=NoteStatus.QUEUED, attempts=0, due_at=now, updated_at=now)


def _inserts_waiting_for_a_lock(store: Store) -> int:
    """PostgreSQL's own view: sessions whose INSERT into voice_notes waits for another transaction's lock."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query LIKE 'INSERT INTO voice_notes%'")
    with store.engine.connect() as connection:
        return connection.execute(query).scalar()


def _recorded(store: Store) -> int:
    return len(store.voice_notes(platform="telegram"))


def _all_replied(store: Store):
    notes = store.voice_notes(platform="telegram")
    return notes if len(notes) == BATCH and all(n.status == NoteStatus.REPLIED for n in notes) else None


def _wait_until_quiet(fake: FakeTelegram, seconds: float) -> None:
    """Give a wrongly repeated reply ``seconds`` to show itself (leases running out, sweeps)."""
    last = [len(fake.sent_messages), time.monotonic()]

    def quiet() -> bool:
        if len(fake.sent_messages) != last[0]:
            last[:] = [len(fake.sent_messages), time.monotonic()]
        return time.monotonic() - last[1] >= seconds

    wait_for(quiet, seconds + 30, f"{seconds} s without a new reply")
