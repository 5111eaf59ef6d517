"""The audit log: who did what, when and from where, kept for as long as the deployment.

People act on what bot-bridge heard: they acknowledge and resolve cases from
a chat or the console, correct labels, manage accounts, delete data. A
support desk must be able to say afterwards which of its people did each of
these, so every such action is one row here, written in the same place
whatever the front end. Rows are only ever added: nothing edits them, and
retention never deletes them (they hold no recording, transcript or
customer name, only the actor, the action and what it applied to).

``actor`` is who acted as the deployment knows them: a console account
name, or a chat user as ``platform:user_id`` with their display name in
``detail``. ``via`` is the front end: ``console``, ``cli``, a chat
platform's name, or ``bot-bridge`` for what the service does on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from .store import Base, Store, UTCDateTime


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(191), index=True)
    via: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(191), index=True)  # "case:12", "result:5f0c…", "user:alice"
    detail: Mapped[dict | None] = mapped_column(JSON)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    via: str
    action: str
    subject: str | None
    detail: dict

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntry:
        return cls(row.id, row.at, row.actor, row.via, row.action, row.subject, dict(row.detail or {}))


class AuditLog:
    """Adds entries and reads them back, newest first."""

    def __init__(self, store: Store) -> None:
        self.session = store.session

    def record(self, actor: str, via: str, action: str, subject: str | None = None, *,
               detail: dict | None = None, at: datetime | None = None, session=None) -> None:
        """Add one entry. Pass ``session`` to write it in the same transaction as the change it records."""
        row = AuditRow(at=at or datetime.now(timezone.utc), actor=actor, via=via, action=action,
                       subject=subject, detail=detail or None)
        if session is not None:
            session.add(row)
            return
        with self.session.begin() as own:
            own.add(row)

    def entries(self, *, subject: str | None = None, actor: str | None = None, action: str | None = None,
                before_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Entries newest first; ``action`` keeps that action and those under it (``case`` keeps ``case.resolve``)."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if subject is not None:
            query = query.where(AuditRow.subject == subject)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        if action is not None:
            query = query.where((AuditRow.action == action) | AuditRow.action.startswith(f"{action}.", autoescape=True))
        if before_id is not None:
            query = query.where(AuditRow.id < before_id)
        with self.session() as session:
            return [AuditEntry.of(row) for row in session.scalars(query)]
