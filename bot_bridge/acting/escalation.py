"""Escalations: voice notes that sound angry (or fearful, ...) become cases their support channels work.

A chat voice note matches when one of its scores, not only its top
label, or a keyword of its transcript, meets its chat's rule:
``escalation.rules["platform:chat_id"]``, else ``escalation.rules["platform:*"]``,
else ``escalation.rules["*"]``, else ``escalation.default_rule`` (angry >= 0.5);
``acting/rules.py`` says how a rule's thresholds and keywords combine. Every
case's message carries what the customer said last (the transcript, clipped)
and the keyword that matched, if one did. A matched note joins its
source's case, or opens one (``bot_bridge.remembering.case_store``: one
chat and sender within ``escalation.group_window_min``). ``routes`` say
which targets hear about which chats, and, with ``levels``, when: a case
still open when a level's time comes goes to that level's targets too. A
target whose platform is not configured in this process hears nothing (it
gets no delivery row, so nothing stale is waiting for it when its platform
is turned on).

``Escalator.sweep(now)``, which the scheduler runs every
``escalation.sweep_interval_min``, records the new notes, reopens cases
whose snooze ended, gives open cases to the levels now due, sends each
target the cases it has still to receive (one message per case, with its
buttons) and updates every message that shows an older state of its case
(``case_messages``). A case that also meets ``escalation.immediate`` is
*severe*: ``sweep(now, severe_only=True)``, run every
``escalation.immediate_check_s``, sends those not tried yet without
waiting; one that failed is retried by the sweep like any other, so
``max_attempts`` tries span that many sweeps. Cases whose latest note is
older than ``escalation.max_age_h`` are not sent any more, and notes
analysed longer ago are not looked at. What a case's message says is
``Escalator.card``: the latest note's lines (``_block``) and the case's
(``case_cards``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..chat.cards import CaseCard
from ..config import Settings
from ..remembering.alert_store import AlertStore, EscalationRow
from ..remembering.case_changes import CaseChanges
from ..remembering.case_store import CaseRow, CaseState, CaseStore, CaseView, MatchedNote
from ..remembering.deployment import deployment_id
from ..remembering.results import NO_SPEECH, Transcript
from ..remembering.store import ResultRow, Store, VoiceNoteRow
from . import case_cards
from .alerting import Routes, Step, Target, cut_to_fit, local_time, result_link, say, source_line
from .case_messages import CaseMessages
from .replies import label, said_line
from .rules import match, reached, rule_for

log = logging.getLogger(__name__)
#: What a case's message quotes of a transcript at most; a message too short for it cuts the quote, not the case.
ALERT_QUOTE_CHARACTERS = 200



@dataclass(frozen=True)
class AlertLine:
    """A case's latest note as its message tells it."""

    note: VoiceNoteRow
    result_id: str
    duration_s: float
    emotion: str
    score: float
    threshold: float | None  # None: a keyword alone made the case
    severe: bool
    keyword: str | None = None
    said: Transcript | None = None
    maybe_sent: bool = False

    @classmethod
    def of(cls, escalation: EscalationRow, note: VoiceNoteRow, result: ResultRow, *,
           maybe_sent: bool = False) -> AlertLine:
        return cls(note, result.id, result.duration_s, escalation.emotion, escalation.score, escalation.threshold,
                   escalation.severe, escalation.keyword, result.transcript, maybe_sent)


class Escalator:
    """Finds cases, sends and updates their messages. Every method takes ``now``: the scheduler, the CLI and
    tests own the clock."""

    def __init__(self, store: Store, settings: Settings, targets: dict[str, Target]) -> None:
        self.store = store
        self.alerts = AlertStore(store)
        self.cases = CaseStore(store)
        self.changes = CaseChanges(store)
        self.escalation = settings.escalation
        self.public_url = settings.public_url
        self.routes = Routes(settings.routes)
        self.targets = targets
        self.messages = CaseMessages(store, targets, self, self.escalation.max_attempts)

    @functools.cached_property
    def deployment(self) -> str:
        return deployment_id(self.store)

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.escalation.group_window_min)

    def sweep(self, now: datetime, *, severe_only: bool = False) -> dict[str, int]:
        """Record the new notes, move cases along, send each target its new cases and update the messages of
        changed ones; cases sent, per target.

        ``severe_only`` (the urgent job): record the new notes, then send only the severe cases not tried yet and
        update only the messages of severe cases."""
        for matched, steps in self.new_cases(now):
            self.cases.record_note(matched, [(step.target, step.level) for step in steps if not step.after], now,
                                   self.window)
        if not severe_only:
            self.changes.wake(now)
            self._escalate_levels(now)
        for delivery_id in self.messages.deliveries.recover_stale(now):
            log.warning("escalation delivery %d: the process died while sending it; sending it again, marked as "
                        "a possible repeat", delivery_id)
        max_age_h = self.escalation.max_age_h
        expired = self.messages.deliveries.expire(now - timedelta(hours=max_age_h),
                                                  f"not sent within max_age_h ({max_age_h:g} h) of the note", now)
        if expired:
            log.warning("escalation: %d case message(s) given up, their notes older than max_age_h (%g h)",
                        len(expired), max_age_h)
        sent = {key: self.messages.send_waiting(target, now, severe_only=severe_only)
                for key, target in self.targets.items() if target.sender}
        self.messages.update_stale(now, severe_only=severe_only)  # a severe note that joined a case says so soon
        return sent

    def new_cases(self, now: datetime) -> list[tuple[MatchedNote, list[Step]]]:
        """Chat notes analysed within ``escalation.max_age_h`` that meet their rule and are in no case yet, each
        with the targets routed from its chat that have a sender (when each hears of it)."""
        since = now - timedelta(hours=self.escalation.max_age_h)
        found = []
        for note, result in self.alerts.unescalated_chat_results(since, now):
            if result.reason == NO_SPEECH:
                continue  # scores of silence mean nothing
            steps = self._steps(f"{note.platform}:{note.chat_id}")
            said = result.transcript
            matched = match(rule_for(self.escalation, note.platform, note.chat_id), result.scores,
                            None if said is None else said.text)
            if not steps or matched is None:
                continue
            severe = reached(self.escalation.immediate, result.scores) is not None
            found.append((MatchedNote(note, result, matched.emotion, matched.score, matched.threshold, severe,
                                      matched.keyword), steps))
        return found

    def preview(self, now: datetime) -> dict[str, list[str]]:
        """The messages a sweep at ``now`` would post, per target: the new cases its new notes would open (a note
        that would join a case is shown in that case's message), and the cases still to be sent. Nothing is
        recorded or sent."""
        since = now - timedelta(hours=self.escalation.max_age_h)
        would_open = self._would_open(now)
        messages: dict[str, list[str]] = {}
        for key, target in self.targets.items():
            if target.sender is None:
                continue
            waiting = [self.cases.view(row.case_id) for row in self.messages.deliveries.waiting(key)]
            texts = [self.card(view, target, 0).plain_text for view in waiting
                     if view.case.last_note_at >= since]  # older ones the sweep gives up
            texts += [self.card(view, target, 0).plain_text for view, steps in would_open
                      if any(step.target == key and not step.after for step in steps)]
            if texts:
                messages[key] = texts
        return messages

    def card(self, view: CaseView, target: Target, delivery_id: int, *, maybe_sent: bool = False) -> CaseCard:
        """The case's message at ``target`` (its delivery ``delivery_id``): its latest note, what the case holds,
        where it stands, its buttons."""
        case, language = view.case, target.language
        line = AlertLine.of(view.escalation, view.note, view.result, maybe_sent=maybe_sent)
        lines = [self._block(line, target), case_cards.summary(case, target),
                 *case_cards.state_lines(case, target)]
        has_page = self.public_url and case.id is not None
        card = CaseCard(
            key=f"bb_{self.deployment}_{case.id}_{delivery_id}",  # unique per WeCom app, even across deployments
            title=case_cards.title(case, language),
            text="\n".join(part for part in lines if part),
            buttons=case_cards.buttons(case, language, self.deployment) if case.id is not None else (),
            link=f"{self.public_url}/cases/{case.id}" if has_page else None,
            link_label=say(language, "在控制台处理", "Act on it in the console"),
            status=case_cards.status(case, language),
        )
        # Names and transcripts are cut where they are kept, so only a pathological case is too long: cut it
        # to what the platform takes, as it counts it.
        room = target.limit.size - target.limit.measure(card.plain_text.replace(card.text, "", 1))
        return replace(card, text=cut_to_fit(card.text, room, target.limit))

    def follow_up(self, view: CaseView, target: Target) -> str:
        """What changed, for a target whose message cannot be edited: the case's title, notes and state."""
        case = view.case
        lines = [case_cards.title(case, target.language), case_cards.summary(case, target),
                 *case_cards.state_lines(case, target)]
        if self.public_url:
            lines.append(f"{self.public_url}/cases/{case.id}")
        return "\n".join(line for line in lines if line)

    def _block(self, line: AlertLine, target: Target) -> str:
        """The latest note: how it sounded, the keyword, where and when, its link, and last what was said, so
        that a message too long for the platform loses the end of the words, not the rest."""
        language = target.language
        first = label(line.emotion, line.score, language)
        if line.threshold is not None:
            first += f" (≥ {line.threshold:.0%})"
        if line.severe:
            first += " ‼️ " + say(language, "紧急", "urgent")
        if line.maybe_sent:
            first += " ↻ " + say(language, "可能重复", "may repeat")
        lines = [first]
        if line.keyword is not None:
            keyword = target.user_text(line.keyword)
            lines.append("🔑 " + say(language, f"关键词「{keyword}」", f'keyword "{keyword}"'))
        seconds = f"{line.duration_s:.1f} {'秒' if language == 'zh' else 's'}"
        lines += [source_line(line.note, target.user_text),
                  f"{local_time(line.note.received_at, target.zone)} · {seconds}",
                  result_link(self.public_url, line.result_id)]
        said = said_line(line.said, language, ALERT_QUOTE_CHARACTERS, escape=target.user_text)
        return "\n".join(lines + ([said] if said else []))

    def _steps(self, source: str) -> list[Step]:
        """The routed targets of ``source`` that have a sender in this process."""
        return [step for step in self.routes.steps_for(source)
                if step.target in self.targets and self.targets[step.target].sender is not None]

    def _escalate_levels(self, now: datetime) -> None:
        """Give every open case to the later levels' targets whose time has come. (Those at 0 got it when it
        opened, if their platform was on then: turning one on sends it no burst of older cases.)"""
        for case, at_targets in self.cases.open_cases(now - timedelta(hours=self.escalation.max_age_h)):
            due = [(step.target, step.level) for step in self._steps(case.source)
                   if step.after and step.target not in at_targets and case.opened_at + step.after <= now]
            if due and (added := self.cases.escalate(case.id, due, now)):
                log.info("escalation: case %d still open, now also at %s", case.id, ", ".join(added))

    def _would_open(self, now: datetime) -> list[tuple[CaseView, list[Step]]]:
        """The cases the new notes would open, as their messages would show them (not recorded)."""
        opened: dict[str, tuple[CaseView, list[Step]]] = {}
        for matched, steps in self.new_cases(now):
            key = matched.group_key
            earlier = opened.get(key)
            if earlier is None and self.cases.joinable(key, matched.note.received_at, self.window):
                continue  # it joins a recorded case: that case's message is updated, no new one
            if earlier is not None and matched.note.received_at - earlier[0].case.last_note_at <= self.window:
                opened[key] = (_with_note(earlier[0], matched), steps)
            else:
                opened[key] = (_new_case(matched), steps)
        return list(opened.values())


def _new_case(matched: MatchedNote) -> CaseView:
    """A case as the note would open it, never stored (no id)."""
    case = CaseRow(id=None, source=matched.source, state=CaseState.OPEN, notes=1, emotion=matched.emotion,
                   score=matched.score, threshold=matched.threshold, severe=matched.severe,
                   last_note_at=matched.note.received_at, feedback=None)
    return CaseView(case, _escalation(matched), matched.note, matched.result)


def _with_note(view: CaseView, matched: MatchedNote) -> CaseView:
    """``view`` with one more note, the way recording it would change the case."""
    case = view.case
    stronger = matched.score > case.score
    grown = CaseRow(id=None, source=case.source, state=case.state, notes=case.notes + 1,
                    emotion=matched.emotion if stronger else case.emotion,
                    score=max(case.score, matched.score),
                    threshold=matched.threshold if stronger else case.threshold,
                    severe=case.severe or matched.severe,
                    last_note_at=max(case.last_note_at, matched.note.received_at), feedback=None)
    return CaseView(grown, _escalation(matched), matched.note, matched.result)


def _escalation(matched: MatchedNote) -> EscalationRow:
    return EscalationRow(emotion=matched.emotion, score=matched.score, threshold=matched.threshold,
                         keyword=matched.keyword, severe=matched.severe)
