"""Whether a voice note meets its chat's escalation rule, and what about it did: a pure function of the rule,
the note's scores and its transcript.

Escalations (which notes become cases) and digests (which notes a chat's
block lists) both ask this question and must get the same answer, so it is
answered here alone. A rule (``config.EscalationRule``) has emotion
thresholds, keywords and ``match``:

* ``any``: a case when some emotion's score (not only the top label's)
  reaches its threshold, or when one of the keywords was said;
* ``all``: only when both are true of the same note.

The answer says what met the rule: the emotion that reached its threshold
(the highest-scoring one, when several did) and the keyword found (the first
of the rule's that was said). A case raised by a keyword alone still names
the note's top emotion and its score, with no threshold: alerts and digests
always tell how the note sounded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import EscalationRule, EscalationSettings, chat_key
from ..remembering.results import top_emotion
from ..words import find_keyword


@dataclass(frozen=True)
class Match:
    """What about a note met its rule."""

    emotion: str  # the emotion that reached its threshold; for a keyword alone, the note's top emotion
    score: float  # that emotion's score
    threshold: float | None  # the threshold it reached; None when a keyword alone raised the case
    keyword: str | None = None  # the rule's keyword that was said, as the rule writes it


def rule_for(escalation: EscalationSettings, platform: str, chat_id: str) -> EscalationRule:
    """A chat's rule: its own, else its platform's (``platform:*``), else every chat's (``*``), else the default."""
    source = rule_source(escalation, platform, chat_id)
    return escalation.default_rule if source is None else escalation.rules[source]


def rule_source(escalation: EscalationSettings, platform: str, chat_id: str) -> str | None:
    """Which rule a chat follows: its key in ``escalation.rules``, or None for ``escalation.default_rule``."""
    return chat_key(escalation.rules, platform, chat_id)


def match(rule: EscalationRule, scores: dict[str, float], said: str | None = None) -> Match | None:
    """What about a note with ``scores`` and transcript text ``said`` meets ``rule``, or None if it does not."""
    emotion = reached(rule.thresholds, scores)
    keyword = find_keyword(rule.keywords, said) if said and rule.keywords else None
    if rule.match == "all" and (emotion is None or keyword is None):
        return None
    if emotion is not None:
        return Match(*emotion, keyword)
    if keyword is not None:
        return Match(*top_emotion(scores), None, keyword)
    return None


def reached(thresholds: dict[str, float], scores: dict[str, float]) -> tuple[str, float, float] | None:
    """The highest-scoring emotion that reaches its threshold, with its score and threshold; or None."""
    met = [(scores.get(emotion, 0.0), emotion, threshold) for emotion, threshold in thresholds.items()
           if scores.get(emotion, 0.0) >= threshold]
    if not met:
        return None
    score, emotion, threshold = max(met)
    return emotion, score, threshold
