"""Daily digests: each target hears, at its own local time, how its chats' voice notes felt.

The digest of day D for a target with ``digest.targets.<key>.at: "18:00"``
goes out at 18:00 on D in the target's timezone and covers the 24 hours
before it (18:00 on D-1 to 18:00 on D): consecutive digests neither overlap
nor leave a gap, whatever time a team picks. It counts the chats routed to
the target (``routes``), each with its number of voice notes, the share of
each emotion, its escalations and the (at most three) notes that met the
chat's escalation rule, strongest first, each with a quote of what was said,
compared with the previous period and the average of the seven before it,
the words that recur in its angry notes (``bot_bridge.words.recurring``:
said in two or more of the notes whose top emotion is angry, stop words left
out), and a chart. The list uses the rule of ``acting/rules.py``
(``rule_for``, ``match``): a note that is mostly neutral with some anger in
it is no angry note. Notes deleted since (on request or by retention) are
still counted, from what their deletion left (``AlertStore.forgotten_notes``),
but no longer listed or quoted, and the digest says how many.

``Digests.send_due(now)`` runs every minute in the scheduler: a digest is due
from its time until ``digest.grace_period_h`` after it, so one missed while
bot-bridge was down goes out when it comes back, late and saying so. The
``digests`` table (unique per target and day) makes sure it goes out once;
see ``bot_bridge.remembering.alert_store``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from ..chat.outbound import MaybeDelivered
from ..config import Settings
from ..remembering.alert_store import AlertStore, ChatNote, DigestState
from ..remembering.results import NO_SPEECH
from ..remembering.store import Store
from .alerting import Routes, Target, cut_to_fit, say
from ..words import recurring
from .digest_chart import digest_chart
from .digest_text import render_digest
from .rules import Match, match, rule_for

log = logging.getLogger(__name__)

#: How many periods before the digest's own its averages cover.
AVERAGE_DAYS = 7
OVER_RULE_LISTED = 3
#: A digest sent this long after its time says it is late (the scheduler checks every minute).
LATE_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class Period:
    """The 24 hours a digest covers: from its time on the day before, to its time on ``day``."""

    day: date
    start: datetime
    end: datetime

    @classmethod
    def of(cls, day: date, at: time, zone: ZoneInfo) -> Period:
        end = datetime.combine(day, at, tzinfo=zone)
        start = datetime.combine(day - timedelta(days=1), at, tzinfo=zone)
        return cls(day, start.astimezone(timezone.utc), end.astimezone(timezone.utc))


def due_day(now: datetime, at: time, zone: ZoneInfo, grace: timedelta) -> date | None:
    """The day whose digest is due at ``now``: its time has come and is at most ``grace`` ago."""
    local = now.astimezone(zone)
    day = local.date()
    if local < datetime.combine(day, at, tzinfo=zone):
        day -= timedelta(days=1)
    return day if now - datetime.combine(day, at, tzinfo=zone) <= grace else None


@dataclass
class DayCounts:
    notes: int = 0  # voice notes received
    analysed: int = 0  # of them, analysed with speech heard
    angry: int = 0  # of those, the ones whose top emotion is angry


@dataclass(frozen=True)
class RuleNote:
    """A note of the period that met its chat's escalation rule, and how."""

    note: ChatNote
    match: Match


@dataclass
class ChatDigest:
    """One source chat in one digest. ``history[0]`` is the digest's period, ``history[k]`` k periods before."""

    source: str
    chat_name: str
    history: list[DayCounts] = field(default_factory=lambda: [DayCounts() for _ in range(AVERAGE_DAYS + 1)])
    emotions: Counter = field(default_factory=Counter)  # top emotion -> notes, in the digest's period
    escalations: int = 0
    over_rule: list[RuleNote] = field(default_factory=list)  # notes that met the chat's escalation rule
    angry_words: list[tuple[str, int]] = field(default_factory=list)  # words said in several angry notes, how many
    deleted: int = 0  # notes of the period counted from what their deletion left: not listed, not quoted

    def count(self, periods_ago: int, notes: int, emotion: str | None, escalated: int) -> None:
        """Count ``notes`` received ``periods_ago`` periods before the digest's, with top ``emotion`` (None: not
        analysed, or no speech heard), ``escalated`` of them cases."""
        counts = self.history[periods_ago]
        counts.notes += notes
        if emotion is not None:
            counts.analysed += notes
            counts.angry += notes if emotion == "angry" else 0
        if periods_ago == 0:
            self.escalations += escalated
            if emotion is not None:
                self.emotions[emotion] += notes

    @property
    def notes(self) -> int:
        return self.history[0].notes

    @property
    def previous_notes(self) -> int:
        return self.history[1].notes

    @property
    def average_notes(self) -> float:
        return sum(day.notes for day in self.history[1:]) / AVERAGE_DAYS

    @property
    def shares(self) -> dict[str, float]:
        """Each emotion's share of the analysed notes, largest first."""
        analysed = self.history[0].analysed
        return {emotion: count / analysed for emotion, count in self.emotions.most_common()} if analysed else {}

    def angry_share(self, periods_ago: int = 0) -> float | None:
        day = self.history[periods_ago]
        return day.angry / day.analysed if day.analysed else None

    @property
    def average_angry_share(self) -> float | None:
        analysed = sum(day.analysed for day in self.history[1:])
        return sum(day.angry for day in self.history[1:]) / analysed if analysed else None


@dataclass(frozen=True)
class Digest:
    target: Target
    period: Period
    chats: list[ChatDigest]

    @property
    def empty(self) -> bool:
        return not self.chats


class Digests:
    """Composes and sends the daily digests. Every method takes ``now`` or a day: tests own the clock."""

    def __init__(self, store: Store, settings: Settings, targets: dict[str, Target]) -> None:
        self.alerts = AlertStore(store)
        self.digest = settings.digest
        self.escalation = settings.escalation
        self.public_url = settings.public_url
        self.routes = Routes(settings.routes)
        self.targets = {key: targets[key] for key in settings.digest.targets if key in targets}

    def send_due(self, now: datetime) -> dict[str, str]:
        """Send every digest that is due and not sent yet; what became of each one tried, per target."""
        grace = timedelta(hours=self.digest.grace_period_h)
        outcomes = {}
        for key, target in self.targets.items():
            day = due_day(now, self.digest.targets[key].at, target.zone, grace)
            if day is not None and target.sender is not None:
                outcome = self.send(target, day, now)
                if outcome is not None:
                    outcomes[key] = outcome
        return outcomes

    def send(self, target: Target, day: date, now: datetime) -> str | None:
        """Send ``day``'s digest to ``target`` unless it went out already: ``sent``, ``skipped``, ``failed``,
        or None when there was nothing to do."""
        row = self.alerts.claim_digest(target.key, day, now)
        if row is None:
            return None
        try:
            digest = self.compose(target, day)
            if digest.empty and self.digest.skip_empty:
                self.alerts.finish_digest(row.id, DigestState.SKIPPED, now)
                return DigestState.SKIPPED
            texts = row.texts
            if texts is None:
                texts = render_digest(digest, self.public_url, late_since=self._late_since(target, day, now))
                self.alerts.save_digest_texts(row.id, texts, now)
            parts = [(text, None) for text in texts]
            chart = digest_chart(digest)
            if chart is not None:
                parts.append((chart.caption, chart.png))
        except Exception as error:  # nothing went out: give the claim back now, not as "maybe sent" 10 min later
            self.alerts.fail_digest(row.id, f"{type(error).__name__}: {error}", now)
            log.exception("digest %s for %s: composing it failed, so nothing was sent; tried again at the next "
                          "check", day, target.name)
            return DigestState.FAILED
        for index in range(row.parts_sent, len(parts)):
            text, image = parts[index]
            if index == row.parts_sent and row.maybe_sent:
                text = cut_to_fit(f"↻ {_may_repeat(target.language)}\n{text}", target.limit.size, target.limit)
            try:
                target.send(text, image)
            except Exception as error:  # noqa: BLE001 - retried at the next check, within the grace period
                self.alerts.fail_digest(row.id, f"{type(error).__name__}: {error}", now,
                                        maybe_sent=isinstance(error, MaybeDelivered))
                log.warning("digest %s for %s: part %d of %d not sent, tried again at the next check: %s",
                            day, target.name, index + 1, len(parts), error)
                return DigestState.FAILED
            self.alerts.digest_part_sent(row.id, index + 1, now)
        self.alerts.finish_digest(row.id, DigestState.SENT, now)
        log.info("digest %s sent to %s in %d message(s)", day, target.name, len(parts))
        return DigestState.SENT

    def preview(self, target: Target, day: date) -> tuple[list[str], bytes | None] | None:
        """``day``'s digest for ``target`` as it would be sent: its texts and its chart, or None when an
        empty day is skipped; nothing is recorded."""
        digest = self.compose(target, day)
        if digest.empty and self.digest.skip_empty:
            return None
        chart = digest_chart(digest)
        return render_digest(digest, self.public_url), None if chart is None else chart.png

    def compose(self, target: Target, day: date) -> Digest:
        """The numbers of ``day``'s digest for ``target``, from the voice notes of the chats routed to it."""
        at = self.digest.targets[target.key].at
        periods = [Period.of(day - timedelta(days=k), at, target.zone) for k in range(AVERAGE_DAYS + 1)]
        chats: dict[str, ChatDigest] = {}
        angry_said: dict[str, list[str]] = {}  # per chat, what its angry notes of the period said
        for chat_note in self.alerts.chat_notes(periods[-1].start, periods[0].end):
            note, result = chat_note.note, chat_note.result
            source = f"{note.platform}:{note.chat_id}"
            if not self.routes.reaches(source, target.key):
                continue
            chat = chats.setdefault(source, ChatDigest(source, f"{note.platform} · {note.chat_name or note.chat_id}"))
            periods_ago = next(k for k, period in enumerate(periods) if note.received_at >= period.start)
            analysed = result is not None and result.reason != NO_SPEECH
            chat.count(periods_ago, 1, result.emotion if analysed else None, int(chat_note.escalated))
            if periods_ago == 0 and analysed:
                said = result.transcript
                if said is not None and result.emotion == "angry":
                    angry_said.setdefault(source, []).append(said.text)
                met = match(rule_for(self.escalation, note.platform, note.chat_id), result.scores,
                            None if said is None else said.text)
                if met:
                    chat.over_rule.append(RuleNote(chat_note, met))
        for gone in self.alerts.forgotten_notes(periods[-1].start, periods[0].end):
            source = f"{gone.platform}:{gone.chat_id}"
            if not self.routes.reaches(source, target.key):
                continue
            chat = chats.setdefault(source, ChatDigest(source, f"{gone.platform} · {gone.chat_id}"))
            periods_ago = next(k for k, period in enumerate(periods) if gone.quarter >= period.start)
            chat.count(periods_ago, gone.notes, gone.emotion, gone.escalated)
            if periods_ago == 0:
                chat.deleted += gone.notes
        for source, chat in chats.items():
            chat.over_rule = sorted(chat.over_rule, key=lambda line: -line.match.score)[:OVER_RULE_LISTED]
            chat.angry_words = recurring(angry_said.get(source, []))
        active = sorted((chat for chat in chats.values() if chat.notes), key=lambda chat: (-chat.notes, chat.source))
        return Digest(target, periods[0], active)

    def _late_since(self, target: Target, day: date, now: datetime) -> datetime | None:
        """When the digest was due, if it goes out more than a few minutes after that."""
        due = Period.of(day, self.digest.targets[target.key].at, target.zone).end
        return due if now - due > LATE_AFTER else None



def _may_repeat(language: str) -> str:
    return say(language, "bot-bridge 上次发送时中断，这条可能重复", "bot-bridge stopped while sending this; it may repeat")
