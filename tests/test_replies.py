"""What people read in a reply: the label, the runner-up when it scores over 10 %, the test-model warning, and
what was said, within the platform's limit.

Results here are built with known scores, so every number in a reply is known; the chat tests
(test_telegram.py, test_slack.py, test_wecom.py) send the same texts through the platforms.
"""

from __future__ import annotations

import pytest

from adapters.base import TextLimit
from bot_bridge.acting.replies import render_result
from bot_bridge.remembering.results import Result
from tests.alert_helpers import scores, transcript


@pytest.mark.parametrize(("second", "runner_up"), [(0.3, "then 😢 Sad · 30%"), (0.11, "then 😢 Sad · 11%"),
                                                   (0.1, None), (0.04, None)])
def test_the_runner_up_is_named_only_when_it_scores_over_10_percent(second, runner_up):
    result = Result(scores(angry=1 - second, sad=second, neutral=0.0), 3.0, 1.0, {"name": "m"})

    lines = render_result(result, "en").split("\n")

    assert lines[0] == f"😠 Angry · {1 - second:.0%}"
    assert lines[1:] == ([runner_up] if runner_up else [])


def test_the_runner_up_line_speaks_the_chats_language():
    result = Result(scores(happy=0.55, surprised=0.4, neutral=0.05), 3.0, 1.0, {"name": "m"})

    assert render_result(result, "zh") == "😊 快乐 · 55%\n其次 😲 惊讶 · 40%"
    assert render_result(result, "both") == "😊 快乐 Happy · 55%\n其次 / then 😲 惊讶 Surprised · 40%"


def test_a_random_weight_model_says_so_before_anything_else():
    result = Result(scores(angry=0.9), 3.0, 1.0, {"name": "tiny", "random_weights": True})

    first, label, *_ = render_result(result, "en").split("\n")

    assert first == "⚠️ TEST MODEL (random weights): this label is meaningless" and label == "😠 Angry · 90%"


# --- what was said, under the emotion (reply.transcript) ----------------------------------------------

COMPLAINT = "我已经等了三个星期了，退款到底什么时候到？" * 20  # 420 characters, 1260 bytes


def said_result(text: str, *, random_words: bool = False) -> Result:
    return Result(scores(angry=0.87, neutral=0.13), 9.0, 1.0, {"name": "m"},
                  transcript=transcript(text, random_weights=random_words))


def test_short_is_the_first_200_characters_cut_between_characters_and_full_is_all():
    result = said_result(COMPLAINT)

    short = render_result(result, "zh", transcript="short")
    assert short.split("\n")[0] == "😠 愤怒 · 87%"
    said = short.split("\n")[-1]
    assert said.startswith("💬 我已经等了三个星期了") and said.endswith("…") and len(said) == len("💬 ") + 200
    assert render_result(result, "zh", transcript="full").endswith(COMPLAINT)
    assert render_result(result, "zh", transcript="off") == "😠 愤怒 · 87%\n其次 😐 中性 · 13%"


def test_english_is_cut_between_words():
    words = "Where is my refund? I have been waiting for three weeks and nobody answers. " * 4

    said = render_result(said_result(words), "en", transcript="short").split("\n")[-1]

    assert said.endswith("…") and said[-2] != " " and words.startswith(said[2:-1])
    assert words[len(said) - 3] in " ?."  # the next character after the cut starts a new word


@pytest.mark.parametrize(
    "limit",
    [TextLimit(2048, "bytes"), TextLimit(1024, "utf-16 units"),
     TextLimit(300, "characters", escape=lambda text: text.replace("&", "&amp;"))],
)
def test_a_reply_never_exceeds_the_platforms_limit_the_words_are_cut_not_the_emotion(limit):
    result = said_result(COMPLAINT.replace("退款", "退款 & refund") * 3)

    reply = render_result(result, "both", transcript="full", limit=limit)

    assert limit.measure(reply) <= limit.size
    assert reply.startswith("😠 愤怒 Angry · 87%\n其次 / then 😐 中性 Neutral · 13%\n💬 我已经") and reply.endswith("…")


def test_words_from_random_weights_say_they_are_meaningless_and_a_silent_note_says_none():
    said = render_result(said_result("忏濟椃僲攊颬", random_words=True), "en", transcript="short").split("\n")[-1]

    assert said == "💬 (random weights: these words are meaningless) 忏濟椃僲攊颬"
    assert "💬" not in render_result(said_result(""), "en", transcript="full")
    assert "💬" not in render_result(Result(scores(angry=0.9), 3.0, 1.0, {"name": "m"}), "en", transcript="full")
