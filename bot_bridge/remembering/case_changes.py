"""What people do with cases: acknowledge, resolve, snooze, say whether the emotion was right.

Each change is one conditional UPDATE, so when two people press at once
exactly one change wins: acknowledging a case someone acknowledged a moment
ago changes nothing, and both see the case as it ended up. The change, its
audit entry (who, how: the chat platform or the console) and, for a button
press, the press itself are written in one transaction.

A platform may deliver one press twice. Each press is kept in
``case_presses``, unique per platform and the platform's id of the press
(Slack's action_ts, Telegram's callback_query id, WeCom's
TaskId+FromUserName+EventKey+CreateTime); a second delivery finds it and
changes nothing.

States: open -> acknowledged -> resolved; open or acknowledged -> snoozed
until a time, then open again (``wake``, run by the sweep). Feedback on the
emotion ("right" / "not angry") is kept once per case, and counts as
acknowledging a case that is still open: whoever judged it has looked at it,
so nobody further up needs to be called.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from .alert_store import insert_new
from .audit import AuditLog
from .case_store import BOT_BRIDGE, CaseRow, CaseState
from .store import Base, Store, UTCDateTime


class Action:
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    SNOOZE = "snooze"
    RIGHT = "right"  # the emotion was right
    WRONG = "wrong"  # it was not that emotion

    ALL = (ACKNOWLEDGE, RESOLVE, SNOOZE, RIGHT, WRONG)
    FEEDBACK = {RIGHT: "confirmed", WRONG: "rejected"}  # the verdicts labels are kept with


#: The states each action may change a case from.
_FROM = {
    Action.ACKNOWLEDGE: (CaseState.OPEN, CaseState.SNOOZED),
    Action.RESOLVE: (CaseState.OPEN, CaseState.ACKNOWLEDGED, CaseState.SNOOZED),
    Action.SNOOZE: (CaseState.OPEN, CaseState.ACKNOWLEDGED),
}


class PressRow(Base):
    """A button press already handled: its platform's id of it, so a redelivery changes nothing."""

    __tablename__ = "case_presses"
    __table_args__ = (UniqueConstraint("platform", "press_id", name="uq_case_presses_press"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(32))
    press_id: Mapped[str] = mapped_column(String(512))
    case_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Actor:
    """Who acts: ``id`` as the audit log keeps it (``slack:U123``, a console account), ``name`` as people see
    it, ``via`` the front end (a chat platform's name, ``console``)."""

    id: str
    name: str
    via: str


@dataclass(frozen=True)
class Outcome:
    """What a change did: ``changed`` (this call made it), ``repeated`` (the same press came before), and the
    case as it is now (None: no such case)."""

    changed: bool
    case: CaseRow | None
    repeated: bool = False


class CaseChanges:
    """Changes to the cases of ``store``, each with its audit entry."""

    def __init__(self, store: Store) -> None:
        self.session = store.session
        self.audit = AuditLog(store)

    def apply(self, case_id: int, action: str, actor: Actor, now: datetime, *, press: str | None = None,
              until: datetime | None = None, note: str | None = None) -> Outcome:
        """Do ``action`` to the case if its state allows it. ``press``: the platform's id of the button press
        that asked for it; ``until``: the end of a snooze; ``note``: why it was resolved."""
        with self.session.begin() as session:
            if press is not None and insert_new(session, PressRow, {
                "platform": actor.via, "press_id": press, "case_id": case_id, "action": action, "at": now,
            }, ["platform", "press_id"]) is None:
                return Outcome(False, _now_stored(session, case_id), repeated=True)
            if action in Action.FEEDBACK:
                changed = self._feedback(session, case_id, action, actor, now)
            else:
                changed = self._move(session, case_id, action, actor, now, until=until, note=note)
            return Outcome(changed, _now_stored(session, case_id))

    def exists(self, case_id: int) -> bool:
        with self.session() as session:
            return session.scalar(select(CaseRow.id).where(CaseRow.id == case_id)) is not None

    def wake(self, now: datetime) -> list[int]:
        """Snoozed cases whose time is up are open again; their ids."""
        with self.session.begin() as session:
            woken = list(session.scalars(
                update(CaseRow).where(CaseRow.state == CaseState.SNOOZED, CaseRow.snoozed_until <= now)
                .values(state=CaseState.OPEN, snoozed_until=None, version=CaseRow.version + 1, updated_at=now)
                .returning(CaseRow.id).execution_options(synchronize_session=False)
            ))
            for case_id in woken:
                self.audit.record(BOT_BRIDGE, BOT_BRIDGE, "case.reopen", f"case:{case_id}",
                                  detail={"why": "snooze ended"}, at=now, session=session)
        return woken

    def _move(self, session: Session, case_id: int, action: str, actor: Actor, now: datetime, *,
              until: datetime | None, note: str | None) -> bool:
        values: dict = {"state": {Action.ACKNOWLEDGE: CaseState.ACKNOWLEDGED, Action.RESOLVE: CaseState.RESOLVED,
                                  Action.SNOOZE: CaseState.SNOOZED}[action]}
        detail: dict = {"name": actor.name}
        if action == Action.ACKNOWLEDGE:
            values.update(acknowledged_by=actor.name, acknowledged_via=actor.via, acknowledged_at=now,
                          snoozed_until=None)
        elif action == Action.RESOLVE:
            values.update(resolved_by=actor.name, resolved_via=actor.via, resolved_at=now, resolution=note,
                          snoozed_until=None, group_key=None)  # the source's next note opens a new case
            detail["note"] = note
        else:
            values.update(snoozed_until=until, snoozed_by=actor.name, snoozed_via=actor.via)
            detail["until"] = until.isoformat(timespec="seconds")
        return self._change(session, case_id, _FROM[action], values, f"case.{action}", actor, now, detail)

    def _feedback(self, session: Session, case_id: int, action: str, actor: Actor, now: datetime) -> bool:
        verdict = Action.FEEDBACK[action]
        case = session.get(CaseRow, case_id)
        given = session.execute(
            update(CaseRow).where(CaseRow.id == case_id, CaseRow.feedback.is_(None))
            .values(feedback=verdict, feedback_by=actor.name, feedback_via=actor.via, version=CaseRow.version + 1,
                    updated_at=now)
            .returning(CaseRow.id).execution_options(synchronize_session=False)
        ).scalar()
        if given is None:
            return False
        self.audit.record(actor.id, actor.via, "case.feedback", f"case:{case_id}",
                          detail={"name": actor.name, "verdict": verdict, "emotion": case.emotion}, at=now,
                          session=session)
        values = {"state": CaseState.ACKNOWLEDGED, "acknowledged_by": actor.name, "acknowledged_via": actor.via,
                  "acknowledged_at": now, "snoozed_until": None}
        self._change(session, case_id, _FROM[Action.ACKNOWLEDGE], values, "case.acknowledge", actor, now,
                     {"name": actor.name, "why": "feedback"})
        return True

    def _change(self, session: Session, case_id: int, states: tuple[str, ...], values: dict, audited: str,
                actor: Actor, now: datetime, detail: dict) -> bool:
        changed = session.execute(
            update(CaseRow).where(CaseRow.id == case_id, CaseRow.state.in_(states))
            .values(**values, version=CaseRow.version + 1, updated_at=now)
            .returning(CaseRow.id).execution_options(synchronize_session=False)
        ).scalar()
        if changed is None:
            return False
        self.audit.record(actor.id, actor.via, audited, f"case:{case_id}", detail=detail, at=now, session=session)
        return True


def _now_stored(session: Session, case_id: int) -> CaseRow | None:
    """The case as the database has it now, not as this session first read it."""
    return session.get(CaseRow, case_id, populate_existing=True)
