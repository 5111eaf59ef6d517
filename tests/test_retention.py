"""Deleting people's data (``remembering/forgetting.py``, ``acting/retention.py``, ``bot-bridge purge``), on
SQLite and PostgreSQL: rows, output folders, search words, labels and escalations go together; cases keep their
counts; a deletion killed halfway (a real SIGKILL) leaves no row without its files and no files without a row,
and the next run finishes it."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select, update

from bot_bridge.acting.retention import Retention
from bot_bridge.acting.scheduler import build_scheduler
from bot_bridge.chat.messages import ChatMessage
from bot_bridge.cli import cli
from bot_bridge.config import load_settings
from bot_bridge.hearing.playable import PLAYABLE_FILE
from bot_bridge.remembering import forgetting
from bot_bridge.remembering.alert_store import DigestRow, DigestState, ForgottenNotesRow
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.case_store import CaseRow, CaseStore, MatchedNote
from bot_bridge.remembering.forgetting import Counted, Forgetting, ForgettingRow, Selection
from bot_bridge.remembering.labels import Labels, Verdict
from bot_bridge.remembering.results import Result
from bot_bridge.remembering.search import SearchIndex
from bot_bridge.remembering.store import NoteStatus, ResultRow, Store, VoiceNoteRow
from tests.alert_helpers import NOON, scores, transcript
from tests.chat_helpers import running_bot
from tests.processes import free_port, start, wait_for

AUDIO = b"#!AMR\n" + bytes(2000)


def kept_note(store: Store, *, received_at: datetime = NOON, platform: str = "telegram", chat_id: str = "-100777",
              sender: str = "alice", said: str = "refund my order please") -> tuple[int, str]:
    """A chat voice note, analysed and replied to, whose recording and playable copy were kept: (note, result)."""
    message = ChatMessage(platform=platform, delivery_id=f"{platform}-{sender}-{received_at.timestamp()}-{said}",
                          kind="voice", chat_id=chat_id, sender_id=sender, sender_name=sender.title(),
                          received_at=received_at)
    note_id, _ = store.record_voice_note(message)
    result_id = upload(store, created_at=received_at + timedelta(seconds=5), said=said, origin=platform)
    with store.session.begin() as session:
        session.execute(update(VoiceNoteRow).where(VoiceNoteRow.id == note_id).values(
            result_id=result_id, status=NoteStatus.REPLIED, reply_text=f"You sound angry: “{said}”"))
    return note_id, result_id


def upload(store: Store, *, created_at: datetime = NOON, said: str = "where is my parcel", origin: str = "api") -> str:
    result = Result(scores=scores(angry=0.7), duration_s=6.0, speech_ratio=1.0, model={"name": "test-model"},
                    origin=origin, created_at=created_at, transcript=transcript(said))
    store.save_result(result, audio=AUDIO, audio_suffix=".amr", files={PLAYABLE_FILE: b"m4a"})
    return result.id


def folders(store: Store) -> set[str]:
    return {path.name for path in store.outputs_dir.iterdir()} if store.outputs_dir.exists() else set()


def assert_rows_and_folders_agree(store: Store) -> None:
    """Every result not marked for deletion has its whole folder; every folder on disk has its row."""
    with store.session() as session:
        rows = list(session.execute(select(ResultRow.id, ResultRow.output_dir)))
        marked = set(session.scalars(select(ForgettingRow.result_id)))
    on_disk = folders(store)
    assert {Path(folder).name for _, folder in rows} >= on_disk, "a folder without its row"
    for result_id, folder in rows:
        if result_id not in marked:
            assert (Path(folder) / "result.json").is_file() and (Path(folder) / "audio.amr").is_file()


def test_forgetting_a_sender_takes_notes_results_folders_words_labels_and_keeps_the_case_count(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    first_note, first = kept_note(store, sender="alice", said="refund my order please")
    _, second = kept_note(store, sender="alice", said="refund again", received_at=NOON + timedelta(minutes=1))
    _, other = kept_note(store, sender="bob", said="refund for bob")
    note = store.voice_note(first_note)
    case_id = CaseStore(store).record_note(MatchedNote(note, store.result_row(first), "angry", 0.7, 0.5, False), [],
                                           NOON, timedelta(minutes=30))
    Labels(store).record(first, emotion="angry", verdict=Verdict.CONFIRMED, actor="agent", via="console")
    with store.session.begin() as session:  # the day's digest went out quoting her; its texts are kept to resend
        session.add(DigestRow(target="slack", day=NOON.date(), state=DigestState.SENT, parts_sent=1, attempts=1,
                              maybe_sent=False, texts=["“refund my order please”"], updated_at=NOON))
    search = SearchIndex(store)
    assert len(search.search("refund")) == 3

    deleted = Forgetting(store, batch=1).forget(Selection.of_sender("telegram", "alice"), actor="telegram:alice",
                                                via="telegram")

    assert deleted == Counted(notes=2, results=2)
    assert store.result_row(first) is None and store.result_row(second) is None
    assert [found.result.id for found in search.search("refund")] == [other]
    assert [n.sender_id for n in store.voice_notes()] == ["bob"]
    assert len(folders(store)) == 1 and store.result_file(other, PLAYABLE_FILE) is not None
    assert Labels(store).history(first) == []
    with store.session() as session:
        assert session.get(CaseRow, case_id).notes == 1  # the count stays; the note's content is gone
        assert session.scalar(select(ForgettingRow.id)) is None
        assert session.scalar(select(DigestRow.texts)) is None and session.scalar(select(DigestRow.state)) == "sent"
    assert CaseStore(store).notes(case_id) == []
    [entry] = AuditLog(store).entries(actor="telegram:alice")
    assert (entry.action, entry.subject, entry.detail) == ("data.delete", "sender:telegram:alice",
                                                           {"notes": 2, "results": 2})
    assert_rows_and_folders_agree(store)
    store.close()


def test_a_deleted_note_leaves_the_queue_and_a_worker_holding_it_cannot_reply(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    queued, _ = store.record_voice_note(ChatMessage(platform="slack", delivery_id="q", kind="voice", chat_id="C1",
                                                    sender_id="U1"))
    held, _ = store.record_voice_note(ChatMessage(platform="slack", delivery_id="h", kind="voice", chat_id="C1",
                                                  sender_id="U1"))
    assert store.claim_voice_note(held, "worker-1", 60) is not None

    Forgetting(store).forget(Selection.of_chat("slack", "C1"), actor="admin", via="console")

    assert store.claim_voice_note(queued, "worker-2", 60) is None
    assert not store.save_reply(held, "worker-1", "hello", result_id=None, error_code=None, error_detail=None)
    assert store.recover_voice_notes(overdue_s=0, queue_idle=True) == ([], [])
    assert store.voice_notes() == []
    store.close()


def test_purge_dry_run_counts_and_deletes_nothing_then_purge_deletes(database_url, tmp_path):
    store = Store(database_url, tmp_path / "data" / "outputs")
    kept_note(store, platform="wecom", chat_id="zhangsan", sender="zhangsan")
    kept_note(store, platform="wecom", chat_id="zhangsan", sender="zhangsan", said="第二条",
              received_at=NOON + timedelta(hours=1))
    kept_note(store, platform="wecom", chat_id="lisi", sender="lisi")
    environ = {"BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_DATABASE_URL": database_url}
    runner = CliRunner()

    dry = runner.invoke(cli, ["purge", "--sender", "wecom:zhangsan", "--dry-run"], env=environ)
    assert dry.exit_code == 0, dry.output
    assert dry.output.strip() == "would delete 2 voice notes and 2 results"
    assert len(store.voice_notes()) == 3 and len(folders(store)) == 3

    done = runner.invoke(cli, ["purge", "--sender", "wecom:zhangsan"], env=environ)
    assert done.output.strip() == "deleted 2 voice notes and 2 results"
    assert [note.sender_id for note in store.voice_notes()] == ["lisi"] and len(folders(store)) == 1

    refused = runner.invoke(cli, ["purge", "--chat", "wecom:lisi", "--before", "2026-01-01"], env=environ)
    assert refused.exit_code == 2 and "exactly one of" in refused.output
    entries = [entry for entry in AuditLog(store).entries() if entry.action == "data.delete"]
    assert [(entry.via, entry.detail) for entry in entries] == [("cli", {"notes": 2, "results": 2})]
    store.close()


@pytest.mark.parametrize("killed", [["purge", "--before", "2026-03-05"], ["serve"]], ids=["purge", "retention-sweep"])
def test_a_deletion_killed_halfway_leaves_rows_and_files_together_and_the_next_sweep_finishes(
        database_url, tmp_path, tiny_model_dir, killed):
    """``bot-bridge purge``, or the retention sweep a starting ``bot-bridge serve`` runs, is SIGKILLed after
    some of its batches of one."""
    data = tmp_path / "data"
    store = Store(database_url, data / "outputs")
    uploads = [upload(store, created_at=NOON + timedelta(seconds=n)) for n in range(120)]
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(data), "database_url": database_url,
                                      "model": {"name": str(tiny_model_dir), "threads": 1},
                                      "server": {"host": "127.0.0.1", "port": free_port()},
                                      "retention": {"batch": 1, "results_days": 1}}))
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("BOT_BRIDGE_")}}
    deleting = start([sys.executable, "-m", "bot_bridge", "--config", str(config), *killed], environ,
                     tmp_path / "killed.log")
    wait_for(lambda: len(folders(store)) <= 100 or deleting.poll() is not None, 120, "the deletion under way")
    os.killpg(deleting.pid, signal.SIGKILL)
    deleting.wait()
    left = len(folders(store))
    assert 0 < left < len(uploads), (deleting.returncode, (tmp_path / "killed.log").read_text())
    assert_rows_and_folders_agree(store)

    settings = load_settings(config_file=config, environ={})
    Retention(store, settings.retention).sweep(NOON + timedelta(days=2))

    assert folders(store) == set() and store.voice_notes() == []
    with store.session() as session:
        assert session.scalar(select(ResultRow.id)) is None and session.scalar(select(ForgettingRow.id)) is None
    store.close()


def stopped_after_marking(store: Store, monkeypatch, notes: int) -> list[int]:
    """``notes`` of Alice's notes marked for deletion by a process that stopped before erasing any: their ids."""
    ids = [kept_note(store, sender="alice", said=f"refund {n}", received_at=NOON + timedelta(minutes=n))[0]
           for n in range(notes)]
    with monkeypatch.context() as patch:
        patch.setattr(Forgetting, "_erase", lambda *_: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            Forgetting(store).forget(Selection.of_sender("telegram", "alice"), actor="admin", via="cli")
    with store.session() as session:
        assert len(session.scalars(select(ForgettingRow.id)).all()) == notes
    return ids


def counts_kept(store: Store) -> int:
    with store.session() as session:
        return sum(session.scalars(select(ForgottenNotesRow.notes)))


def test_two_processes_finishing_the_same_marks_at_once_keep_each_notes_count_once(database_url, tmp_path,
                                                                                  monkeypatch):
    """The first takes the marks and holds its commit open for a second; the second waits for it, then finds
    nothing left to take (before, both counted the notes for digests)."""
    first, second = (Store(database_url, tmp_path / "outputs") for _ in range(2))
    stopped_after_marking(first, monkeypatch, 6)
    counting, original = threading.Event(), forgetting._counts_kept

    def slow_first(session, note_ids):
        counted = original(session, note_ids)
        if not counting.is_set():
            counting.set()
            time.sleep(1.0)
        return counted

    monkeypatch.setattr(forgetting, "_counts_kept", slow_first)
    finishing = threading.Thread(target=Forgetting(first).finish)
    finishing.start()
    assert counting.wait(10)
    Forgetting(second).finish()
    finishing.join(10)

    assert counts_kept(first) == 6
    assert folders(first) == set() and first.voice_notes() == []
    first.close()
    second.close()


def test_a_deletion_stopped_after_marking_is_finished_by_the_workers_recovery_sweep(database_url, tmp_path,
                                                                                 monkeypatch, tiny_model_dir,
                                                                                 tiny_model):
    """No retention rule and no later deletion: the queue workers' periodic recovery finishes it."""
    store = Store(database_url, tmp_path / "outputs")
    stopped_after_marking(store, monkeypatch, 3)
    assert len(folders(store)) == 3

    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ={}, database_url=database_url):
        wait_for(lambda: not folders(store) and not store.voice_notes(), 10, "the marked notes deleted")

    assert counts_kept(store) == 3
    with store.session() as session:
        assert session.scalar(select(ForgettingRow.id)) is None and session.scalar(select(ResultRow.id)) is None
    store.close()


def test_the_retention_sweep_deletes_what_is_due_and_a_chat_rule_is_stricter(database_url, tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), database_url=database_url, retention={
        "audio_days": 7, "results_days": 30, "chats": {"slack:*": {"results_days": 10}}})
    store = Store(settings.resolved_database_url, settings.outputs_dir)
    now = NOON + timedelta(days=60)
    _, old = kept_note(store, received_at=now - timedelta(days=40))
    _, recent = kept_note(store, received_at=now - timedelta(days=2))
    _, week_old = kept_note(store, received_at=now - timedelta(days=8), said="a week ago")
    _, slack_old = kept_note(store, platform="slack", chat_id="C1", received_at=now - timedelta(days=12))
    _, slack_recent = kept_note(store, platform="slack", chat_id="C1", received_at=now - timedelta(days=9))
    old_upload = upload(store, created_at=now - timedelta(days=31))
    retention = Retention(store, settings.retention)
    assert retention.kept().next_sweep is None  # never swept: the first runs at the next start

    deleted, recordings = retention.sweep(now)

    assert deleted == Counted(notes=2, results=3)
    assert recordings == 2  # the week-old note's and the slack note of 9 days
    remaining = {row.id: row for row in (store.result_row(r) for r in (old, recent, week_old, slack_old, slack_recent,
                                                                        old_upload)) if row is not None}
    assert set(remaining) == {recent, week_old, slack_recent}
    assert remaining[week_old].audio_file is None and store.result_file(week_old, PLAYABLE_FILE) is None
    assert store.result_file(week_old, "result.json") is not None
    assert Path(remaining[recent].audio_file).is_file()
    kept = retention.kept()
    assert (kept.results, kept.notes, kept.recordings) == (3, 3, 1)
    assert kept.next_sweep == now + timedelta(hours=24)
    assert build_scheduler(settings, store, {}).jobs.keys() == {"retention sweep"}
    store.close()


@pytest.mark.parametrize("rule", [{"audio_days": 0}, {"chats": {"telegram": {"results_days": 3}}}])
def test_retention_settings_refuse_what_cannot_be_meant(tmp_path, rule):
    from bot_bridge.config import ConfigError

    with pytest.raises(ConfigError):
        load_settings(environ={}, data_dir=str(tmp_path), retention=rule)


def test_metrics_show_what_is_kept_the_rules_and_the_next_sweep(tmp_path, tiny_model_dir, tiny_model):
    from bot_bridge.service import Service
    from bot_bridge.web import create_app
    from tests.processes import parse_metrics

    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), model__name=str(tiny_model_dir),
                             retention={"audio_days": 7})
    service = Service(settings, model=tiny_model)
    kept_note(service.store)
    upload(service.store)
    swept_at = datetime.now(timezone.utc)
    Retention(service.store, settings.retention).sweep(swept_at)

    samples = parse_metrics(create_app(service=service).test_client().get("/metrics").get_data(as_text=True))
    service.close()

    by_name = {(s.name, s.labels.get("what")): s.value for s in samples if "kept" in s.name or "retention" in s.name}
    assert by_name == {("bot_bridge_kept", "results"): 2, ("bot_bridge_kept", "notes"): 1,
                       ("bot_bridge_kept", "recordings"): 0, ("bot_bridge_retention_days", "audio"): 7,
                       ("bot_bridge_retention_next_sweep_timestamp_seconds", None):
                           pytest.approx((swept_at + timedelta(hours=24)).timestamp())}


def test_a_sweep_is_due_a_day_after_the_last_whichever_process_holds_the_lease_then(database_url, tmp_path):
    """The holder sweeps, then dies without a sweep for a day; a process that started long before it (its own
    day-long timer far off) takes the lease over and sweeps within the minute it is due."""
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                             retention={"results_days": 1})
    store = Store(settings.resolved_database_url, settings.outputs_dir)
    now = [NOON + timedelta(days=3)]
    holder, other = (build_scheduler(settings, store, {}, clock=lambda: now[0], holder=name) for name in ("p0", "p1"))
    kept_note(store, received_at=NOON + timedelta(days=2, hours=12))  # due at NOON + 3 days 12 hours

    assert holder.run("retention sweep") and not other.run("retention sweep")
    now[0] += timedelta(hours=13)
    assert holder.run("retention sweep") and len(store.voice_notes()) == 1, "not a day since the last sweep"
    now[0] += timedelta(hours=11)  # the holder died; its lease ran out long ago
    assert other.run("retention sweep") and store.voice_notes() == []

    sweeps = AuditLog(store).entries(action="retention.sweep")
    assert [(entry.at, entry.detail["notes"]) for entry in sweeps] == [(now[0], 1), (NOON + timedelta(days=3), 0)]
    store.close()


def test_the_sweep_runs_in_one_process_of_a_deployment_the_lease_holder(database_url, tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                             retention={"results_days": 1})
    stores = [Store(settings.resolved_database_url, settings.outputs_dir) for _ in range(2)]
    kept_note(stores[0])
    schedulers = [build_scheduler(settings, store, {}, clock=lambda: NOON + timedelta(days=3), holder=f"p{n}")
                  for n, store in enumerate(stores)]

    ran = [scheduler.run("retention sweep") for scheduler in schedulers]

    assert ran == [True, False] and stores[1].voice_notes() == [] and folders(stores[1]) == set()
    assert [entry.detail["notes"] for entry in AuditLog(stores[1]).entries(actor="retention")] == [1]
    for store in stores:
        store.close()
