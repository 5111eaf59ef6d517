"""Calibration: a labelled set of known scores gives exactly the threshold and precision worked out by hand,
through the computation, the console's page and ``bot-bridge calibrate``, on SQLite and PostgreSQL.

The set (``labelled_set``), for the default rule (angry >= 0.5, every Telegram chat here), in angry scores:

    people said angry      0.95 0.90 0.85 0.80 0.70 0.65 0.55         (7)
    people said not angry  0.75 0.60 0.52 0.50 0.30                   (5)

Precision at each labelled score, from the lowest: 0.30 7/12, 0.50 7/11, 0.52 7/10, 0.55 7/9 (78%),
0.60 6/8 (75%), 0.65 6/7 (86%). So at the current 0.5 it is 7 of 11; the lowest threshold reaching 80%
is 0.65 (6 of 7), and reaching 75% it is 0.55 (7 of 9). Flagged (angry >= 0.5, speech heard): the 11
labelled ones at or above 0.5, a note labelled "not sad" (which says nothing about angry) and two
unlabelled notes: 14. What is left out on purpose: a note without speech, an upload (no rule), a Slack
note (its own rule, too few labels).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from bot_bridge.acting.calibration import MIN_EACH, MIN_LABELS, Judged, calibrate, lowest_threshold
from bot_bridge.config import load_settings
from bot_bridge.remembering.labels import LabelRow, Labels
from bot_bridge.remembering.results import NO_SPEECH, Result
from bot_bridge.remembering.store import Store
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.alert_helpers import NOON, add_chat_note, scores
from tests.console_helpers import PASSWORD, sign_in

RULES = {"slack:*": {"angry": 0.6, "fearful": 0.7}}
SAID_ANGRY = [0.95, 0.90, 0.85, 0.80, 0.70, 0.65, 0.55]
SAID_NOT = [0.75, 0.60, 0.52, 0.50, 0.30]


@pytest.fixture
def store(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    yield store
    store.close()


def labelled_set(store: Store) -> None:
    """The notes and labels of the module's docstring."""
    labels = Labels(store)

    def note(angry: float, **extra) -> str:
        return add_chat_note(store, received_at=NOON, emotions={"angry": angry, **extra.pop("more", {})}, **extra)

    def label(result_id: str, emotion: str = "angry", verdict: str = "confirmed", **extra) -> None:
        labels.record(result_id, emotion=emotion, verdict=verdict, actor=extra.pop("actor", "alice"),
                      via="console", **extra)

    for score in SAID_ANGRY:
        result_id = note(score)
        if score == 0.70:  # rejected first, confirmed later: the newest label counts
            label(result_id, verdict="rejected", actor="bob")
        if score == 0.65:  # the model said otherwise; someone picked angry
            label(result_id, emotion="neutral", verdict="corrected", correct="angry")
        else:
            label(result_id)
    for score in SAID_NOT:
        result_id = note(score, more={"happy": 0.5} if score == 0.30 else {})
        if score == 0.30:  # confirmed happy: one note, one emotion, so not angry
            label(result_id, emotion="happy")
        elif score == 0.60:
            label(result_id, verdict="corrected", correct="sad")
        else:
            label(result_id, verdict="rejected")
    label(note(0.58), emotion="sad", verdict="rejected")  # says nothing about angry
    note(0.99)
    note(0.51)
    note(0.1)
    label(note(0.9, reason=NO_SPEECH), verdict="rejected")
    label(note(0.9, platform="slack", chat_id="C0VOICES01"), verdict="rejected")
    upload = Result(scores=scores(angry=0.9), duration_s=3.0, speech_ratio=1.0, model={"name": "test-model"})
    store.save_result(upload)
    label(upload.id)


def test_the_known_set_gives_the_threshold_and_precision_worked_out_by_hand(store):
    labelled_set(store)
    escalation = load_settings(environ={}, escalation__rules=RULES).escalation

    default, slack_angry, slack_fearful = calibrate(store, escalation)

    assert (default.source, default.emotion, default.threshold) == (None, "angry", 0.5)
    assert (default.flagged, default.flagged_labelled, len(default.judged)) == (14, 11, 12)
    assert (default.said_yes, default.said_no, default.enough) == (7, 5, True)
    assert sorted(item.score for item in default.judged if item.is_emotion) == sorted(SAID_ANGRY)
    assert (default.current.right, default.current.of) == (7, 11)
    assert default.suggestion.threshold == 0.65
    assert (default.suggestion.precision.right, default.suggestion.precision.of) == (6, 7)
    [lower] = calibrate(store, escalation, target=0.75, emotion="angry")[:1]
    assert lower.suggestion.threshold == 0.55 and str(lower.suggestion.precision) == "78% (7 of 9)"

    assert (slack_angry.source, slack_angry.threshold, slack_angry.flagged, len(slack_angry.judged)) == \
        ("slack:*", 0.6, 1, 1)
    assert not slack_angry.enough and slack_angry.suggestion is None and str(slack_angry.current) == "0% (0 of 1)"
    assert (slack_fearful.emotion, slack_fearful.judged, slack_fearful.current) == ("fearful", (), None)


def test_with_too_few_labels_no_threshold_is_suggested(store):
    """Nine labels are too few; so are twelve with two said not angry; a third one makes enough."""
    escalation = load_settings(environ={}).escalation
    labels = Labels(store)

    def labelled(angry: float, verdict: str) -> None:
        result_id = add_chat_note(store, received_at=NOON, emotions={"angry": angry})
        labels.record(result_id, emotion="angry", verdict=verdict, actor="alice", via="console")

    for k in range(MIN_LABELS - 1):
        labelled(0.5 + k / 20, "rejected" if k < MIN_EACH else "confirmed")
    [nine] = calibrate(store, escalation)
    assert (len(nine.judged), nine.said_no, nine.enough, nine.suggestion) == (MIN_LABELS - 1, MIN_EACH, False, None)
    assert str(nine.current) == "67% (6 of 9)"  # the precision so far is shown, no threshold from it

    with store.session.begin() as session:  # forget the labels: start again one-sided
        session.execute(LabelRow.__table__.delete())
    for k in range(MIN_LABELS):
        labelled(0.6 + k / 30, "confirmed")
    for k in range(MIN_EACH - 1):
        labelled(0.55, "rejected")
    [one_sided] = calibrate(store, escalation)
    assert (len(one_sided.judged), one_sided.enough, one_sided.suggestion) == (MIN_LABELS + MIN_EACH - 1, False, None)

    labelled(0.52, "rejected")
    [enough] = calibrate(store, escalation)  # at 0.52: 10 of 13 (77%); at 0.55: 10 of 12 (83%)
    assert enough.enough and enough.suggestion.threshold == 0.55 and str(enough.suggestion.precision) == "83% (10 of 12)"


def test_the_lowest_threshold_needs_the_target_on_at_least_three_labels():
    judged = tuple(Judged(str(k), score, right) for k, (score, right) in
                   enumerate([(0.9, True), (0.8, True), (0.7, False), (0.6, False), (0.5, False)]))
    assert lowest_threshold(judged, 0.8) is None  # 0.8 is 2 of 2, resting on too few
    assert lowest_threshold(judged, 0.6).threshold == 0.7  # 2 of 3


def test_the_page_and_the_command_say_the_same_numbers(database_url, tmp_path, tiny_model_dir, tiny_model):
    config = tmp_path / "calibration.yaml"
    config.write_text(yaml.safe_dump({"escalation": {"rules": RULES}}), encoding="utf-8")
    settings = load_settings(config, environ={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                             model__name=str(tiny_model_dir), console__password=PASSWORD)
    service = Service(settings, model=tiny_model)
    labelled_set(service.store)
    client = create_app(service=service).test_client()
    sign_in(client)

    page = client.get("/calibration?precision=0.8").get_data(as_text=True)
    run = subprocess.run([sys.executable, "-m", "bot_bridge", "--config", str(config), "calibrate", "--emotion",
                          "angry"], capture_output=True, text=True, timeout=120,
                         env={"BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_DATABASE_URL": database_url,
                              "PATH": "/usr/bin:/bin"})
    service.close()

    default_section = page.split('escalation.rules[&#34;slack:*&#34;]')[0]
    assert 'data-fact="flagged">14' in default_section and "11 of them labelled" in default_section
    assert "7 said angry · 5 said not" in default_section
    assert "64%" in default_section and "7 of 11" in default_section
    assert "<strong>0.65</strong>" in default_section and "precision 86% (6 of 7), resting on 7 labels" in page
    assert page.count("Too few labels to suggest a threshold") == 2  # the Slack rule's angry and fearful
    assert page.count('src="data:image/png;base64,') == 2  # a chart where there are labels

    assert run.returncode == 0, run.stderr
    default, slack = run.stdout.split("\n\n")[1:]
    assert "escalation.default_rule: angry >= 0.5" in default
    assert "flagged notes     14, 11 of them labelled" in default
    assert "precision now     64% (7 of 11)" in default
    assert "lowest threshold  0.65: 86% (6 of 7), resting on 7 label(s)" in default
    assert 'escalation.rules["slack:*"]: angry >= 0.6' in slack and "too few labels to suggest" in slack
