"""Durable state of alerts: which case went to which target, and which digest went out.

Exactly once, as far as platforms without idempotency keys allow it:

* A case (a chat voice note that matched its chat's rule) is one
  ``escalations`` row, unique per result, written with one
  ``escalation_deliveries`` row per routed target, unique per (case,
  target), before anything is sent. Finding the same case again, in this
  process or another, meets the unique constraint and adds nothing
  (``INSERT ... ON CONFLICT DO NOTHING``: no failed statement, so no
  ERROR line in PostgreSQL's log).
* Sending first claims the rows it will send (``pending``/``retrying`` ->
  ``sending`` in one conditional UPDATE ... RETURNING): rows another process
  claimed first are not in the answer and are not sent. Right after the
  platform answers, the send is recorded (``sent``) in its own commit. A
  failed send puts its rows back to ``retrying`` for the next sweep, counting
  the attempt; other targets' rows are never touched by it. The urgent job
  takes ``pending`` rows only: what failed waits for the sweep, so
  ``escalation.max_attempts`` tries span that many sweeps.
* The crash window is one HTTP call: claimed, sent, not yet recorded. Rows
  left ``sending`` for ``SENDING_TIMEOUT`` (far longer than any send with
  its retries takes) were claimed by a process that died; they are sent
  again, marked ``maybe_sent`` so the message says it may repeat. For an
  angry customer a labelled duplicate costs a glance, a lost alert costs the
  customer.
* A digest is one ``digests`` row, unique per (target, day), claimed the
  same way. Its messages are stored as first rendered and ``parts_sent``
  counts those out, so a digest that failed halfway resumes after the last
  part that went out, with the same words, instead of starting over.
* The scheduler's lease (``leases``, see ``bot_bridge.acting.scheduler``) is
  declared here too: this module declares exactly the tables of migration
  0002 (with the keyword of a case, migration 0010).

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
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    select,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from .store import Base, ResultRow, Store, UTCDateTime, VoiceNoteRow

#: A row still ``sending`` after this long was claimed by a process that died mid-send.
SENDING_TIMEOUT = timedelta(minutes=10)


class DeliveryState:
    """Where one case stands with one target."""

    PENDING = "pending"  # found, not tried yet
    SENDING = "sending"  # claimed; the alert is on its way (or its sender died: see SENDING_TIMEOUT)
    SENT = "sent"
    RETRYING = "retrying"  # the last try failed; the next sweep tries again
    GAVE_UP = "gave_up"  # failed escalation.max_attempts times

    OPEN = (PENDING, RETRYING)


class DigestState:
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # tried again while within digest.grace_period_h
    SKIPPED = "skipped"  # nothing happened that day and digest.skip_empty is on


class EscalationRow(Base):
    """A voice note that matched its chat's rule: the emotion, its score and the threshold it met (none when a
    keyword of its transcript alone made the case; ``emotion`` and ``score`` are then its top emotion's), and the
    keyword that matched, if one did."""

    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("result_id", name="uq_escalations_result"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"))
    voice_note_id: Mapped[int] = mapped_column(ForeignKey("voice_notes.id"))
    source: Mapped[str] = mapped_column(String(256))  # platform:chat_id
    emotion: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    keyword: Mapped[str | None] = mapped_column(String(64))  # config.MAX_KEYWORD
    severe: Mapped[bool] = mapped_column(Boolean)  # met escalation.immediate: sent without waiting for the sweep
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DeliveryRow(Base):
    __tablename__ = "escalation_deliveries"
    __table_args__ = (
        UniqueConstraint("escalation_id", "target", name="uq_escalation_deliveries_target"),
        Index("ix_escalation_deliveries_target_state", "target", "state"),  # what each sweep looks for
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id"))
    target: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    maybe_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_ref: Mapped[str | None] = mapped_column(String(191))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
class Case:
    """A case to record: the note, and what about it met the rule."""

    note: VoiceNoteRow
    result: ResultRow
    emotion: str
    score: float
    threshold: float | None  # None: a keyword alone met the rule
    severe: bool
    keyword: str | None = None

    @property
    def source(self) -> str:
        return f"{self.note.platform}:{self.note.chat_id}"


@dataclass(frozen=True)
class OpenDelivery:
    """A case still to be sent to one target, with what its alert says."""

    delivery: DeliveryRow
    case: EscalationRow
    note: VoiceNoteRow
    result: ResultRow


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

    # -- finding and recording cases ------------------------------------------------

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

    def record_case(self, case: Case, targets: list[str], now: datetime) -> bool:
        """Write the case and a pending delivery per target; False if it was recorded already."""
        values = {"result_id": case.result.id, "voice_note_id": case.note.id, "source": case.source,
                  "emotion": case.emotion, "score": case.score, "threshold": case.threshold, "keyword": case.keyword,
                  "severe": case.severe, "matched_at": now}
        with self.session.begin() as session:
            case_id = insert_new(session, EscalationRow, values, ["result_id"])
            if case_id is None:
                return False
            session.add_all(
                DeliveryRow(escalation_id=case_id, target=target, state=DeliveryState.PENDING, attempts=0,
                            maybe_sent=False, updated_at=now)
                for target in targets
            )
        return True

    # -- sending: claim, then record ------------------------------------------------

    def open_deliveries(self, target: str, states: tuple[str, ...] = DeliveryState.OPEN, *,
                        severe_only: bool = False) -> list[OpenDelivery]:
        """The cases ``target`` has still to receive (in ``states``), in the order the notes arrived."""
        query = (
            select(DeliveryRow, EscalationRow, VoiceNoteRow, ResultRow)
            .join(EscalationRow, DeliveryRow.escalation_id == EscalationRow.id)
            .join(VoiceNoteRow, EscalationRow.voice_note_id == VoiceNoteRow.id)
            .join(ResultRow, EscalationRow.result_id == ResultRow.id)
            .where(DeliveryRow.target == target, DeliveryRow.state.in_(states))
            .order_by(VoiceNoteRow.received_at, VoiceNoteRow.id)
        )
        if severe_only:
            query = query.where(EscalationRow.severe.is_(True))
        with self.session() as session:
            return [OpenDelivery(*row) for row in session.execute(query)]

    def claim_deliveries(self, delivery_ids: list[int], now: datetime,
                         states: tuple[str, ...] = DeliveryState.OPEN) -> set[int]:
        """Take the rows among ``delivery_ids`` still in ``states`` for sending; the ids this call won."""
        statement = (
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(delivery_ids), DeliveryRow.state.in_(states))
            .values(state=DeliveryState.SENDING, claimed_at=now, attempts=DeliveryRow.attempts + 1, updated_at=now)
            .returning(DeliveryRow.id)
        )
        return set(self._returning(statement))

    def mark_sent(self, delivery_ids: list[int], message_ref: str, now: datetime) -> None:
        self._update_deliveries(delivery_ids, state=DeliveryState.SENT, sent_at=now, message_ref=message_ref,
                                last_error=None, updated_at=now)

    def mark_failed(
        self, delivery_ids: list[int], error: str, now: datetime, max_attempts: int, *, maybe_sent: bool = False
    ) -> None:
        """Back to ``retrying`` for the next sweep, or ``gave_up`` after ``max_attempts`` tries.

        ``maybe_sent``: the message left but its answer never came; the next one says it may repeat.
        """
        given_up = sql_case((DeliveryRow.attempts >= max_attempts, DeliveryState.GAVE_UP), else_=DeliveryState.RETRYING)
        values = {"maybe_sent": True} if maybe_sent else {}
        self._update_deliveries(delivery_ids, state=given_up, last_error=error, updated_at=now, **values)

    def recover_stale_deliveries(self, now: datetime) -> list[int]:
        """Rows whose sender died mid-send go back to be sent again, marked as maybe sent."""
        statement = (
            update(DeliveryRow)
            .where(DeliveryRow.state == DeliveryState.SENDING, DeliveryRow.claimed_at < now - SENDING_TIMEOUT)
            .values(state=DeliveryState.RETRYING, maybe_sent=True, updated_at=now,
                    last_error="bot-bridge stopped while sending this alert; sent again, marked as a possible repeat")
            .returning(DeliveryRow.id)
        )
        return self._returning(statement)

    def expire_deliveries(self, analysed_before: datetime, reason: str, now: datetime) -> list[int]:
        """Give up the open rows of notes analysed before ``analysed_before``: too old to alert about."""
        old_cases = (
            select(EscalationRow.id)
            .join(ResultRow, EscalationRow.result_id == ResultRow.id)
            .where(ResultRow.created_at < analysed_before)
        )
        statement = (
            update(DeliveryRow)
            .where(DeliveryRow.state.in_(DeliveryState.OPEN), DeliveryRow.escalation_id.in_(old_cases))
            .values(state=DeliveryState.GAVE_UP, last_error=reason, updated_at=now)
            .returning(DeliveryRow.id)
        )
        return self._returning(statement)

    # -- reading cases back (console, digests) ----------------------------------------

    def cases(
        self, *, result_id: str | None = None, states: tuple[str, ...] | None = None, limit: int = 200
    ) -> list[tuple[EscalationRow, VoiceNoteRow, list[DeliveryRow]]]:
        """Cases newest first, each with its note and its deliveries; ``states`` keeps cases with a delivery in one."""
        query = select(EscalationRow, VoiceNoteRow).join(VoiceNoteRow, EscalationRow.voice_note_id == VoiceNoteRow.id)
        if result_id is not None:
            query = query.where(EscalationRow.result_id == result_id)
        if states:
            in_state = select(DeliveryRow.escalation_id).where(DeliveryRow.state.in_(states))
            query = query.where(EscalationRow.id.in_(in_state))
        query = query.order_by(EscalationRow.matched_at.desc(), EscalationRow.id.desc()).limit(limit)
        with self.session() as session:
            found = [tuple(row) for row in session.execute(query)]
            deliveries: dict[int, list[DeliveryRow]] = {case.id: [] for case, _ in found}
            if deliveries:
                rows = session.scalars(
                    select(DeliveryRow).where(DeliveryRow.escalation_id.in_(deliveries)).order_by(DeliveryRow.target)
                )
                for row in rows:
                    deliveries[row.escalation_id].append(row)
        return [(case, note, deliveries[case.id]) for case, note in found]

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

    def _update_deliveries(self, delivery_ids: list[int], **values) -> None:
        with self.session.begin() as session:
            session.execute(update(DeliveryRow).where(DeliveryRow.id.in_(delivery_ids)).values(**values))

    def _update_digest(self, digest_id: int, **values) -> None:
        with self.session.begin() as session:
            session.execute(update(DigestRow).where(DigestRow.id == digest_id).values(**values))

    def _returning(self, statement) -> list[int]:
        with self.session.begin() as session:
            return list(session.scalars(statement.execution_options(synchronize_session=False)))
