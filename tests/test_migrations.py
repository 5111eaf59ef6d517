"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL, and the audit log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import importlib
import pkgutil

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import bot_bridge.remembering
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.store import Base, Store

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


def _alembic_own(difference) -> bool:
    """alembic_version is alembic's bookkeeping, not a model; nor is SQLite's full-text table."""
    return difference[0] == "remove_table" and (difference[1].name == "alembic_version"
                                                or difference[1].name.startswith(SQLITE_FULL_TEXT))
