"""Durable state of alerts: which notes matched a rule, and which digest went out.

* Each chat voice note that matched its chat's rule is one ``escalations``
  row, unique per result, belonging to a case (``case_store``: cases, the
  rows that make each case's message go out once, and how it is updated).
* A digest is one ``digests`` row, unique per (target, day), claimed the
  same way as a case's message: a conditional UPDATE, or an ``INSERT ... ON
  CONFLICT DO NOTHING`` (no failed statement, so no ERROR line in
  PostgreSQL's log). Its messages are stored as first rendered and
  ``parts_sent`` counts those out, so a digest that failed halfway resumes
  after the last part that went out, with the same words, instead of
  starting over.
* The scheduler's lease (``leases``, see ``bot_bridge.acting.scheduler``) is
  declared here too. These are the tables of migration 0002, less its
  per-note deliveries, which migration 0011 made per case (with the keyword of
  a matched note, migration 0010).
* A deleted chat voice note (on request or by retention) leaves a count in
  ``forgotten_notes`` (migration 0014), so later digests keep their numbers:
  the chat, the quarter hour it came in, its top emotion and whether it
  became a case; no sender, name, words or scores.

Each conditional UPDATE is atomic on SQLite (one writer at a time) and on
PostgreSQL (a concurrent UPDATE of the same row waits, then re-checks the
WHERE clause against the committed row and finds it no longer matches).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from .store import Base, ResultRow, Store, UTCDateTime, VoiceNoteRow

#: A row still ``sending`` after this long was claimed by a process that died mid-send.
SENDING_TIMEOUT = timedelta(minutes=10)


class DigestState:
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # tried again while within digest.grace_period_h
    SKIPPED = "skipped"  # nothing happened that day and digest.skip_empty is on


class EscalationRow(Base):
    """A voice note that matched its chat's rule: the emotion, its score and the threshold it met (none when a
    keyword of its transcript alone made the case; ``emotion`` and ``score`` are then its top emotion's), the
    keyword that matched, if one did, and its case (``case_store.CaseRow``)."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("result_id", name="uq_escalations_result"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    voice_note_id: Mapped[int] = mapped_column(ForeignKey("voice_notes.id"))
    source: Mapped[str] = mapped_column(String(256))  # platform:chat_id
    emotion: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    keyword: Mapped[str | None] = mapped_column(String(64))  # config.MAX_KEYWORD
    severe: Mapped[bool] = mapped_column(Boolean)  # met escalation.immediate: sent without waiting for the sweep
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DigestRow(Base):
    __tablename__ = "digests"
    __table_args__ = (UniqueConstraint("target", "day", name="uq_digests_target_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16))
    texts: Mapped[list | None] = mapped_column(JSON)  # the messages as first rendered: a retry resends these
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    maybe_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ForgottenNotesRow(Base):
    """How many of a chat's voice notes of one quarter hour, with one top emotion, were deleted; how many of
    them had become cases. ``emotion`` None: not analysed, or no speech heard. Written by
    ``bot_bridge.remembering.forgetting`` in the commit that deletes the notes; several rows may share a key."""

    __tablename__ = "forgotten_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(191))
    quarter: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    emotion: Mapped[str | None] = mapped_column(String(16))
    notes: Mapped[int] = mapped_column(Integer)
    escalated: Mapped[int] = mapped_column(Integer)


class LeaseRow(Base):
    """A named lease (``bot_bridge.acting.scheduler.Lease``): held by ``holder`` until ``expires_at``."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(191))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


def insert_new(session: Session, model: type[Base], values: dict[str, Any], unique: list[str]) -> Any | None:
    """Insert a row unless one with the same ``unique`` columns exists; the new row's primary key, or None.

    ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL): atomic
    like an INSERT that fails on the unique constraint, without the failed
    statement, which PostgreSQL would log as an ERROR every time.
    """
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[session.get_bind().dialect.name]
    [key] = model.__table__.primary_key.columns
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=unique).returning(key)
    return session.execute(statement).scalar()


@dataclass(frozen=True)
class ChatNote:
    """One voice note of a chat, as a digest counts it; ``result`` None until analysed."""

    note: VoiceNoteRow
    result: ResultRow | None
    escalated: bool


class AlertStore:
    """The alert tables, next to the results and voice notes of ``store``."""

    def __init__(self, store: Store) -> None:
        self.session = store.session

    # -- notes that may be cases, notes as digests count them -------------------------

    def unescalated_chat_results(self, since: datetime, until: datetime) -> list[tuple[VoiceNoteRow, ResultRow]]:
        """Chat voice notes analysed in ``[since, until]`` that are not cases yet, oldest first."""
        query = (
            select(VoiceNoteRow, ResultRow)
            .join(ResultRow, VoiceNoteRow.result_id == ResultRow.id)
            .outerjoin(EscalationRow, EscalationRow.result_id == ResultRow.id)
            .where(
                EscalationRow.id.is_(None),
                VoiceNoteRow.kind == "voice",
                ResultRow.created_at >= since,
                ResultRow.created_at <= until,
            )
            .order_by(ResultRow.created_at, VoiceNoteRow.id)
        )
        with self.session() as session:
            return [tuple(row) for row in session.execute(query)]

    def chat_notes(self, since: datetime, until: datetime) -> list[ChatNote]:
        """Every chat voice note received in ``[since, until)``, with its result and whether it became a case."""
        query = (
            select(VoiceNoteRow, ResultRow, EscalationRow.id)
            .outerjoin(ResultRow, VoiceNoteRow.result_id == ResultRow.id)
            .outerjoin(EscalationRow, EscalationRow.result_id == VoiceNoteRow.result_id)
            .where(VoiceNoteRow.kind == "voice", VoiceNoteRow.received_at >= since, VoiceNoteRow.received_at < until)
            .order_by(VoiceNoteRow.received_at, VoiceNoteRow.id)
        )
        with self.session() as session:
            return [ChatNote(note, result, case_id is not None) for note, result, case_id in session.execute(query)]

    def forgotten_notes(self, since: datetime, until: datetime) -> list[ForgottenNotesRow]:
        """The counts of chat voice notes received in ``[since, until)`` and deleted since, to the quarter hour."""
        query = select(ForgottenNotesRow).where(ForgottenNotesRow.quarter >= since, ForgottenNotesRow.quarter < until)
        with self.session() as session:
            return list(session.scalars(query.order_by(ForgottenNotesRow.quarter, ForgottenNotesRow.id)))

    # -- digests --------------------------------------------------------------------------

    def claim_digest(self, target: str, day: date, now: datetime) -> DigestRow | None:
        """Take the digest of (``target``, ``day``) for sending: a new one, one that failed, or one
        whose sender died mid-send; None when it went out, was skipped, or is being sent."""
        with self.session.begin() as session:
            new = {"target": target, "day": day, "state": DigestState.SENDING, "parts_sent": 0, "attempts": 1,
                   "maybe_sent": False, "claimed_at": now, "updated_at": now}
            if insert_new(session, DigestRow, new, ["target", "day"]) is None:
                stale = and_(DigestRow.state == DigestState.SENDING, DigestRow.claimed_at < now - SENDING_TIMEOUT)
                claimed = session.execute(
                    update(DigestRow)
                    .where(DigestRow.target == target, DigestRow.day == day,
                           (DigestRow.state == DigestState.FAILED) | stale)
                    .values(
                        state=DigestState.SENDING,
                        attempts=DigestRow.attempts + 1,
                        maybe_sent=DigestRow.maybe_sent | (DigestRow.state == DigestState.SENDING),
                        claimed_at=now,
                        updated_at=now,
                    )
                ).rowcount
                if not claimed:
                    return None
            return session.scalar(select(DigestRow).where(DigestRow.target == target, DigestRow.day == day))

    def save_digest_texts(self, digest_id: int, texts: list[str], now: datetime) -> None:
        self._update_digest(digest_id, texts=texts, updated_at=now)

    def digest_part_sent(self, digest_id: int, parts_sent: int, now: datetime) -> None:
        self._update_digest(digest_id, parts_sent=parts_sent, maybe_sent=False, updated_at=now)

    def finish_digest(self, digest_id: int, state: str, now: datetime) -> None:
        self._update_digest(digest_id, state=state, sent_at=now, last_error=None, updated_at=now)

    def fail_digest(self, digest_id: int, error: str, now: datetime, *, maybe_sent: bool = False) -> None:
        """Retried at the next check; ``maybe_sent``: the part that failed may be in the chat already."""
        values = {"maybe_sent": True} if maybe_sent else {}
        self._update_digest(digest_id, state=DigestState.FAILED, last_error=error, updated_at=now, **values)

    # -- helpers ----------------------------------------------------------------------------

    def _update_digest(self, digest_id: int, **values) -> None:
        with self.session.begin() as session:
            session.execute(update(DigestRow).where(DigestRow.id == digest_id).values(**values))
