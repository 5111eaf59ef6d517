"""Pull cursors in the database: the migration matches the models, and a position is replaced, never lost."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot_bridge.remembering.cursors import Cursors
from bot_bridge.remembering.store import Base, Store

#: What migration 0007 creates or changes.
TABLES = {"cursors", "voice_notes"}


def test_a_cursor_is_saved_replaced_and_read_back_by_another_process(database_url, tmp_path):
    store, other = Store(database_url, tmp_path / "a"), Store(database_url, tmp_path / "b")
    cursors = Cursors(store)

    assert cursors.get("pull:telegram") is None
    cursors.save("pull:telegram", "860000002")
    Cursors(other).save("pull:telegram", "860000007")
    cursors.save("pull:wecom_kf", "opaque-sync-token")

    assert Cursors(other).get("pull:telegram") == "860000007"
    assert cursors.get("pull:wecom_kf") == "opaque-sync-token"
    store.close()
    other.close()


def test_the_migration_creates_exactly_what_the_models_declare(database_url, tmp_path):
    store = Store(database_url, tmp_path)
    assert TABLES <= set(Base.metadata.tables)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _ours})
        assert compare_metadata(context, Base.metadata) == []
    store.close()


def _ours(item, name, kind, _reflected, _compare_to) -> bool:
    table = item if kind == "table" else getattr(item, "table", None)
    return table is None or table.name in TABLES
