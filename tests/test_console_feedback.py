"""Feedback on the console's result page: "Right", "Not <emotion>" and the picker record labels through
``Labels``; the page shows the label that counts and the history; sign-in and CSRF guard the form."""

from __future__ import annotations

import re
from datetime import timedelta

from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.case_store import CaseStore, MatchedNote
from bot_bridge.remembering.labels import Labels
from tests.alert_helpers import NOON, add_chat_note
from tests.console_helpers import app, browser, csrf_from  # noqa: F401 - fixtures


def escalated_note(store) -> str:
    """A note the model heard as sad (0.48) that was escalated as angry (0.42 >= 0.4)."""
    result_id = add_chat_note(store, received_at=NOON, emotions={"angry": 0.42, "sad": 0.48})
    note = next(note for note in store.voice_notes() if note.result_id == result_id)
    CaseStore(store).record_note(MatchedNote(note, store.result_row(result_id), "angry", 0.42, 0.4, False), [], NOON,
                                 timedelta(minutes=30))
    return result_id


def label_form(page: str, result_id: str) -> dict:
    """What the page's feedback forms send: their action and the hidden fields they all share."""
    action = re.search(r'<form method="post" action="([^"]+/label)"', page).group(1)
    emotion = re.search(r'<input type="hidden" name="emotion" value="([a-z]+)">', page).group(1)
    assert action == f"/results/{result_id}/label"
    return {"action": action, "emotion": emotion, "csrf_token": csrf_from(page)}


def test_the_buttons_are_about_the_escalated_emotion_and_record_a_label_the_page_then_shows(browser, service):
    result_id = escalated_note(service.store)
    page = browser.get(f"/results/{result_id}").get_data(as_text=True)
    form = label_form(page, result_id)
    assert form["emotion"] == "angry"  # what the alert said, not the model's top emotion (sad)
    assert "Right, angry" in page and "Not angry" in page and "No feedback yet" in page
    picker = page[page.index('class="emotion-picker"'):]
    assert len(re.findall(r'<button type="submit" name="correct" value="[a-z]+"', picker)) == 9
    assert len(re.findall(r'<img class="emoji" src="/static/console/emoji/[a-z]+\.svg"', picker)) == 9

    answer = browser.post(form["action"], data={**form, "verdict": "rejected"})

    assert answer.status_code == 303 and answer.location.endswith(f"/results/{result_id}#feedback")
    [label] = Labels(service.store).history(result_id)
    assert (label.emotion, label.verdict, label.actor, label.via) == ("angry", "rejected", "admin", "console")
    [entry] = AuditLog(service.store).entries(subject=f"result:{result_id}", action="label")
    assert (entry.action, entry.via) == ("label.reject", "console")
    shown = browser.get(f"/results/{result_id}").get_data(as_text=True)
    now = shown[shown.index('id="label-now"'):shown.index("</p>", shown.index('id="label-now"'))]
    assert "Not" in now and "emotion-angry" in now
    current = shown[shown.index('<li class="label-current">'):shown.index("</li>", shown.index('label-current'))]
    assert "admin · console · <time" in current  # who (the signed-in account), from where, then when


def test_the_picker_corrects_the_label_and_the_history_lists_both_newest_first(browser, service):
    result_id = escalated_note(service.store)
    form = label_form(browser.get(f"/results/{result_id}").get_data(as_text=True), result_id)
    browser.post(form["action"], data={**form, "verdict": "confirmed"})
    browser.post(form["action"], data={**form, "verdict": "confirmed"})  # a double click: one label

    browser.post(form["action"], data={**form, "verdict": "corrected", "correct": "fearful"})

    first, second = Labels(service.store).history(result_id)
    assert (first.verdict, first.correct, second.verdict) == ("corrected", "fearful", "confirmed")
    page = browser.get(f"/results/{result_id}").get_data(as_text=True)
    history = page[page.index('id="label-history"'):]
    assert history.index("emotion-fearful") < history.index("Right:")
    assert history.count("<li") == 2


def test_a_result_the_model_alone_labelled_is_asked_about_the_models_emotion(browser, service):
    result_id = add_chat_note(service.store, received_at=NOON, emotions={"happy": 0.7})
    assert label_form(browser.get(f"/results/{result_id}").get_data(as_text=True), result_id)["emotion"] == "happy"


def test_without_sign_in_or_csrf_or_with_a_bad_label_nothing_is_recorded(app, browser, service):
    result_id = escalated_note(service.store)
    form = label_form(browser.get(f"/results/{result_id}").get_data(as_text=True), result_id)

    signed_out = app.test_client().post(form["action"], data={**form, "verdict": "confirmed"})
    forged = browser.post(form["action"], data={**form, "verdict": "confirmed", "csrf_token": "forged"})
    nonsense = browser.post(form["action"], data={**form, "verdict": "corrected", "correct": "bored"})
    nowhere = browser.post("/results/0123456789abcdef/label", data={**form, "verdict": "confirmed"})

    assert signed_out.status_code == 302 and signed_out.location.startswith("/login")
    assert forged.status_code == 400 and "expired" in forged.get_data(as_text=True).lower()
    assert nonsense.status_code == 400 and "This feedback cannot be recorded" in nonsense.get_data(as_text=True)
    assert nowhere.status_code == 404
    assert Labels(service.store).history(result_id) == []
    assert AuditLog(service.store).entries(subject=f"result:{result_id}", action="label") == []


def test_the_calibration_page_is_in_the_menu_and_refuses_a_target_that_is_no_share(browser):
    assert 'href="/calibration"' in browser.get("/").get_data(as_text=True)
    empty = browser.get("/calibration").get_data(as_text=True)
    assert "escalation.default_rule" in empty and "Too few labels to suggest a threshold" in empty
    assert browser.get("/calibration?precision=1.5").status_code == 400
    assert browser.get("/calibration?precision=lots").status_code == 400
    assert "No threshold for this emotion" in browser.get("/calibration?emotion=sad").get_data(as_text=True)
