"""The nine emotions emotion2vec+ knows, and how to read them from a model's tokens.

The order of ``EMOTIONS`` is the published class order of emotion2vec+
(``tokens.txt`` of plus_base and plus_large). Models are never trusted to
follow it: labels are matched by their English part, so a token file in
another order, or an old one with ``unuse_*`` placeholders, still maps right.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Emotion:
    key: str
    emoji: str
    zh: str
    en: str


EMOTIONS: tuple[Emotion, ...] = (
    Emotion("angry", "😠", "愤怒", "Angry"),
    Emotion("disgusted", "🤢", "厌恶", "Disgusted"),
    Emotion("fearful", "😨", "恐惧", "Fearful"),
    Emotion("happy", "😊", "快乐", "Happy"),
    Emotion("neutral", "😐", "中性", "Neutral"),
    Emotion("other", "🤔", "其他", "Other"),
    Emotion("sad", "😢", "悲伤", "Sad"),
    Emotion("surprised", "😲", "惊讶", "Surprised"),
    Emotion("unknown", "❓", "未知", "Unknown"),
)

EMOTION_KEYS: tuple[str, ...] = tuple(e.key for e in EMOTIONS)
BY_KEY: dict[str, Emotion] = {e.key: e for e in EMOTIONS}


def emotion_key_for_token(token: str) -> str | None:
    """Map one ``tokens.txt`` entry to an emotion key; ``None`` for placeholders.

    ``生气/angry`` -> ``angry``, ``<unk>`` -> ``unknown``, ``unuse_0`` -> ``None``.
    """
    token = token.strip()
    if token == "<unk>":
        return "unknown"
    if not token or token.startswith("unuse"):
        return None
    key = token.rsplit("/", 1)[-1].strip().lower()
    if key not in BY_KEY:
        raise ValueError(f"token {token!r} is not one of the nine emotion2vec+ emotions")
    return key

