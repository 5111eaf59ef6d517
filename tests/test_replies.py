"""What people read in a reply: the label, the runner-up when it scores over 10 %, and the test-model warning.

Results here are built with known scores, so every number in a reply is known; the chat tests
(test_telegram.py, test_slack.py, test_wecom.py) send the same texts through the platforms.
"""

from __future__ import annotations

import pytest

from bot_bridge.acting.replies import render_result
from bot_bridge.remembering.results import Result
from tests.alert_helpers import scores


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
