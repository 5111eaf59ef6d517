"""Calibration: how right each escalation threshold has been by people's labels, and the one they imply.

A deployment's only measure of the model is what the people who listen to
its notes say (``bot_bridge.remembering.labels``). For every threshold of
every escalation rule (``escalation.default_rule``, each entry of
``escalation.rules``; one per emotion of a rule), ``calibrate`` reports:

* the *flagged* notes: chat voice notes with speech, from the chats that
  follow that rule (as ``rules.rule_source`` decides it: a chat with a
  rule of its own is not counted under its platform's), whose score for the
  emotion reached the threshold; and how many of them got feedback;
* the *labelled* notes: every note of those chats whose newest label says
  whether it is the emotion, whatever its score, so that notes below the
  threshold that people called angry count too. A label says "angry" when
  it confirms angry or corrects to angry, and "not angry" when it rejects
  angry or gives the note another emotion (one note, one emotion); "not
  sad" says nothing about angry and is left out;
* the precision of the current threshold on them: of the labelled notes
  scoring at or above it, the share people said are the emotion;
* the lowest threshold whose precision reaches the target, with the labels
  at or above it that it rests on (at least ``MIN_EACH``). The candidates are
  the labelled notes' own scores: between two of them precision does not
  change, and a threshold at a score keeps that note (``score >= threshold``,
  as escalation compares).

With fewer than ``MIN_LABELS`` labelled notes, or fewer than ``MIN_EACH``
either way, there are too few to suggest a threshold, and the report says so
rather than offer a number from three notes. The console's Calibration page
and ``bot-bridge calibrate`` both show what this module computes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..config import DEFAULT_PRECISION, EscalationSettings
from ..remembering.labels import Labels, chat_note_scores
from ..remembering.results import NO_SPEECH
from ..remembering.store import Store
from .rules import rule_source

MIN_LABELS = 10  # labelled notes before a threshold is suggested ...
MIN_EACH = 3  # ... with at least this many each way; and a suggested threshold rests on at least this many
DEFAULT_RULE = "escalation.default_rule"


@dataclass(frozen=True)
class Judged:
    """A labelled note, as one threshold sees it: its score, and whether people said it is the emotion."""

    result_id: str
    score: float
    is_emotion: bool


@dataclass(frozen=True)
class Precision:
    right: int  # notes at or above the threshold that people said are the emotion ...
    of: int  # ... of the labelled notes at or above it

    @property
    def value(self) -> float:
        return self.right / self.of

    def __str__(self) -> str:
        return f"{self.value:.0%} ({self.right} of {self.of})"


@dataclass(frozen=True)
class Suggestion:
    threshold: float
    precision: Precision  # ``precision.of``: the labels it rests on


@dataclass(frozen=True)
class Calibration:
    """One threshold of one rule, measured against the labels so far."""

    source: str | None  # the rule's key in escalation.rules; None: escalation.default_rule
    emotion: str
    threshold: float
    target: float
    flagged: int  # notes of the rule's chats scoring at or above the threshold
    flagged_labelled: int  # ... of which have a label that says whether they are the emotion
    judged: tuple[Judged, ...]  # every labelled note of the rule's chats, whatever its score
    current: Precision | None  # None: no labelled note reached the threshold
    suggestion: Suggestion | None  # None: too few labels, or no threshold reaches the target

    @property
    def rule(self) -> str:
        return DEFAULT_RULE if self.source is None else f'escalation.rules["{self.source}"]'

    @property
    def said_yes(self) -> int:
        return sum(judged.is_emotion for judged in self.judged)

    @property
    def said_no(self) -> int:
        return len(self.judged) - self.said_yes

    @property
    def enough(self) -> bool:
        return len(self.judged) >= MIN_LABELS and min(self.said_yes, self.said_no) >= MIN_EACH


def calibrate(store: Store, escalation: EscalationSettings, *, target: float = DEFAULT_PRECISION,
              emotion: str | None = None) -> list[Calibration]:
    """Every threshold of every rule (only ``emotion``'s when given), the default rule first."""
    rules = [(None, escalation.default_rule), *escalation.rules.items()]
    scores: dict[str | None, list[dict[str, float]]] = {source: [] for source, _ in rules}
    for platform, chat_id, note_scores in chat_note_scores(store):
        scores[rule_source(escalation, platform, chat_id)].append(note_scores)
    labelled: dict[str | None, list] = {source: [] for source, _ in rules}
    for item in Labels(store).labelled():
        if item.note is not None and item.note.kind == "voice" and item.result.reason != NO_SPEECH:
            labelled[rule_source(escalation, item.note.platform, item.note.chat_id)].append(item)
    return [
        _calibration(source, key, threshold, target, scores[source], labelled[source])
        for source, rule in rules
        for key, threshold in rule.thresholds.items()
        if emotion in (None, key)
    ]


def precision_at(judged: tuple[Judged, ...], threshold: float) -> Precision | None:
    """Precision of ``threshold`` on the labelled notes; None when none reaches it."""
    reached = [item.is_emotion for item in judged if item.score >= threshold]
    return Precision(sum(reached), len(reached)) if reached else None


def lowest_threshold(judged: tuple[Judged, ...], target: float) -> Suggestion | None:
    """The lowest labelled score whose precision is ``target`` or more, resting on ``MIN_EACH`` labels or more."""
    right = of = 0
    at_or_above = []  # (score, right, of) at each distinct score, highest first
    for item in sorted(judged, key=lambda item: -item.score):
        right, of = right + item.is_emotion, of + 1
        if at_or_above and at_or_above[-1][0] == item.score:
            at_or_above[-1] = (item.score, right, of)
        else:
            at_or_above.append((item.score, right, of))
    for score, right, of in reversed(at_or_above):
        if score > 0 and of >= MIN_EACH and right / of >= target:
            return Suggestion(score, Precision(right, of))
    return None


def too_few_words(calibration: Calibration) -> str:
    """Why no threshold is suggested, for a person: what there is, and what is needed."""
    return (f"too few labels to suggest a threshold: {len(calibration.judged)} "
            f"({calibration.said_yes} said {calibration.emotion}, {calibration.said_no} said not); "
            f"it takes {MIN_LABELS}, with at least {MIN_EACH} each way")


def _calibration(source: str | None, emotion: str, threshold: float, target: float,
                 scores: list[dict[str, float]], labelled: list) -> Calibration:
    judged = tuple(
        Judged(item.result.id, item.result.scores.get(emotion, 0.0), verdict)
        for item in labelled
        if (verdict := item.label.is_emotion(emotion)) is not None
    )
    calibration = Calibration(
        source=source, emotion=emotion, threshold=threshold, target=target,
        flagged=sum(note.get(emotion, 0.0) >= threshold for note in scores),
        flagged_labelled=sum(item.score >= threshold for item in judged),
        judged=judged, current=precision_at(judged, threshold), suggestion=None,
    )
    if not calibration.enough:
        return calibration
    return replace(calibration, suggestion=lowest_threshold(judged, target))
