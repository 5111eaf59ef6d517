"""The words and buttons of a case's message, what each button carries, and the answers to a press.

Each target reads a case in its own language and time zone. The note's own
lines (emotion, where it came from, when, its link) are the escalation's
(``Escalator._block``, about the case's latest note); this module adds what
makes them a case: its number and state, how many notes it has, who did
what, and the buttons still worth pressing (none once it is resolved and
someone said whether the emotion was right).

A button carries ``bb1:<deployment>:<case>:<action>``: the deployment's id
(``bot_bridge.remembering.deployment``) tells a press on this deployment's
message from one on another's, the case and the action say what to do. It
stays far below Telegram's 64 bytes and names nobody.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..chat.cards import CardButton
from ..remembering.case_changes import Action, Outcome
from ..remembering.case_store import CaseRow, CaseState
from ..emotions import BY_KEY
from .alerting import Target, local_time, say

VALUE_PREFIX = "bb1"
#: How long "Snooze 1 h" puts a case off.
SNOOZE_FOR = timedelta(hours=1)
TIME_FORM = "%m-%d %H:%M"

_STATES = {
    CaseState.OPEN: ("待处理", "open"),
    CaseState.ACKNOWLEDGED: ("已认领", "acknowledged"),
    CaseState.SNOOZED: ("已推迟", "snoozed"),
    CaseState.RESOLVED: ("已解决", "resolved"),
}
_LABELS = {
    Action.ACKNOWLEDGE: ("认领", "Acknowledge"),
    Action.RESOLVE: ("解决", "Resolve"),
    Action.SNOOZE: ("推迟 1 小时", "Snooze 1 h"),
    Action.RIGHT: ("判断正确", "Right"),
}
_STYLES = {Action.ACKNOWLEDGE: "primary", Action.WRONG: "danger"}
#: Why a press changed nothing before it was even tried, as the person reads it.
REFUSALS = {
    "not_ours": ("这个按钮不是 bot-bridge 的。", "This button is not bot-bridge's."),
    "other_deployment": ("这个按钮属于另一个 bot-bridge 部署，这里无法处理。",
                         "This button belongs to another bot-bridge deployment; it cannot be handled here."),
    "no_case": ("这个案件已不在 bot-bridge 中。", "This case is not in bot-bridge any more."),
}
_DONE = {
    Action.ACKNOWLEDGE: ("已认领", "Acknowledged"),
    Action.RESOLVE: ("已解决", "Resolved"),
    Action.RIGHT: ("已记下：判断正确", "Noted: the emotion was right"),
}


@dataclass(frozen=True)
class ButtonPress:
    """What a button of ours says: which deployment posted it, which case, which action."""

    deployment: str
    case_id: int
    action: str


def button_value(deployment: str, case_id: int, action: str) -> str:
    return f"{VALUE_PREFIX}:{deployment}:{case_id}:{action}"


def read_button(value: str) -> ButtonPress | None:
    """The button ``value`` names, or None when it is no button of bot-bridge's."""
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != VALUE_PREFIX or not parts[2].isdigit() or parts[3] not in Action.ALL:
        return None
    return ButtonPress(parts[1], int(parts[2]), parts[3])


def open_actions(case: CaseRow) -> list[str]:
    """The actions that would still change the case (its buttons, the console's forms)."""
    actions = []
    if case.state in (CaseState.OPEN, CaseState.SNOOZED):
        actions.append(Action.ACKNOWLEDGE)
    if case.state != CaseState.RESOLVED:
        actions.append(Action.RESOLVE)
    if case.state in (CaseState.OPEN, CaseState.ACKNOWLEDGED):
        actions.append(Action.SNOOZE)
    if case.feedback is None:
        actions += [Action.RIGHT, Action.WRONG]
    return actions


def buttons(case: CaseRow, language: str, deployment: str) -> tuple[CardButton, ...]:
    """The actions still open to a case, as buttons in the target's language."""
    return tuple(CardButton(say(language, *action_words(action, case.emotion), " "),
                            button_value(deployment, case.id, action), _STYLES.get(action))
                 for action in open_actions(case))


def action_words(action: str, emotion: str) -> tuple[str, str]:
    """An action as its button (and the console) names it, in Chinese and English: ``Not angry`` for the case's
    emotion."""
    if action == Action.WRONG:
        named = BY_KEY[emotion]
        return f"不是{named.zh}", f"Not {named.en.lower()}"
    return _LABELS[action]


def title(case: CaseRow, language: str) -> str:
    """``🚨 Case 12 · open``; ``URGENT`` when one of its notes met ``escalation.immediate``."""
    zh_state, en_state = _STATES[case.state]
    number = "" if case.id is None else f" {case.id}"
    zh = f"{'紧急：' if case.severe else ''}案件{number} · {zh_state}"
    en = f"{'URGENT: ' if case.severe else ''}Case{number} · {en_state}"
    return "🚨 " + say(language, zh, en)


def summary(case: CaseRow, target: Target) -> str | None:
    """How many notes a case holds and the strongest, when there is more than one."""
    if case.notes < 2:
        return None
    emotion = BY_KEY[case.emotion]
    strongest = f"{emotion.emoji} {say(target.language, emotion.zh, emotion.en, ' ')} · {case.score:.0%}"
    return say(target.language, f"共 {case.notes} 条语音，最强：{strongest}",
               f"{case.notes} voice notes in this case, the strongest {strongest}")


def state_lines(case: CaseRow, target: Target) -> list[str]:
    """Where the case stands and who put it there, in the target's time zone (named once)."""

    def at(moment: datetime) -> str:
        return local_time(moment, target.zone, TIME_FORM)

    if case.state == CaseState.RESOLVED:
        note = f" — {case.resolution}" if case.resolution else ""
        by = _who(case.resolved_by, case.resolved_via)
        zh, en = f"✅ {by} 于 {at(case.resolved_at)} 解决{note}", f"✅ Resolved by {by} at {at(case.resolved_at)}{note}"
    elif case.state == CaseState.SNOOZED:
        by = _who(case.snoozed_by, case.snoozed_via)
        zh, en = f"💤 {by} 推迟到 {at(case.snoozed_until)}", f"💤 Snoozed until {at(case.snoozed_until)} by {by}"
    elif case.state == CaseState.ACKNOWLEDGED:
        by = _who(case.acknowledged_by, case.acknowledged_via)
        zh, en = (f"👀 {by} 于 {at(case.acknowledged_at)} 认领",
                  f"👀 Acknowledged by {by} at {at(case.acknowledged_at)}")
    else:
        zh, en = "⏳ 待处理，还没有人认领", "⏳ Open: nobody has acknowledged it yet"
    zone = target.settings.timezone
    lines = [say(target.language, f"{zh}（时间：{zone}）", f"{en} (times: {zone})")]
    if case.feedback is not None:
        emotion = BY_KEY[case.emotion]
        right = case.feedback == Action.FEEDBACK[Action.RIGHT]
        by = _who(case.feedback_by, case.feedback_via)
        lines.append(say(target.language, f"{'👍 判断正确' if right else '👎 不是' + emotion.zh}，{by} 说",
                         f"{'👍 Right' if right else '👎 Not ' + emotion.en.lower()}, says {by}"))
    return lines


def status(case: CaseRow, language: str) -> str:
    """A few words for where a case stands and who put it there (``已认领：bob``, ``Acknowledged by bob``), for a
    platform that shows them apart from the text (a WeCom card's subtitle, its greyed-out button)."""
    zh, en = _STATES[case.state]
    by = _by_whom(case)
    return say(language, f"{zh}：{by}" if by else zh, f"{en.capitalize()} by {by}" if by else en.capitalize(), " ")


def answer(outcome: Outcome, action: str, language: str, zone: ZoneInfo) -> str:
    """What the person who pressed reads: done, or why nothing changed (someone was first)."""
    case = outcome.case
    if outcome.changed:
        if action == Action.SNOOZE:
            until = local_time(case.snoozed_until, zone, TIME_FORM)
            return say(language, f"已推迟到 {until}", f"Snoozed until {until}")
        if action == Action.WRONG:
            emotion = BY_KEY[case.emotion]
            return say(language, f"已记下：不是{emotion.zh}", f"Noted: not {emotion.en.lower()}")
        return say(language, *_DONE[action])
    if action in Action.FEEDBACK:
        return say(language, f"案件 {case.id} 已有 {case.feedback_by} 的反馈",
                   f"Case {case.id} already has feedback from {case.feedback_by}")
    zh_state, en_state = _STATES[case.state]
    by = _by_whom(case)
    return say(language, f"案件 {case.id} {'已由 ' + by + ' ' if by else '已'}{zh_state.removeprefix('已')}",
               f"Case {case.id} is already {en_state}{' by ' + by if by else ''}")


def _by_whom(case: CaseRow) -> str | None:
    """Who put the case in its state (None while it is open)."""
    return {CaseState.ACKNOWLEDGED: case.acknowledged_by, CaseState.RESOLVED: case.resolved_by,
            CaseState.SNOOZED: case.snoozed_by}.get(case.state)


def _who(name: str, via: str) -> str:
    """``Bob (slack)``; ``console`` alone for the console's own actor."""
    return name if name == via else f"{name} ({via})"
