"""A scaled-out deployment for real: 2 web + 2 worker processes on PostgreSQL and Redis.

Every process is ``python -m bot_bridge serve --role web|worker`` as an
operator starts it, with its own data directory (as on separate hosts),
sharing only the loopback PostgreSQL database, the Redis queue and the
platform fakes. The tiny random-weight model keeps it quick. The last test
kills a worker with SIGKILL, so it runs last.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from bot_bridge.acting.queue import WorkQueue
from bot_bridge.config import QueueSettings
from bot_bridge.remembering.store import NoteStatus, Store
from tests import services
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import TEST_QUEUE, one_note_each, platform_environment
from tests.platforms.slack import FakeSlack
from tests.platforms.telegram import FakeTelegram
from tests.platforms.wecom import FakeWeCom
from tests.processes import free_port, sample_sum, scrape, serve, wait_for

NOTES_PER_PLATFORM = 10


class Deployment:
    def __init__(self, root: Path, model_dir: Path) -> None:
        self.fakes = tuple(fake.start() for fake in (FakeTelegram(), FakeSlack(), FakeWeCom()))
        self.database_url = services.create_postgres_database()
        self.queue_name = f"test_{secrets.token_hex(4)}"
        config = root / "bot-bridge.yaml"
        config.write_text(yaml.safe_dump({
            "database_url": self.database_url,
            "model": {"name": str(model_dir), "threads": 1},
            "queue": {**TEST_QUEUE, "url": services.redis_url(), "name": self.queue_name, "shutdown_grace_s": 1},
        }))
        self.environ = {**os.environ, **platform_environment(*self.fakes), "BOT_BRIDGE_CONFIG": str(config),
                        "BOT_BRIDGE_PROCESSES": "1"}
        self.root = root
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.store = Store(self.database_url, root / "outputs")  # migrates: the processes find the schema

    def start(self, name: str, role: str) -> None:
        port = free_port()
        environ = {**self.environ, "BOT_BRIDGE_DATA_DIR": str(self.root / name)}
        self.ports[name] = port
        # A worker is ready once its model is loaded; a web process once the database and queue answer.
        self.processes[name] = serve(environ, port, self.root / f"{name}.log", "--role", role, "--port", str(port),
                                     ready="/readyz")

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def replies(self) -> int:
        return sum(len(fake.sent_messages) for fake in self.fakes)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            process.wait(30)
        for fake in self.fakes:
            fake.stop()
        self.store.close()
        services.drop_postgres_database(self.database_url)
        services.delete_redis_queue(self.queue_name)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, tiny_model_dir):
    deployment = Deployment(tmp_path_factory.mktemp("deployment"), tiny_model_dir)
    try:
        with ThreadPoolExecutor(4) as starting:  # the four start at once, as after a deploy
            roles = {"web-1": "web", "web-2": "web", "worker-1": "worker", "worker-2": "worker"}
            list(starting.map(deployment.start, roles, roles.values()))
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def voice():
    clip = speech_clip(2)
    return {fmt: encode(clip, 16000, fmt) for fmt in ("ogg_opus", "m4a_aac_moov_end", "amr")}


def test_each_of_thirty_notes_through_two_web_processes_gets_exactly_one_reply(deployment, voice):
    deliveries = [one for _ in range(NOTES_PER_PLATFORM) for one in one_note_each(deployment.fakes, voice)]
    webs = ["web-1", "web-2"]

    def deliver(numbered):
        number, (request, path) = numbered
        return request.send(deployment.url(webs[number % 2], f"/webhooks/{path}")).status_code

    with ThreadPoolExecutor(6) as senders:
        assert set(senders.map(deliver, enumerate(deliveries))) == {200}

    for fake in deployment.fakes:
        fake.wait_for_messages(NOTES_PER_PLATFORM, timeout=60)
    notes = wait_for(lambda: _all_replied(deployment.store, len(deliveries)), timeout=30, what="every note replied")
    _wait_until_quiet(deployment)

    assert [len(fake.sent_messages) for fake in deployment.fakes] == [NOTES_PER_PLATFORM] * 3
    assert {note.attempts for note in notes} == {1}
    assert len({(note.platform, note.reply_ref) for note in notes}) == len(deliveries)
    answered = [sample_sum(scrape(deployment.ports[w]), "bot_bridge_time_to_reply_seconds_count")
                for w in ("worker-1", "worker-2")]
    assert sum(answered) == len(deliveries) and min(answered) > 0, f"replies per worker: {answered}"


def test_the_same_deliveries_at_both_web_processes_at_once_get_one_reply_each(deployment, voice):
    """A platform delivering twice (its retry racing the first try) to two web processes: both copies of each
    note reach the two processes at the same moment, and each note is recorded, analysed and answered once."""
    before = deployment.replies()
    deliveries = [one for _ in range(2) for one in one_note_each(deployment.fakes, voice)]
    at_once = threading.Barrier(2 * len(deliveries))

    def deliver(web: str, request, path: str) -> int:
        at_once.wait(30)
        return request.send(deployment.url(web, f"/webhooks/{path}")).status_code

    with ThreadPoolExecutor(2 * len(deliveries)) as senders:
        answers = [senders.submit(deliver, web, request, path) for request, path in deliveries
                   for web in ("web-1", "web-2")]
        assert [answer.result() for answer in answers] == [200] * len(answers)

    wait_for(lambda: deployment.replies() >= before + len(deliveries), timeout=60, what="a reply to each note")
    _wait_until_quiet(deployment)
    assert deployment.replies() == before + len(deliveries)
    notes = deployment.store.voice_notes(limit=len(deliveries))
    assert {(note.status, note.attempts) for note in notes} == {(NoteStatus.REPLIED, 1)}


def test_deployments_sharing_one_redis_keep_to_their_own_queues(tmp_path):
    """Two deployments on one Redis, told apart by queue.name: B's worker takes B's note and never A's,
    although A's was queued first and A runs no worker."""
    names = [f"test_{secrets.token_hex(4)}" for _ in range(2)]
    taken, done = [], threading.Event()

    def note_handler(note_id: int) -> None:
        taken.append(note_id)
        done.set()

    a, b = (WorkQueue(QueueSettings(url=services.redis_url(), name=name), tmp_path / name,
                      note_handler=note_handler, upload_handler=lambda *_args, **_kwargs: {}) for name in names)
    try:
        a.enqueue(1)
        b.start_consumer(1)
        b.enqueue(2)
        assert done.wait(30)
        b.stop_consumer()
        assert taken == [2] and (a.huey.pending_count(), b.huey.pending_count()) == (1, 0)
    finally:
        b.stop_consumer()
        for name in names:
            services.delete_redis_queue(name)


def test_web_processes_never_load_the_model_and_hand_uploads_to_workers(deployment):
    wav = encode(speech_clip(2), 16000, "wav_s16")

    answer = requests.post(deployment.url("web-2", "/api/predict"), files={"file": ("a.wav", wav)},
                           data={"granularity": "timeline"}, timeout=60)

    assert answer.status_code == 201, answer.text
    assert answer.json()["random_weights"] is True and answer.json()["timeline"]
    stored = requests.get(deployment.url("web-1", f"/api/results/{answer.json()['id']}"), timeout=10)
    assert stored.json()["scores"] == answer.json()["scores"]
    for name, loaded in (("web-1", 0), ("web-2", 0), ("worker-1", 1), ("worker-2", 1)):
        [process] = [s for s in scrape(deployment.ports[name]) if s.name == "bot_bridge_process_model_loaded"]
        assert process.value == loaded, name
        maps = Path(f"/proc/{process.labels['pid']}/maps").read_text()
        assert ("libtorch" in maps) == bool(loaded), f"{name}: torch {'missing' if loaded else 'loaded'}"


def test_a_worker_killed_mid_note_leaves_it_to_the_other_which_replies_once(deployment, voice):
    telegram_fake = deployment.fakes[0]
    before, downloads = len(telegram_fake.sent_messages), len(telegram_fake.calls("download"))
    telegram_fake.delay_next("download", 60)  # the first worker to fetch it never gets its audio
    request, path = one_note_each(deployment.fakes, voice)[0]
    assert request.send(deployment.url("web-1", f"/webhooks/{path}")).status_code == 200
    telegram_fake.wait_until(lambda: len(telegram_fake.calls("download")) > downloads, timeout=30,
                             what="the held download")
    note = wait_for(lambda: _working(deployment.store), timeout=10, what="the note in work")
    holder_pid = int(note.lease_owner.split(":")[1])
    [victim] = [name for name, p in deployment.processes.items() if p.pid == os.getpgid(holder_pid)]

    os.killpg(deployment.processes[victim].pid, signal.SIGKILL)
    deployment.processes[victim].wait(10)

    telegram_fake.wait_for_messages(before + 1, timeout=30)
    done = wait_for(lambda: _replied(deployment.store, note.id), timeout=10, what="the note replied")
    _wait_until_quiet(deployment)
    assert len(telegram_fake.sent_messages) == before + 1
    assert (done.status, done.attempts) == (NoteStatus.REPLIED, 2)


def _all_replied(store: Store, count: int):
    notes = store.voice_notes(limit=count + 1)
    return notes if len(notes) == count and all(n.status == NoteStatus.REPLIED for n in notes) else None


def _working(store: Store):
    return next(iter(store.voice_notes(status=NoteStatus.WORKING, limit=1)), None)


def _replied(store: Store, note_id: int):
    note = store.voice_note(note_id)
    return note if note.status == NoteStatus.REPLIED else None


def _wait_until_quiet(deployment: Deployment) -> None:
    """Give a wrongly repeated reply a full lease and two recovery sweeps to show itself."""
    seconds = TEST_QUEUE["lease_s"] + 2 * TEST_QUEUE["recovery_interval_s"]
    last = [deployment.replies(), time.monotonic()]

    def quiet() -> bool:
        if deployment.replies() != last[0]:
            last[:] = [deployment.replies(), time.monotonic()]
        return time.monotonic() - last[1] >= seconds

    wait_for(quiet, timeout=seconds + 10, what=f"{seconds} s without a new reply")
