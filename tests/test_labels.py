"""Labels: one place records people's word on results, keeps the history, counts the newest, audits each.

Results are written straight into the store with known scores
(``tests.alert_helpers.add_chat_note``); every test runs on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.labels import REPEAT_WINDOW, LabelError, Labels, Verdict
from bot_bridge.remembering.store import Store
from tests.alert_helpers import NOON, add_chat_note


@pytest.fixture
def store(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    yield store
    store.close()


def angry_note(store, score: float = 0.7, **extra) -> str:
    return add_chat_note(store, received_at=NOON, emotions={"angry": score}, **extra)


def test_a_label_is_recorded_with_who_where_and_when_and_audited_in_the_same_place(store):
    result_id = angry_note(store)
    labels = Labels(store)

    label = labels.record(result_id, emotion="angry", verdict=Verdict.REJECTED, actor="slack:U123", via="slack",
                          actor_name="Bob", case_id=7, at=NOON + timedelta(minutes=3))

    assert (label.result_id, label.emotion, label.verdict, label.correct) == (result_id, "angry", "rejected", None)
    assert (label.actor, label.actor_name, label.via, label.case_id) == ("slack:U123", "Bob", "slack", 7)
    assert label.at == NOON + timedelta(minutes=3) and labels.latest(result_id) == label
    [entry] = AuditLog(store).entries(subject=f"result:{result_id}")
    assert (entry.actor, entry.via, entry.action, entry.at) == ("slack:U123", "slack", "label.reject", label.at)
    assert entry.detail == {"emotion": "angry", "name": "Bob", "case_id": 7}


def test_the_same_press_twice_is_one_label_and_one_audit_entry(store):
    result_id = angry_note(store)
    labels = Labels(store)

    first = labels.record(result_id, emotion="angry", verdict="confirmed", actor="alice", via="console")
    again = labels.record(result_id, emotion="angry", verdict="confirmed", actor="alice", via="console")

    assert again == first and labels.history(result_id) == [first]
    assert len(AuditLog(store).entries(subject=f"result:{result_id}")) == 1


def test_a_later_different_label_supersedes_and_the_history_keeps_both(store):
    result_id = angry_note(store)
    labels = Labels(store)
    confirmed = labels.record(result_id, emotion="angry", verdict="confirmed", actor="alice", via="console", at=NOON)

    corrected = labels.record(result_id, emotion="angry", verdict="corrected", correct="sad", actor="telegram:42",
                              via="telegram", at=NOON + timedelta(minutes=1))
    # Alice's press delivered again, crossing the colleague's: still her one label.
    repeat = labels.record(result_id, emotion="angry", verdict="confirmed", actor="alice", via="console",
                           at=NOON + REPEAT_WINDOW)
    # Alice says it again later: a restatement, recorded, and now the label that counts.
    restated = labels.record(result_id, emotion="angry", verdict="confirmed", actor="alice", via="console",
                             at=NOON + REPEAT_WINDOW + timedelta(seconds=1))

    assert repeat == confirmed and labels.history(result_id) == [restated, corrected, confirmed]
    assert labels.latest(result_id) == restated and restated.id != confirmed.id
    assert corrected.correct == "sad" and confirmed.correct == "angry"
    actions = [entry.action for entry in AuditLog(store).entries(subject=f"result:{result_id}")]
    assert actions == ["label.confirm", "label.correct", "label.confirm"]


def test_picking_the_flagged_emotion_itself_confirms_it(store):
    label = Labels(store).record(angry_note(store), emotion="angry", verdict="corrected", correct="angry",
                                 actor="alice", via="console")
    assert (label.verdict, label.correct) == ("confirmed", "angry")


@pytest.mark.parametrize("arguments, words", [
    ({"emotion": "furious", "verdict": "confirmed"}, "'furious' is not an emotion"),
    ({"emotion": "angry", "verdict": "maybe"}, "'maybe' is not a verdict"),
    ({"emotion": "angry", "verdict": "corrected"}, "says which emotion is right"),
    ({"emotion": "angry", "verdict": "corrected", "correct": "calm"}, "'calm' is not an emotion"),
    ({"emotion": "angry", "verdict": "rejected", "correct": "sad"}, "correct the label"),
    ({"emotion": "angry", "verdict": "confirmed", "correct": "sad"}, "correct it"),
])
def test_a_label_that_makes_no_sense_is_refused_and_nothing_is_written(store, arguments, words):
    result_id = angry_note(store)
    with pytest.raises(LabelError, match=words):
        Labels(store).record(result_id, **arguments, actor="alice", via="console")
    assert Labels(store).history(result_id) == [] and AuditLog(store).entries() == []


def test_a_label_on_a_result_that_does_not_exist_is_refused(store):
    with pytest.raises(LabelError, match="no result 'nope'"):
        Labels(store).record("nope", emotion="angry", verdict="confirmed", actor="alice", via="console")


def test_each_result_counts_its_newest_label_for_calibration_and_export(store):
    labels = Labels(store)
    chat = angry_note(store, 0.8, sender_name="Carol")
    other = angry_note(store, 0.4, platform="slack", chat_id="C1")
    unlabelled = angry_note(store, 0.9)
    labels.record(chat, emotion="angry", verdict="confirmed", actor="alice", via="console")
    labels.record(chat, emotion="angry", verdict="rejected", actor="bob", via="console")
    labels.record(other, emotion="neutral", verdict="corrected", correct="angry", actor="bob", via="cli")

    found = {item.result.id: item for item in labels.labelled()}

    assert set(found) == {chat, other} and unlabelled not in labels.for_results([chat, other, unlabelled])
    assert found[chat].label.verdict == "rejected" and found[chat].note.sender_name == "Carol"
    assert found[other].note.platform == "slack" and found[other].result.scores["angry"] == 0.4
    assert found[chat].label.is_emotion("angry") is False and found[chat].label.is_emotion("sad") is None
    assert found[other].label.is_emotion("angry") is True and found[other].label.is_emotion("neutral") is False


def test_presses_at_the_same_moment_are_all_kept_in_one_order_and_a_repeat_is_still_one(store):
    """Eight people label one result at once, each press delivered twice: eight labels, numbered 1..8."""
    result_id = angry_note(store)
    labels = Labels(store)
    start = threading.Barrier(16)
    errors = []

    def press(person: int) -> None:
        start.wait()
        try:
            labels.record(result_id, emotion="angry", verdict="confirmed" if person % 2 else "rejected",
                          actor=f"person{person}", via="slack")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=press, args=(person % 8,)) for person in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    history = labels.history(result_id)
    assert sorted(label.actor for label in history) == [f"person{k}" for k in range(8)]
    assert labels.latest(result_id) == history[0]
    assert len(AuditLog(store).entries(subject=f"result:{result_id}")) == 8
