"""Escalations: voice notes that sound angry (or fearful, ...) reach support channels, once per target.

A chat voice note is a *case* when one of its scores, not only its top
label, or a keyword of its transcript, meets its chat's rule:
``escalation.rules["platform:chat_id"]``, else ``escalation.rules["platform:*"]``,
else ``escalation.rules["*"]``, else ``escalation.default_rule`` (angry >= 0.5);
``acting/rules.py`` says how a rule's thresholds and keywords combine. Every
alert carries what the customer said (the transcript, clipped) and the
keyword that matched, if one did. ``routes`` say which
targets hear about which chats; a target whose platform is not configured
in this process hears nothing (it gets no delivery row, so nothing stale is
waiting for it when its platform is turned on).

``Escalator.sweep(now)``, which the scheduler runs every
``escalation.sweep_interval_min``, records the new cases and then sends each
target one alert with everything it has still to receive (new cases and
those a failed send left behind), split to fit the platform. A case that
also meets ``escalation.immediate`` is *severe*: ``sweep(now,
severe_only=True)``, run every ``escalation.immediate_check_s``, sends those
not tried yet without waiting; one that failed is retried by the sweep
like any other, so ``max_attempts`` tries span that many sweeps. Cases of
notes analysed more than ``escalation.max_age_h`` ago are neither found
nor sent any more. How a case reaches each target exactly once:
``bot_bridge.remembering.alert_store``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..chat.outbound import MaybeDelivered, OutboundError
from ..config import Settings
from ..remembering.alert_store import AlertStore, Case, DeliveryState, OpenDelivery
from ..remembering.results import NO_SPEECH, Transcript
from ..remembering.store import Store, VoiceNoteRow
from .alerting import Routes, Target, local_time, pack, result_link, say, source_line
from .replies import label, said_line
from .rules import match, reached, rule_for

log = logging.getLogger(__name__)

#: What an alert quotes of a transcript at most; a message too short for it cuts the quote, not the case.
ALERT_QUOTE_CHARACTERS = 200


@dataclass(frozen=True)
class AlertLine:
    """One case as an alert tells it."""

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
    def waiting(cls, open_delivery: OpenDelivery) -> AlertLine:
        case, result = open_delivery.case, open_delivery.result
        return cls(open_delivery.note, case.result_id, result.duration_s, case.emotion, case.score, case.threshold,
                   case.severe, case.keyword, result.transcript, open_delivery.delivery.maybe_sent)

    @classmethod
    def new(cls, case: Case) -> AlertLine:
        return cls(case.note, case.result.id, case.result.duration_s, case.emotion, case.score, case.threshold,
                   case.severe, case.keyword, case.result.transcript)


class Escalator:
    """Finds cases and sends them. Every method takes ``now``: the scheduler, the CLI and tests own the clock."""

    def __init__(self, store: Store, settings: Settings, targets: dict[str, Target]) -> None:
        self.alerts = AlertStore(store)
        self.escalation = settings.escalation
        self.public_url = settings.public_url
        self.routes = Routes(settings.routes)
        self.targets = targets

    def sweep(self, now: datetime, *, severe_only: bool = False) -> dict[str, int]:
        """Record the new cases, then send each target what it has still to receive; cases sent, per target.

        ``severe_only`` (the urgent job): send only the severe cases not tried yet."""
        for case, targets in self.new_cases(now):
            self.alerts.record_case(case, targets, now)
        for delivery_id in self.alerts.recover_stale_deliveries(now):
            log.warning("escalation delivery %d: the process died while sending it; sending it again, marked as "
                        "a possible repeat", delivery_id)
        max_age_h = self.escalation.max_age_h
        expired = self.alerts.expire_deliveries(now - timedelta(hours=max_age_h),
                                                f"not sent within max_age_h ({max_age_h:g} h) of the note", now)
        if expired:
            log.warning("escalation: %d case(s) given up, their notes older than max_age_h (%g h)",
                        len(expired), max_age_h)
        return {key: self._send(target, now, severe_only) for key, target in self.targets.items() if target.sender}

    def new_cases(self, now: datetime) -> list[tuple[Case, list[str]]]:
        """Chat notes analysed within ``escalation.max_age_h`` that meet their rule and are not cases yet,
        each with the targets it goes to: those routed from its chat that have a sender."""
        since = now - timedelta(hours=self.escalation.max_age_h)
        found = []
        for note, result in self.alerts.unescalated_chat_results(since, now):
            if result.reason == NO_SPEECH:
                continue  # scores of silence mean nothing
            targets = [key for key in self.routes.targets_for(f"{note.platform}:{note.chat_id}")
                       if key in self.targets and self.targets[key].sender is not None]
            said = result.transcript
            matched = match(rule_for(self.escalation, note.platform, note.chat_id), result.scores,
                            None if said is None else said.text)
            if not targets or matched is None:
                continue
            severe = reached(self.escalation.immediate, result.scores) is not None
            found.append((Case(note, result, matched.emotion, matched.score, matched.threshold, severe,
                               matched.keyword), targets))
        return found

    def preview(self, now: datetime) -> dict[str, list[str]]:
        """The messages a sweep at ``now`` would send, per target; nothing is recorded or sent."""
        new = self.new_cases(now)
        since = now - timedelta(hours=self.escalation.max_age_h)
        messages = {}
        for key, target in self.targets.items():
            lines = [AlertLine.waiting(waiting) for waiting in self.alerts.open_deliveries(key)
                     if waiting.result.created_at >= since]  # older ones the sweep gives up
            lines += [AlertLine.new(case) for case, targets in new if key in targets]
            if lines and target.sender:
                messages[key] = [text for text, _ in self.messages(lines, target, urgent=False)]
        return messages

    def messages(self, lines: list[AlertLine], target: Target, *, urgent: bool) -> list[tuple[str, list[int]]]:
        """The alert for ``lines`` in as many messages as the target's limit needs, each with its lines' indexes."""
        blocks = [self._block(line, target) for line in lines]
        return pack(blocks, target.limit, lambda part, parts: _header(len(lines), target, urgent, part, parts))

    def _send(self, target: Target, now: datetime, severe_only: bool) -> int:
        states = (DeliveryState.PENDING,) if severe_only else DeliveryState.OPEN
        waiting = self.alerts.open_deliveries(target.key, states, severe_only=severe_only)
        lines = [AlertLine.waiting(open_delivery) for open_delivery in waiting]
        sent = 0
        for text, indexes in self.messages(lines, target, urgent=severe_only):
            ids = [waiting[i].delivery.id for i in indexes]
            claimed = self.alerts.claim_deliveries(ids, now, states)
            parts = [(text, ids)]
            if claimed != set(ids):
                # Another process swept at the same moment (a CLI sweep while the scheduler's ran)
                # and took some of these cases: this message says only what this process sends.
                mine = [i for i in indexes if waiting[i].delivery.id in claimed]
                parts = [(part, [waiting[mine[k]].delivery.id for k in kept])
                         for part, kept in self.messages([lines[i] for i in mine], target, urgent=severe_only)]
            unsent = set(claimed)
            for message, delivered in parts:
                try:
                    reference = target.send(message)
                except Exception as error:  # noqa: BLE001 - any failure leaves the rest for the next sweep
                    if isinstance(error, MaybeDelivered):
                        # A lost alert about an angry customer is worse than a labelled repeat.
                        self.alerts.mark_failed(delivered, str(error), now, self.escalation.max_attempts, maybe_sent=True)
                        log.warning("escalation: %d case(s) may have reached %s (%s); sent again at the next sweep, "
                                    "marked as a possible repeat", len(delivered), target.name, error)
                        unsent -= set(delivered)
                    if unsent:
                        self._failed(target, sorted(unsent), error, now)
                    return sent
                self.alerts.mark_sent(delivered, reference, now)
                unsent -= set(delivered)
                sent += len(delivered)
        if sent:
            log.info("escalation: %d case(s) sent to %s", sent, target.name)
        return sent

    def _failed(self, target: Target, delivery_ids: list[int], error: Exception, now: datetime) -> None:
        """The claimed but unsent cases wait for the next sweep; the target's later messages are not tried now."""
        self.alerts.mark_failed(delivery_ids, f"{type(error).__name__}: {error}", now, self.escalation.max_attempts)
        log.warning("escalation: %d case(s) not sent to %s, tried again at the next sweep: %s",
                    len(delivery_ids), target.name, error, exc_info=not isinstance(error, OutboundError))

    def _block(self, line: AlertLine, target: Target) -> str:
        """One case: how it sounded, the keyword, where and when, its link, and last what was said, so that a
        block too long for a message of its own (``pack``) loses the end of the words, not the rest."""
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


def _header(count: int, target: Target, urgent: bool, part: int, parts: int) -> str:
    zone = target.settings.timezone
    zh = f"🚨 {'紧急：' if urgent else ''}{count} 条语音需要关注（时间：{zone}）"
    notes = f"{count} voice note needs" if count == 1 else f"{count} voice notes need"
    en = f"🚨 {'URGENT: ' if urgent else ''}{notes} attention (times: {zone})"
    suffix = f" ({part}/{parts})" if parts > 1 else ""
    return say(target.language, zh + suffix, en + suffix, joiner="\n")
