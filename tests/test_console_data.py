"""The console's Data page: what is kept, the retention rules and the next sweep; deleting a result, a sender's
notes or a chat's with the session's CSRF token (refused without it); a case keeps its count and says how many of
its notes were deleted."""

from __future__ import annotations

from datetime import timedelta

from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.case_store import CaseStore, MatchedNote
from tests.alert_helpers import NOON
from tests.console_helpers import app, browser, page_token  # noqa: F401 - fixtures
from tests.test_retention import folders, kept_note, upload


def record_in_case(store, note_id: int, result_id: str) -> int:
    matched = MatchedNote(store.voice_note(note_id), store.result_row(result_id), "angry", 0.7, 0.5, False)
    return CaseStore(store).record_note(matched, [], NOON, timedelta(minutes=30))


def test_the_data_page_shows_what_is_kept_and_the_rules(browser, service):
    kept_note(service.store)
    upload(service.store)

    page = browser.get("/data").get_data(as_text=True)

    assert 'id="kept-results">2<' in page and 'id="kept-notes">1<' in page and 'id="kept-recordings">2<' in page
    assert "kept for ever" in page and "at the next start" in page


def test_deleting_a_sender_from_the_console_keeps_the_case_count_and_says_so(browser, service):
    store = service.store
    first_note, first = kept_note(store, sender="alice")
    second_note, second = kept_note(store, sender="alice", said="again", received_at=NOON + timedelta(minutes=1))
    case_id = record_in_case(store, first_note, first)
    assert record_in_case(store, second_note, second) == case_id
    kept_note(store, sender="bob")
    # only one of alice's notes goes: the first, by its result
    answer = browser.post("/data/delete", data={"what": "result", "key": first, "csrf_token": page_token(browser)})

    assert answer.status_code == 302 and answer.headers["Location"].endswith("deleted=1/1")
    case_page = browser.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "1 of its notes were deleted" in case_page and first not in case_page and second in case_page
    browser.post("/data/delete", data={"what": "chat", "key": "telegram:-100777", "csrf_token": page_token(browser)})
    assert store.voice_notes() == [] and folders(store) == set()
    emptied = browser.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "2 of its notes were deleted" in emptied and 'id="case-actions"' not in emptied
    assert f'/cases/{case_id}"' in browser.get("/cases").get_data(as_text=True)
    page = browser.get("/data?deleted=2/2").get_data(as_text=True)
    assert "Deleted 2 voice notes and 2 results." in page
    assert [(e.actor, e.via, e.subject) for e in AuditLog(store).entries() if e.action == "data.delete"] == [
        ("admin", "console", "chat:telegram:-100777"), ("admin", "console", f"results:{first}")]


def test_deleting_needs_the_csrf_token_and_a_well_formed_key(browser, service):
    _, result_id = kept_note(service.store)

    refused = browser.post("/data/delete", data={"what": "result", "key": result_id})
    assert refused.status_code == 400 and "page had expired" in refused.get_data(as_text=True)
    assert browser.post("/data/delete", data={"what": "sender", "key": "no-platform",
                                              "csrf_token": page_token(browser)}).status_code == 400
    assert service.store.result_row(result_id) is not None


def test_the_data_page_needs_sign_in(app):
    assert app.test_client().get("/data").status_code in (302, 401)
