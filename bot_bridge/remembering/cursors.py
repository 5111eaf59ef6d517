"""Where each pulled platform resumes: one named position per platform, kept in the database.

A platform that is pulled (Telegram's getUpdates) hands out updates after a
position the client names, and forgets what lies before it. That position
must outlive the process: kept in memory, a restart would ask Telegram for
nothing (losing what was not yet recorded) or for everything again. It is
saved only after the updates it follows are recorded
(``bot_bridge.acting.listeners``), so a crash in between pulls them again
and their delivery ids make the second recording a no-op. The value is the
platform's own (an offset, an opaque sync token): this module never reads it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .store import Base, Store, UTCDateTime


class CursorRow(Base):
    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(1024))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Cursors:
    """Named positions in the store's database."""

    def __init__(self, store: Store) -> None:
        self.session = store.session

    def get(self, name: str) -> str | None:
        with self.session() as session:
            return session.scalar(select(CursorRow.value).where(CursorRow.name == name))

    def save(self, name: str, value: str | None) -> None:
        """Insert or replace ``name``'s position in one statement (``INSERT ... ON CONFLICT DO UPDATE``)."""
        now = datetime.now(timezone.utc)
        with self.session.begin() as session:
            insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[session.get_bind().dialect.name]
            statement = insert(CursorRow).values(name=name, value=value, updated_at=now)
            session.execute(statement.on_conflict_do_update(index_elements=["name"],
                                                            set_={"value": value, "updated_at": now}))
