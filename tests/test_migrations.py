"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL, keep what was there (the
alerts sent before cases existed), and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import importlib
import pkgutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, event, text

import bot_bridge.remembering
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.case_store import CaseStore
from bot_bridge.remembering.store import Base, Store, migrate

# Every module of the remembering stage declares its tables on Base: all of them are compared.
for _module in pkgutil.iter_modules(bot_bridge.remembering.__path__):
    importlib.import_module(f"bot_bridge.remembering.{_module.name}")

#: SQLite's full-text index of transcripts (migration 0010): an FTS5 virtual table, whose own index lives in
#: shadow tables FTS5 makes (result_words_fts_data, _idx, _docsize, _config). SQLAlchemy cannot declare a
#: virtual table, so no model has them; test_search.py checks that they answer, on SQLite and PostgreSQL.
SQLITE_FULL_TEXT = "result_words_fts"


# The GIN index over the transcript words is PostgreSQL's (on SQLite the FTS5 table does its work); alembic
# cannot read an expression index back from SQLite, and says so. On PostgreSQL it is compared like any other.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index "
                            "'ix_result_words_terms'; dialect 'sqlite'")
def test_the_migrated_schema_is_exactly_what_the_models_declare(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, Base.metadata) if not _alembic_own(d)]
    store.close()
    assert differences == []


def test_the_audit_log_keeps_who_did_what_where_newest_first(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    audit = AuditLog(store)
    start = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    audit.record("alice", "console", "case.acknowledge", "case:1", at=start)
    audit.record("slack:U123", "slack", "case.resolve", "case:1", detail={"name": "Bob"}, at=start + timedelta(minutes=5))
    audit.record("alice", "console", "user.disable", "user:carol", at=start + timedelta(minutes=9))

    case = audit.entries(subject="case:1")
    assert [(e.actor, e.via, e.action) for e in case] == [("slack:U123", "slack", "case.resolve"),
                                                          ("alice", "console", "case.acknowledge")]
    assert case[0].detail == {"name": "Bob"} and case[0].at == start + timedelta(minutes=5)
    assert [e.action for e in audit.entries(actor="alice")] == ["user.disable", "case.acknowledge"]
    newest = audit.entries(limit=1)
    assert [e.action for e in audit.entries(before_id=newest[0].id)] == ["case.resolve", "case.acknowledge"]
    store.close()


def test_escalations_from_before_cases_become_resolved_cases_with_their_deliveries(database_url, tmp_path):
    """Migration 0011 on a database with an alert already sent: the note becomes a case of its own (same id),
    resolved since nobody could work it, and its delivery the case's; new cases are numbered after it."""
    engine = create_engine(database_url)
    if database_url.startswith("sqlite"):
        event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA foreign_keys=ON"))
    _migrate(engine, "0007")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO results (id, created_at, origin, emotion, confidence, scores, duration_s, speech_ratio, "
            "model_name, random_weights, payload) VALUES ('r1', '2026-03-04 06:00:05', 'telegram', 'angry', 0.9, "
            "'{}', 3, 1, 'm', false, '{}')"))
        connection.execute(text(
            "INSERT INTO voice_notes (platform, delivery_id, kind, chat_id, sender_id, received_at, status, attempts, "
            "due_at, updated_at, result_id) VALUES ('telegram', 'd1', 'voice', '-100777', '42', '2026-03-04 06:00:00', "
            "'replied', 1, '2026-03-04 06:00:00', '2026-03-04 06:00:00', 'r1')"))
        connection.execute(text(
            "INSERT INTO escalations (result_id, voice_note_id, source, emotion, score, threshold, severe, matched_at) "
            "VALUES ('r1', 1, 'telegram:-100777', 'angry', 0.9, 0.5, false, '2026-03-04 06:05:00')"))
        connection.execute(text(
            "INSERT INTO escalation_deliveries (escalation_id, target, state, attempts, maybe_sent, message_ref, "
            "updated_at) VALUES (1, 'slack', 'sent', 1, false, '1700000000.000100', '2026-03-04 06:05:01')"))
    _migrate(engine, "head")
    engine.dispose()

    store = Store(database_url, tmp_path / "outputs")
    [view] = CaseStore(store).views()
    assert (view.case.id, view.case.state, view.case.source, view.case.sender_id, view.case.group_key) == (
        1, "resolved", "telegram:-100777", "42", None)
    assert view.escalation.case_id == 1 and view.result.id == "r1"
    [delivery] = CaseStore(store).deliveries([1])[1]
    assert (delivery.target, delivery.state, delivery.message_ref, delivery.shown_version) == (
        "slack", "sent", "1700000000.000100", view.case.version)
    with store.session.begin() as session:
        session.execute(text(
            "INSERT INTO cases (source, state, opened_at, last_note_at, notes, emotion, score, threshold, severe, "
            "level, version, updated_at) VALUES ('telegram:-100777', 'open', '2026-03-05 00:00:00', "
            "'2026-03-05 00:00:00', 1, 'angry', 0.9, 0.5, false, 0, 1, '2026-03-05 00:00:00')"))
        assert session.execute(text("SELECT MAX(id) FROM cases")).scalar() == 2
    store.close()


def _migrate(engine, revision: str) -> None:
    migrate(engine, revision)


def _alembic_own(difference) -> bool:
    """alembic_version is alembic's bookkeeping, not a model; nor is SQLite's full-text table."""
    return difference[0] == "remove_table" and (difference[1].name == "alembic_version"
                                                or difference[1].name.startswith(SQLITE_FULL_TEXT))
