"""What people read: a result as one friendly line, in Chinese, English or both.

``😠 愤怒 Angry · 87%`` and, when the second emotion scores over 10 %, the
runner-up on the next line. A result from random weights always says so
first, because a confident label from a test model is worse than none.

Then what was said (``reply.transcript``): ``short``, the first 200
characters cut between words (between characters in Chinese), or ``full``;
either way cut further when the platform's message would overflow
(``TextLimit``, measured as the platform counts). The emotion lines are
never cut: the words are. Words from a random-weight SenseVoice say they
are meaningless.
"""

from __future__ import annotations

from typing import Callable

from adapters.base import TextLimit

from ..emotions import BY_KEY
from ..errors import BotBridgeError
from ..remembering.results import NO_SPEECH, Result, Transcript
from ..words import clip

RUNNER_UP_ABOVE = 0.10
#: ``reply.transcript: short``: this many characters of what was said, at most.
SHORT_TRANSCRIPT = 200

_TEXT = {
    "random": ("⚠️ 测试模型（随机权重）：以下结果没有意义", "⚠️ TEST MODEL (random weights): this label is meaningless"),
    "runner_up": ("其次", "then"),
    "no_speech": ("没有听到说话声", "No speech heard"),
    "speech_ratio": ("语音占比", "speech"),
    "meaningless_words": ("随机权重，文字没有意义", "random weights: these words are meaningless"),
}


def render_result(result: Result, language: str = "both", *, transcript: str = "off",
                  limit: TextLimit | None = None) -> str:
    """The reply to a voice note: its emotion lines, then what was said (``transcript``: off, short or full),
    cut so that the whole fits ``limit``."""
    text = _emotion_lines(result, language)
    if transcript == "off" or result.reason == NO_SPEECH:
        return text
    fits = (lambda _reply: True) if limit is None else (lambda reply: limit.measure(reply) <= limit.size)
    max_chars = SHORT_TRANSCRIPT if transcript == "short" else None
    said = said_line(result.transcript, language, max_chars, fits=lambda line: fits(f"{text}\n{line}"))
    return text if said is None else f"{text}\n{said}"


def said_line(transcript: Transcript | None, language: str, max_chars: int | None, *,
              escape: Callable[[str], str] = str, fits: Callable[[str], bool] = lambda _line: True) -> str | None:
    """``💬 what was said``, at most ``max_chars`` characters of it (None: all), cut between words so that the
    line ``fits``; words from random weights say so first. ``escape`` makes the words inert for a message's
    markup. None when nothing was said or not even the start of it fits."""
    if transcript is None or not transcript.text.strip():
        return None
    head = "💬 " + (f"({_say('meaningless_words', language)}) " if transcript.random_weights else "")
    words = clip(transcript.text, max_chars or len(transcript.text), lambda clipped: fits(head + escape(clipped)))
    return head + escape(words) if words else None


def _emotion_lines(result: Result, language: str) -> str:
    lines = []
    if result.random_weights:
        lines.append(_say("random", language))
    if result.reason == NO_SPEECH:
        unknown = BY_KEY["unknown"]
        lines.append(
            f"{unknown.emoji} {_say('no_speech', language)} "
            f"({_say('speech_ratio', language)} {result.speech_ratio:.0%})"
        )
        return "\n".join(lines)
    lines.append(label(result.emotion, result.confidence, language))
    second, score = result.runner_up()
    if score > RUNNER_UP_ABOVE:
        lines.append(f"{_say('runner_up', language)} {label(second, score, language)}")
    return "\n".join(lines)


def render_error(error: BotBridgeError, language: str = "both") -> str:
    return f"⚠️ {error.message(language)}"


def render_help(language: str, *, max_duration_s: float, chart_min_duration_s: float, keeps_audio: bool) -> str:
    """What the bot does and what it keeps, for ``/start`` and ``help``."""
    zh = (
        "👋 发一条语音给我（或转发别人的语音），我会听说话人的语气，回复最可能的情绪，例如 😠 愤怒 · 87%。"
        f"长于 {chart_min_duration_s:g} 秒且情绪有变化的语音会附上情绪曲线图。语音最长 {max_duration_s:g} 秒。\n"
        f"我会保存：{'录音和' if keeps_audio else ''}分析结果，存放在本服务的数据库中。"
    )
    en = (
        "👋 Send me a voice note (or forward someone's) and I reply with how the speaker sounds, "
        f"e.g. 😠 Angry · 87%. Notes longer than {chart_min_duration_s:g} s whose emotion changes also get a chart "
        f"of it over time. Notes can be up to {max_duration_s:g} s long.\n"
        f"What I keep: {'the recording and ' if keeps_audio else ''}the result, in this service's database."
    )
    return {"zh": zh, "en": en}.get(language, f"{zh}\n\n{en}")


def render_forgotten(language: str, notes: int) -> str:
    """The answer to ``forget`` / ``删除我的数据``: how many of the person's voice notes were deleted."""
    zh = (f"🗑️ 好的，已删除你的 {notes} 条语音，以及它们的分析结果、文字记录和录音。" if notes
          else "🗑️ 我这里没有保存你的语音，没有需要删除的内容。")
    en = (f"🗑️ Done: I deleted {notes} voice note{'s' if notes != 1 else ''} of yours, with their results, "
          "transcripts and recordings." if notes else "🗑️ I keep no voice notes of yours: there was nothing to delete.")
    return {"zh": zh, "en": en}.get(language, f"{zh}\n\n{en}")


def label(emotion: str, confidence: float, language: str = "both") -> str:
    """``😠 愤怒 Angry · 87%`` (both), ``😠 愤怒 · 87%`` (zh) or ``😠 Angry · 87%`` (en)."""
    e = BY_KEY[emotion]
    names = {"zh": e.zh, "en": e.en}.get(language, f"{e.zh} {e.en}")
    return f"{e.emoji} {names} · {confidence:.0%}"


def _say(key: str, language: str) -> str:
    zh, en = _TEXT[key]
    return {"zh": zh, "en": en}.get(language, f"{zh} / {en}")
