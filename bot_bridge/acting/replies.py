"""What people read: a result as one friendly line, in Chinese, English or both.

``😠 愤怒 Angry · 87%`` and, when the second emotion scores over 10 %, the
runner-up on the next line. A result from random weights always says so
first, because a confident label from a test model is worse than none.
"""

from __future__ import annotations

from ..emotions import BY_KEY
from ..errors import BotBridgeError
from ..remembering.results import NO_SPEECH, Result

RUNNER_UP_ABOVE = 0.10

_TEXT = {
    "random": ("⚠️ 测试模型（随机权重）：以下结果没有意义", "⚠️ TEST MODEL (random weights): this label is meaningless"),
    "runner_up": ("其次", "then"),
    "no_speech": ("没有听到说话声", "No speech heard"),
    "speech_ratio": ("语音占比", "speech"),
}


def render_result(result: Result, language: str = "both") -> str:
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


def label(emotion: str, confidence: float, language: str = "both") -> str:
    """``😠 愤怒 Angry · 87%`` (both), ``😠 愤怒 · 87%`` (zh) or ``😠 Angry · 87%`` (en)."""
    e = BY_KEY[emotion]
    names = {"zh": e.zh, "en": e.en}.get(language, f"{e.zh} {e.en}")
    return f"{e.emoji} {names} · {confidence:.0%}"


def _say(key: str, language: str) -> str:
    zh, en = _TEXT[key]
    return {"zh": zh, "en": en}.get(language, f"{zh} / {en}")
