"""Cases: the angry notes of one customer, worked by people until someone resolves them.

A support team answers a customer, not a voice note: five angry notes from
one sender in ten minutes are one problem, so they are one case with one
message at each target, updated in place. This module keeps cases and
their notes; ``case_deliveries`` sends and updates their messages exactly
once, ``case_changes`` records what people do with them.

* A case belongs to a *source*: a chat and, where the platform names one,
  its sender. A note that matched its chat's rule joins the source's case
  when it arrived within ``escalation.group_window_min`` of the case's last
  note and nobody resolved the case; otherwise it opens a new case.
* ``group_key`` holds the source while notes may join, and is unique: two
  sweeps at once cannot open two cases for one source (the second INSERT
  ... ON CONFLICT DO NOTHING adds nothing, and its note joins the first's
  case). A resolved case gives its key up, and so does one whose window had
  passed when the source's next note came.
* Joining is one conditional UPDATE (the key matches and the last note is
  recent enough), the first statement of its transaction, so SQLite takes
  its write lock before anything is read. The note's own ``escalations``
  row is written in the same transaction; a note recorded already rolls it
  all back.
* ``version`` counts the changes a case's message shows (a note joined,
  someone acknowledged it...): a message that shows an older version is
  updated (``case_deliveries``).
* Levels (``routes[].levels``): a case still open when a level's time comes
  gets one more delivery per target of that level, and ``level`` says how
  far it went.

Every change is in the audit log (``audit``), written in the change's own
transaction; what bot-bridge does on its own is done by ``bot-bridge``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Mapped, Session, mapped_column

from .alert_store import EscalationRow, insert_new
from .audit import AuditLog
from .store import Base, ResultRow, Store, UTCDateTime, VoiceNoteRow

#: Who acts when bot-bridge does something on its own (the audit log's actor and ``via``).
BOT_BRIDGE = "bot-bridge"


class CaseState:
    OPEN = "open"  # nobody has taken it yet: later levels hear of it when their time comes
    ACKNOWLEDGED = "acknowledged"  # someone is on it
    SNOOZED = "snoozed"  # put off until ``snoozed_until``, then open again
    RESOLVED = "resolved"  # done; the source's next note opens a new case

    ALL = (OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED)


class DeliveryState:
    """Where one case's first message stands with one target (``case_deliveries``)."""

    PENDING = "pending"  # not tried yet
    SENDING = "sending"  # claimed; the message is on its way (or its sender died: see SENDING_TIMEOUT)
    SENT = "sent"
    RETRYING = "retrying"  # the last try failed; the next sweep tries again
    GAVE_UP = "gave_up"  # failed escalation.max_attempts times, or too old to send

    OPEN = (PENDING, RETRYING)


class CaseRow(Base):
    """One source's notes that need people, and what people did about them (names as they are shown)."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("group_key", name="uq_cases_group_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(256), index=True)  # platform:chat_id
    sender_id: Mapped[str | None] = mapped_column(String(191))
    group_key: Mapped[str | None] = mapped_column(String(512))  # set while the source's notes may join
    state: Mapped[str] = mapped_column(String(16), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_note_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when its latest note was received
    notes: Mapped[int] = mapped_column(Integer)
    emotion: Mapped[str] = mapped_column(String(16))  # the strongest match of its notes: emotion, score, threshold
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)  # None: a keyword alone met the rule
    severe: Mapped[bool] = mapped_column(Boolean)  # one of its notes met escalation.immediate
    level: Mapped[int] = mapped_column(Integer)  # the highest level of its route it has reached
    version: Mapped[int] = mapped_column(Integer)  # counts the changes its message shows
    acknowledged_by: Mapped[str | None] = mapped_column(String(256))
    acknowledged_via: Mapped[str | None] = mapped_column(String(32))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(256))
    resolved_via: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)  # the note of whoever resolved it
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    snoozed_by: Mapped[str | None] = mapped_column(String(256))
    snoozed_via: Mapped[str | None] = mapped_column(String(32))
    feedback: Mapped[str | None] = mapped_column(String(16))  # confirmed, rejected: was the emotion right?
    feedback_by: Mapped[str | None] = mapped_column(String(256))
    feedback_via: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CaseDeliveryRow(Base):
    """A case's message at one target: its first send (claimed like any alert) and the version it shows."""

    __tablename__ = "case_deliveries"
    __table_args__ = (
        UniqueConstraint("case_id", "target", name="uq_case_deliveries_target"),
        Index("ix_case_deliveries_target_state", "target", "state"),  # what each sweep looks for
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    target: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)  # the route level that sent the case here
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    maybe_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_ref: Mapped[str | None] = mapped_column(String(191))
    edit_token: Mapped[str | None] = mapped_column(String(512))  # a one-time permission to edit it (WeCom)
    edit_token_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shown_version: Mapped[int] = mapped_column(Integer, default=0)  # the case's version the message shows
    updating_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # an update of it is under way
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class MatchedNote:
    """A note that met its chat's rule, to record: the note, its result, and what met the rule."""

    note: VoiceNoteRow
    result: ResultRow
    emotion: str
    score: float
    threshold: float | None  # None: a keyword of its transcript alone met the rule
    severe: bool
    keyword: str | None = None  # the rule's keyword that was said, if one was

    @property
    def source(self) -> str:
        return f"{self.note.platform}:{self.note.chat_id}"

    @property
    def group_key(self) -> str:
        """The source's key while a case is open to its notes: the chat, and its sender where there is one."""
        return f"{self.source}\x1f{self.note.sender_id or ''}"


@dataclass(frozen=True)
class CaseView:
    """A case with its latest note: what its message and the console show."""

    case: CaseRow
    escalation: EscalationRow | None  # how the latest note met its rule; None (with ``note`` and ``result``):
    note: VoiceNoteRow | None  # every note of the case was deleted (only ``views(emptied=True)`` returns it)
    result: ResultRow | None


class _AlreadyRecorded(Exception):
    """The note's escalation row exists: roll back what this recording did."""


class CaseStore:
    """Cases, their notes and their deliveries, next to the results and voice notes of ``store``."""

    def __init__(self, store: Store) -> None:
        self.session = store.session
        self.audit = AuditLog(store)

    # -- recording notes ---------------------------------------------------------------

    def record_note(self, matched: MatchedNote, targets: list[tuple[str, int]], now: datetime,
                    window: timedelta) -> int | None:
        """Add ``matched`` to its source's case, or open one with a pending delivery per ``(target, level)``;
        the case's id, or None when the note was recorded already."""
        try:
            with self.session.begin() as session:
                case_id = self._join(session, matched, now, window)
                joined = case_id is not None
                if case_id is None:
                    case_id = self._open(session, matched, targets, now, window)
                if insert_new(session, EscalationRow, {
                    "case_id": case_id, "result_id": matched.result.id, "voice_note_id": matched.note.id,
                    "source": matched.source, "emotion": matched.emotion, "score": matched.score,
                    "threshold": matched.threshold, "keyword": matched.keyword, "severe": matched.severe,
                    "matched_at": now,
                }, ["result_id"]) is None:
                    raise _AlreadyRecorded
                self.audit.record(BOT_BRIDGE, BOT_BRIDGE, "case.note" if joined else "case.open", f"case:{case_id}",
                                  detail={"result": matched.result.id, "emotion": matched.emotion,
                                          "score": round(matched.score, 4)}, at=now, session=session)
        except _AlreadyRecorded:
            return None
        return case_id

    def joinable(self, group_key: str, received_at: datetime, window: timedelta) -> bool:
        """Whether a note of the source ``group_key`` received at ``received_at`` would join a recorded case."""
        with self.session() as session:
            return session.scalar(select(CaseRow.id).where(_takes(group_key, received_at, window))) is not None

    def _join(self, session: Session, matched: MatchedNote, now: datetime, window: timedelta) -> int | None:
        """The source's case with this note in it, if the note arrived within ``window`` of its last one."""
        received = matched.note.received_at
        stronger = CaseRow.score < matched.score
        return session.execute(
            update(CaseRow)
            .where(_takes(matched.group_key, received, window))
            .values(
                notes=CaseRow.notes + 1,
                last_note_at=sql_case((CaseRow.last_note_at < received, received), else_=CaseRow.last_note_at),
                emotion=sql_case((stronger, matched.emotion), else_=CaseRow.emotion),
                threshold=sql_case((stronger, matched.threshold), else_=CaseRow.threshold),
                score=sql_case((stronger, matched.score), else_=CaseRow.score),
                severe=CaseRow.severe | matched.severe,
                version=CaseRow.version + 1,
                updated_at=now,
            )
            .returning(CaseRow.id)
            .execution_options(synchronize_session=False)
        ).scalar()

    def _open(self, session: Session, matched: MatchedNote, targets: list[tuple[str, int]], now: datetime,
              window: timedelta) -> int:
        """A new case for the note's source, which takes the key over from the source's older case."""
        session.execute(update(CaseRow).where(CaseRow.group_key == matched.group_key).values(group_key=None)
                        .execution_options(synchronize_session=False))
        case_id = insert_new(session, CaseRow, {
            "source": matched.source, "sender_id": matched.note.sender_id, "group_key": matched.group_key,
            "state": CaseState.OPEN, "opened_at": now, "last_note_at": matched.note.received_at, "notes": 1,
            "emotion": matched.emotion, "score": matched.score, "threshold": matched.threshold,
            "severe": matched.severe, "level": max((level for _, level in targets), default=0), "version": 1,
            "updated_at": now,
        }, ["group_key"])
        if case_id is None:
            # Another sweep opened the source's case since this transaction's first statement (PostgreSQL reads
            # what was committed at each statement): the note joins it.
            case_id = self._join(session, matched, now, window)
            if case_id is None:
                raise RuntimeError(f"the case of {matched.source} changed twice while a note was recorded")
            return case_id
        session.add_all(_pending(case_id, target, level, now) for target, level in targets)
        return case_id

    # -- levels ------------------------------------------------------------------------

    def open_cases(self, opened_since: datetime) -> list[tuple[CaseRow, set[str]]]:
        """The open cases opened since ``opened_since``, each with the targets it has a delivery for."""
        with self.session() as session:
            cases = list(session.scalars(select(CaseRow).where(CaseRow.state == CaseState.OPEN,
                                                               CaseRow.opened_at >= opened_since)))
            targets = _by_case(session, [case.id for case in cases])
        return [(case, {row.target for row in targets.get(case.id, [])}) for case in cases]

    def escalate(self, case_id: int, targets: list[tuple[str, int]], now: datetime) -> list[str]:
        """Give an open case to more targets, ``(target, level)``; the targets it reached now (none once
        someone acknowledged it)."""
        level = max(level for _, level in targets)
        with self.session.begin() as session:
            still_open = session.execute(
                update(CaseRow).where(CaseRow.id == case_id, CaseRow.state == CaseState.OPEN)
                .values(level=sql_case((CaseRow.level < level, level), else_=CaseRow.level))
                .returning(CaseRow.id).execution_options(synchronize_session=False)
            ).scalar()
            if still_open is None:
                return []
            added = [target for target, at_level in targets
                     if insert_new(session, CaseDeliveryRow, _pending_values(case_id, target, at_level, now),
                                   ["case_id", "target"]) is not None]
            if added:
                self.audit.record(BOT_BRIDGE, BOT_BRIDGE, "case.escalate", f"case:{case_id}",
                                  detail={"level": level, "targets": added}, at=now, session=session)
        return added

    # -- reading -------------------------------------------------------------------------

    def view(self, case_id: int) -> CaseView | None:
        found = self.views(case_ids=[case_id])
        return found[0] if found else None

    def views(self, *, case_ids: list[int] | None = None, states: tuple[str, ...] | None = None,
              target: str | None = None, source: str | None = None, limit: int = 200,
              emptied: bool = False) -> list[CaseView]:
        """Cases, newest first, each with its latest note; filtered by ids, states, a target they went to or
        their source. ``emptied``: also the cases whose notes were all deleted (``remembering/forgetting.py``),
        with no note; without it they are left out (their messages cannot be shown again)."""
        query = select(CaseRow).order_by(CaseRow.opened_at.desc(), CaseRow.id.desc()).limit(limit)
        if case_ids is not None:
            query = query.where(CaseRow.id.in_(case_ids))
        if states:
            query = query.where(CaseRow.state.in_(states))
        if target is not None:
            query = query.where(CaseRow.id.in_(select(CaseDeliveryRow.case_id).where(CaseDeliveryRow.target == target)))
        if source is not None:
            query = query.where(CaseRow.source == source)
        with self.session() as session:
            cases = list(session.scalars(query))
            latest = _latest_notes(session, [case.id for case in cases])
        return [CaseView(case, *latest.get(case.id, (None, None, None))) for case in cases
                if emptied or case.id in latest]

    def deliveries(self, case_ids: list[int]) -> dict[int, list[CaseDeliveryRow]]:
        """Each case's deliveries, by target."""
        with self.session() as session:
            return _by_case(session, case_ids)

    def notes(self, case_id: int) -> list[tuple[EscalationRow, VoiceNoteRow]]:
        """A case's notes in the order they arrived."""
        query = (select(EscalationRow, VoiceNoteRow).join(VoiceNoteRow, EscalationRow.voice_note_id == VoiceNoteRow.id)
                 .where(EscalationRow.case_id == case_id).order_by(VoiceNoteRow.received_at, VoiceNoteRow.id))
        with self.session() as session:
            return [tuple(row) for row in session.execute(query)]

    def escalations(self, *, result_id: str | None = None, delivery_states: tuple[str, ...] | None = None,
                    limit: int = 200) -> list[tuple[EscalationRow, VoiceNoteRow, CaseRow, list[CaseDeliveryRow]]]:
        """Matched notes newest first, each with its case and the case's deliveries; ``delivery_states`` keeps
        notes whose case has a delivery in one of them."""
        query = (select(EscalationRow, VoiceNoteRow, CaseRow)
                 .join(VoiceNoteRow, EscalationRow.voice_note_id == VoiceNoteRow.id)
                 .join(CaseRow, EscalationRow.case_id == CaseRow.id))
        if result_id is not None:
            query = query.where(EscalationRow.result_id == result_id)
        if delivery_states:
            query = query.where(EscalationRow.case_id.in_(
                select(CaseDeliveryRow.case_id).where(CaseDeliveryRow.state.in_(delivery_states))))
        query = query.order_by(EscalationRow.matched_at.desc(), EscalationRow.id.desc()).limit(limit)
        with self.session() as session:
            found = [tuple(row) for row in session.execute(query)]
            deliveries = _by_case(session, sorted({case.id for _, _, case in found}))
        return [(escalation, note, case, deliveries.get(case.id, [])) for escalation, note, case in found]


def _takes(group_key: str, received_at: datetime, window: timedelta):
    """The case a note of source ``group_key`` joins: the source's, if its last note is recent enough."""
    return (CaseRow.group_key == group_key) & (CaseRow.last_note_at >= received_at - window)


def _pending_values(case_id: int, target: str, level: int, now: datetime) -> dict:
    return {"case_id": case_id, "target": target, "level": level, "state": DeliveryState.PENDING, "attempts": 0,
            "maybe_sent": False, "shown_version": 0, "updated_at": now}


def _pending(case_id: int, target: str, level: int, now: datetime) -> CaseDeliveryRow:
    return CaseDeliveryRow(**_pending_values(case_id, target, level, now))


def _by_case(session: Session, case_ids: list[int]) -> dict[int, list[CaseDeliveryRow]]:
    found: dict[int, list[CaseDeliveryRow]] = {}
    if case_ids:
        query = select(CaseDeliveryRow).where(CaseDeliveryRow.case_id.in_(case_ids)).order_by(CaseDeliveryRow.target)
        for row in session.scalars(query):
            found.setdefault(row.case_id, []).append(row)
    return found


def _latest_notes(session: Session, case_ids: list[int]) -> dict[int, tuple[EscalationRow, VoiceNoteRow, ResultRow]]:
    """The note each case heard last, with how it matched and its result."""
    if not case_ids:
        return {}
    query = (select(EscalationRow, VoiceNoteRow, ResultRow)
             .join(VoiceNoteRow, EscalationRow.voice_note_id == VoiceNoteRow.id)
             .join(ResultRow, EscalationRow.result_id == ResultRow.id)
             .where(EscalationRow.case_id.in_(case_ids))
             .order_by(VoiceNoteRow.received_at.desc(), VoiceNoteRow.id.desc()))
    latest: dict[int, tuple[EscalationRow, VoiceNoteRow, ResultRow]] = {}
    for escalation, note, result in session.execute(query):
        latest.setdefault(escalation.case_id, (escalation, note, result))
    return latest
