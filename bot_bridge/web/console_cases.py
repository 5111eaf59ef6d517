"""The console's Cases pages: every case by state, target or chat; one case with its notes, its messages, the
actions still open and the audit trail of who did what.

The actions (acknowledge, resolve with a note, snooze an hour, say whether
the emotion was right) are POST forms carrying the session's CSRF token,
checked by the console's guard like every console POST, and go through the
same ``CaseDesk`` as a chat's buttons: the case's messages at every target
are updated. They are what a support *agent* does (``allow("agent")``); the
signed-in account is who acted, in the case and its audit trail.

The templates render only the data classes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..acting.alerting import source_line
from ..acting.case_cards import action_words, open_actions
from ..acting.scheduler import utc_now
from ..remembering.audit import AuditEntry, AuditLog
from ..remembering.case_changes import Action, Actor
from ..remembering.case_store import CaseStore, CaseView
from . import queries
from .api import service
from .console import CASE_STATES, TargetState, add_security_headers, require_sign_in_and_csrf, target_states
from .console_access import allow, current_account

cases = Blueprint("cases", __name__)
cases.before_request(require_sign_in_and_csrf)
cases.after_request(add_security_headers)


@dataclass(frozen=True)
class CaseSummary:
    id: int
    state: str  # a key of CASE_STATES
    emotion: str  # the strongest note's matched emotion, its score and threshold
    score: float
    threshold: float | None  # None: a keyword alone met the rule
    severe: bool
    notes: int
    source: str  # "telegram · Support group · Alice", from its latest note
    opened_at: datetime
    last_note_at: datetime
    people: tuple[tuple[str, str], ...]  # who did what, (zh, en): "acknowledged by Bob (slack)"...
    targets: tuple[TargetState, ...]


@dataclass(frozen=True)
class CaseNote:
    result_id: str
    emotion: str
    score: float
    received_at: datetime


@dataclass(frozen=True)
class CaseDetail:
    case: CaseSummary
    notes: tuple[CaseNote, ...]
    deleted: int  # notes counted in the case but deleted since (on request or by retention)
    actions: tuple[tuple[str, str, str], ...]  # the actions still open to the case: (action, zh, en)
    trail: tuple[AuditEntry, ...]  # newest first


@cases.get("/cases")
@allow("viewer")
def cases_page():
    state = request.args.get("state") if request.args.get("state") in CASE_STATES else None
    settings = service().settings
    target = request.args.get("target") if request.args.get("target") in settings.targets else None
    chat = request.args.get("chat") or None
    store = CaseStore(service().store)
    views = store.views(states=(state,) if state else None, target=target, source=chat, emptied=True)
    deliveries = store.deliveries([view.case.id for view in views])
    return render_template(
        "cases.html",
        cases=[_summary(view, deliveries.get(view.case.id, [])) for view in views],
        selected={"state": state, "target": target, "chat": chat},
        targets=[(key, target_settings.name or key) for key, target_settings in settings.targets.items()],
        chats=queries.chats(service().store),
        configured=bool(settings.targets and settings.routes),
    )


@cases.get("/cases/<int:case_id>")
@allow("viewer")
def case_page(case_id: int):
    detail = case_detail(case_id)
    if detail is None:
        abort(404)
    return render_template("case.html", detail=detail, done=request.args.get("done"))


@cases.post("/cases/<int:case_id>/act")
@allow("agent")
def case_action(case_id: int):
    """One agent action from the console, then back to the case (``done`` says whether it changed anything)."""
    action = request.form.get("action")
    if action not in Action.ALL:
        abort(400)
    note = (request.form.get("note") or "").strip() or None
    name = current_account().name
    outcome = service().case_desk.act(case_id, action, Actor(name, name, "console"), utc_now(), note=note)
    if outcome.case is None:
        abort(404)
    return redirect(url_for("cases.case_page", case_id=case_id, done="changed" if outcome.changed else "unchanged"))


def case_detail(case_id: int) -> CaseDetail | None:
    """A case with its notes, its messages, the actions still open and its audit trail; None: no such case."""
    store = CaseStore(service().store)
    found = store.views(case_ids=[case_id], emptied=True)
    if not found:
        return None
    view = found[0]
    notes = tuple(CaseNote(escalation.result_id, escalation.emotion, escalation.score, note.received_at)
                  for escalation, note in store.notes(case_id))
    trail = tuple(AuditLog(service().store).entries(subject=f"case:{case_id}"))
    summary = _summary(view, store.deliveries([case_id]).get(case_id, []))
    # a case whose notes were all deleted is kept for its count and trail, not worked any more
    actions = () if view.note is None else tuple((action, *action_words(action, view.case.emotion))
                                                 for action in open_actions(view.case))
    return CaseDetail(summary, notes, view.case.notes - len(notes), actions, trail)


def _summary(view: CaseView, deliveries) -> CaseSummary:
    case = view.case
    people = [(f"{zh}：{name}（{via}）", f"{en} {name} ({via})") for zh, en, name, via in (
        ("认领", "acknowledged by", case.acknowledged_by, case.acknowledged_via),
        ("推迟", "snoozed by", case.snoozed_by if case.snoozed_until else None, case.snoozed_via),
        ("解决", "resolved by", case.resolved_by, case.resolved_via),
        (f"反馈（{case.feedback}）", f"feedback ({case.feedback}) from", case.feedback_by, case.feedback_via),
    ) if name]
    return CaseSummary(case.id, case.state, case.emotion, case.score, case.threshold, case.severe, case.notes,
                       case.source if view.note is None else source_line(view.note), case.opened_at, case.last_note_at, tuple(people),
                       target_states(service().settings, deliveries))
