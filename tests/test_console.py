"""The web console through Flask's test client: sign-in, CSRF, pages, the console's data routes,
and the hooks escalations and digests will fill (issue 4)."""

from __future__ import annotations

import io
import json
import logging
import re
import stat
from datetime import date, datetime, timezone

import numpy as np
import pytest
from audio_fixtures import encode, speech_clip, text_as_audio

from bot_bridge.chat import ChatMessage
from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.results import Result
from bot_bridge.web import console as console_module
from bot_bridge.web import create_app

PASSWORD = "correct horse battery"
PAGES = ["/", "/voice-notes", "/escalations", "/digest"]


# --- helpers ---


@pytest.fixture
def app(settings, service):
    settings.console.password = PASSWORD
    return create_app(service=service)


@pytest.fixture
def browser(app):
    """A signed-in test client."""
    client = app.test_client()
    sign_in(client)
    return client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "every console page carries its CSRF token"
    return match.group(1)


def sign_in(client, password: str = PASSWORD, next_page: str | None = None):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    data = {"password": password, "csrf_token": token}
    if next_page:
        data["next"] = next_page
    return client.post("/login", data=data)


def page_token(client) -> str:
    return csrf_from(client.get("/").get_data(as_text=True))


def analyse(client, audio: bytes, name: str = "note.wav", **form):
    data = {"file": (io.BytesIO(audio), name), "origin": "console", **form}
    return client.post("/analyse", data=data, headers={"X-CSRF-Token": page_token(client)})


def wav(seconds: float = 3.0) -> bytes:
    return encode(speech_clip(seconds), 16000, "wav_s16")


def stored_result(service, vector, *, top: str = "happy", model: str = "tiny-test") -> str:
    """A result with a chosen embedding and top emotion, stored without running the model."""
    scores = {key: (0.6 if key == top else 0.05) for key in EMOTION_KEYS}
    result = Result(
        scores=scores,
        duration_s=2.0,
        speech_ratio=0.9,
        model={"name": model, "random_weights": True},
        embedding=np.asarray(vector, dtype=np.float32),
        file_name="clip.wav",
    )
    service.store.save_result(result)
    return result.id


def chat_voice_note(service, result_id: str | None, *, platform="telegram", chat_id="-1001", chat_name="客服群 Support",
                    sender="Alice", kind="voice", delivery=None) -> int:
    """A chat voice note taken through the worker's steps to a sent reply."""
    store = service.store
    message = ChatMessage(platform=platform, delivery_id=delivery or f"{platform}-{result_id}-{kind}", kind=kind,
                          chat_id=chat_id, chat_name=chat_name, sender_id=sender.lower(), sender_name=sender)
    note_id, _ = store.record_voice_note(message)
    store.claim_voice_note(note_id, "test", 60)
    store.save_reply(note_id, "test", "😊", result_id=result_id, error_code=None, error_detail=None)
    store.mark_sending(note_id, "test")
    store.mark_replied(note_id, "ref-1")
    return note_id


# --- signing in and out ---


@pytest.mark.parametrize("path", PAGES + ["/results/abc"])
def test_pages_send_signed_out_people_to_the_login(app, path):
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


def test_the_consoles_data_routes_answer_json_401_when_signed_out(app):
    client = app.test_client()
    for response in (client.post("/analyse"), client.get("/results/abc/similar"), client.get("/results/abc/result.json")):
        assert response.status_code == 401
        body = response.get_json()
        assert body["code"] == "signed_out" and body["message"] and body["message_zh"]


def test_api_and_health_checks_are_not_behind_the_console_login(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.post("/api/predict", data={"file": (io.BytesIO(wav()), "a.wav")})
    assert response.status_code == 201


def test_signing_in_returns_to_the_page_asked_for(app):
    client = app.test_client()
    response = sign_in(client, next_page="/voice-notes?platform=slack")
    assert response.status_code == 302 and response.location == "/voice-notes?platform=slack"
    assert client.get("/voice-notes").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_signing_in_never_redirects_off_site(app, target):
    response = sign_in(app.test_client(), next_page=target)
    assert response.status_code == 302 and response.location == "/"


def test_a_wrong_password_is_refused_in_plain_words(app):
    client = app.test_client()
    response = sign_in(client, password="guess")
    assert response.status_code == 401
    assert "That password is not right" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_the_login_form_needs_its_csrf_token(app):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_repeated_wrong_passwords_are_throttled(app, monkeypatch):
    monkeypatch.setattr(console_module, "_throttle", console_module._LoginThrottle())
    client = app.test_client()
    for _ in range(console_module.LOGIN_ATTEMPTS):
        assert sign_in(client, password="nope").status_code == 401
    assert sign_in(client).status_code == 429  # even the right password, until the window passes


def test_sign_out_needs_post_with_csrf_and_ends_the_session(browser):
    assert browser.get("/logout").status_code == 405
    assert browser.post("/logout").status_code == 400
    response = browser.post("/logout", data={"csrf_token": page_token(browser)})
    assert response.status_code == 302 and response.location.startswith("/login")
    assert browser.get("/").status_code == 302


def test_changing_the_password_signs_every_session_out(settings, service, browser):
    settings.console.password = "a new password"
    again = create_app(service=service).test_client()
    again.set_cookie("bot_bridge_console", browser.get_cookie("bot_bridge_console").value)
    assert again.get("/").status_code == 302


def test_without_a_password_one_is_generated_once_kept_0600_and_shared(settings, service, caplog):
    caplog.set_level(logging.INFO, logger="bot_bridge.web.console")
    first = create_app(service=service)
    password_file = settings.data_dir / console_module.PASSWORD_FILE
    password = password_file.read_text().strip()
    assert len(password) >= 12
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((settings.data_dir / console_module.SECRET_KEY_FILE).stat().st_mode) == 0o600
    generated = [r.getMessage() for r in caplog.records if password in r.getMessage()]
    assert len(generated) == 1 and str(password_file) in generated[0]

    caplog.clear()
    second = create_app(service=service)  # a restart, or another process
    assert password_file.read_text().strip() == password
    assert not any(password in r.getMessage() for r in caplog.records)
    assert any(str(password_file) in r.getMessage() for r in caplog.records)

    client = first.test_client()
    assert sign_in(client, password=password).status_code == 302
    other = second.test_client()  # the same session key: a session from one process works in the other
    other.set_cookie("bot_bridge_console", client.get_cookie("bot_bridge_console").value)
    assert other.get("/").status_code == 200
    assert console_module.PASSWORD_FILE in first.test_client().get("/login").get_data(as_text=True)


def test_secrets_are_never_rendered(settings, service):
    settings.console.password = PASSWORD
    settings.console.secret_key = "s3cret-session-key-value"
    settings.api.token = "api-token-value-123"
    client = create_app(service=service).test_client()
    pages = [client.get("/login").get_data(as_text=True)]
    sign_in(client)
    result_id = analyse(client, wav()).get_json()["id"]
    for path in PAGES + [f"/results/{result_id}"]:
        pages.append(client.get(path).get_data(as_text=True))
    for html in pages:
        for secret in (PASSWORD, "s3cret-session-key-value", "api-token-value-123"):
            assert secret not in html


# --- the analysis page and its data routes ---


def test_the_analysis_page_has_the_drop_zone_switches_and_emotions(browser):
    html = browser.get("/").get_data(as_text=True)
    assert 'type="file"' in html and 'id="dropzone"' in html
    assert 'value="utterance"' in html and 'value="timeline"' in html and 'name="embedding"' in html
    emotions = json.loads(re.search(r'id="emotion-data">(.*?)</script>', html).group(1))
    assert [e["key"] for e in emotions] == list(EMOTION_KEYS)


def test_the_console_analyses_through_its_session_even_when_the_api_needs_a_token(settings, service):
    settings.console.password = PASSWORD
    settings.api.token = "api-token-value-123"
    client = create_app(service=service).test_client()
    sign_in(client)
    assert client.post("/api/predict", data={"file": (io.BytesIO(wav()), "a.wav")}).status_code == 401
    response = analyse(client, wav(4), granularity="timeline", embedding="true")
    assert response.status_code == 201
    result = response.get_json()
    assert result["origin"] == "console"
    assert abs(sum(result["scores"].values()) - 1) < 1e-4
    assert len(result["timeline"]) > 1 and len(result["embedding"]) == result["model"]["embedding_dim"]
    assert client.get(f"/results/{result['id']}/embedding.npy").status_code == 200
    assert client.get(f"/results/{result['id']}/audio").status_code == 200


def test_console_posts_need_the_csrf_header(browser):
    response = browser.post("/analyse", data={"file": (io.BytesIO(wav()), "a.wav")})
    assert response.status_code == 403
    assert response.get_json()["code"] == "csrf_failed"


def test_a_bad_file_gets_the_apis_words_in_both_languages(browser):
    response = analyse(browser, text_as_audio(), name="notes.txt")
    assert response.status_code == 415
    body = response.get_json()
    assert body["code"] == "not_audio" and "not an audio file" in body["message"] and body["message_zh"]


def test_result_json_downloads_as_an_attachment(browser):
    result = analyse(browser, wav()).get_json()
    response = browser.get(f"/results/{result['id']}/result.json")
    assert response.headers["Content-Disposition"] == 'attachment; filename="result.json"'
    assert response.get_json()["scores"] == result["scores"]


def test_find_similar_ranks_by_cosine_within_one_model(service, browser):
    target = stored_result(service, [1, 0, 0, 0])
    close = stored_result(service, [0.9, 0.1, 0, 0], top="angry")
    middle = stored_result(service, [0.5, 0.5, 0, 0])
    far = stored_result(service, [0, 0, 1, 0])
    stored_result(service, [1, 0, 0, 0], model="another-model")  # not comparable
    chat_voice_note(service, close, platform="slack", chat_name="#support", sender="Bob")

    body = browser.get(f"/results/{target}/similar").get_json()
    assert [item["id"] for item in body["items"]] == [close, middle, far]
    best = body["items"][0]
    assert best["similarity"] == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-4)
    assert best["emotion"] == "angry" and best["emoji"] == "😠" and best["label_zh"] == "愤怒"
    assert best["source"] == "slack · #support · Bob" and best["url"] == f"/results/{close}"
    assert body["items"][1]["source"] == "api · clip.wav"


def test_find_similar_of_an_unknown_result_is_404_json(browser):
    response = browser.get("/results/nope/similar")
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


# --- operations views ---


def test_a_results_page_shows_where_it_came_from_and_not_escalated(service, browser):
    result = analyse(browser, wav(), granularity="timeline").get_json()
    chat_voice_note(service, result["id"], chat_name="客服群 Support", sender="Alice")
    html = browser.get(f"/results/{result['id']}").get_data(as_text=True)
    assert "客服群 Support" in html and "Alice" in html and "telegram" in html
    assert 'id="escalation-status"' in html and "Not escalated" in html
    assert f'src="/results/{result["id"]}/audio"' in html
    embedded = json.loads(re.search(r'id="result-data">(.*?)</script>', html, re.S).group(1))
    assert embedded["id"] == result["id"] and len(embedded["timeline"]) == len(result["timeline"])


def test_an_unknown_result_page_is_a_friendly_404(browser):
    response = browser.get("/results/does-not-exist")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)


def test_voice_notes_filter_by_platform_chat_and_emotion(service, browser):
    happy = stored_result(service, [1, 0], top="happy")
    angry = stored_result(service, [0, 1], top="angry")
    sad = stored_result(service, [1, 1], top="sad")
    chat_voice_note(service, happy, platform="telegram", chat_id="-1001", chat_name="Sales")
    chat_voice_note(service, angry, platform="slack", chat_id="C1", chat_name="#support")
    chat_voice_note(service, sad, platform="slack", chat_id="C2", chat_name="#random")
    chat_voice_note(service, None, platform="slack", chat_id="C9", chat_name="#help-only", kind="help")

    def shown(query: str) -> set[str]:
        html = browser.get(f"/voice-notes{query}").get_data(as_text=True)
        return set(re.findall(r'href="/results/([0-9a-f]+)"', html))

    assert shown("") == {happy, angry, sad}
    assert shown("?platform=slack") == {angry, sad}
    assert shown("?chat=slack:C2") == {sad}
    assert shown("?emotion=angry") == {angry}
    assert shown("?platform=telegram&emotion=angry") == set()
    options = browser.get("/voice-notes").get_data(as_text=True)
    assert 'value="slack:C1"' in options and "#help-only" not in options


def test_voice_notes_page_older_ones(service, browser, monkeypatch):
    monkeypatch.setattr(console_module, "PAGE_SIZE", 2)
    ids = [stored_result(service, [1, i], top="happy") for i in range(3)]
    for result_id in ids:
        chat_voice_note(service, result_id, platform="slack")
    html = browser.get("/voice-notes?platform=slack").get_data(as_text=True)
    assert set(re.findall(r'href="/results/([0-9a-f]+)"', html)) == set(ids[1:])
    older = re.search(r'href="(/voice-notes\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "platform=slack" in older and "before=" in older
    assert set(re.findall(r'href="/results/([0-9a-f]+)"', browser.get(older).get_data(as_text=True))) == {ids[0]}


def test_empty_states_of_voice_notes_escalations_and_digest(browser):
    assert "No voice notes yet" in browser.get("/voice-notes").get_data(as_text=True)
    assert "No escalations yet" in browser.get("/escalations").get_data(as_text=True)
    html = browser.get("/digest?date=2025-03-04").get_data(as_text=True)
    assert "No digest for this day" in html and 'value="2025-03-04"' in html
    assert "date=2025-03-03" in html and "date=2025-03-05" in html


def test_a_digest_date_that_is_not_a_date_is_explained(browser):
    response = browser.get("/digest?date=yesterday")
    assert response.status_code == 400 and "YYYY-MM-DD" in response.get_data(as_text=True)


def test_the_issue_4_hooks_fill_the_pages(service, browser, monkeypatch):
    result_id = stored_result(service, [1, 0], top="angry")
    now = datetime(2025, 3, 4, 9, 30, tzinfo=timezone.utc)
    case = console_module.EscalatedCase(
        result_id=result_id, emotion="angry", score=0.82, rule="angry ≥ 0.50", source="slack · #support · Bob",
        matched_at=now,
        targets=(console_module.TargetState("Slack #escalations", "sent", now),
                 console_module.TargetState("WeCom robot 客服群", "failed", now, "HTTP 500 from WeCom")),
    )
    preview = console_module.DigestPreview(date(2025, 3, 4), (console_module.DigestMessage("Slack #leads", "3 voice notes, 1 angry"),))
    monkeypatch.setattr(console_module, "escalated_case", lambda service, rid: case if rid == result_id else None)
    monkeypatch.setattr(console_module, "escalated_cases", lambda service, state=None, limit=200: [case])
    monkeypatch.setattr(console_module, "digest_preview", lambda service, day: preview)

    page = browser.get(f"/results/{result_id}").get_data(as_text=True)
    assert "Slack #escalations" in page and "HTTP 500 from WeCom" in page and "Not escalated" not in page
    listing = browser.get("/escalations?state=failed").get_data(as_text=True)
    assert "angry ≥ 0.50" in listing and "WeCom robot 客服群" in listing and f"/results/{result_id}" in listing
    assert "3 voice notes, 1 angry" in browser.get("/digest?date=2025-03-04").get_data(as_text=True)


# --- on every page ---


def test_every_page_warns_of_random_weights(service, browser):
    result_id = analyse(browser, wav()).get_json()["id"]
    for path in PAGES + [f"/results/{result_id}"]:
        html = browser.get(path).get_data(as_text=True)
        banner = re.search(r'<div class="banner banner-warning" id="random-weights-banner"[^>]*>', html).group(0)
        assert "hidden" not in banner, path
        assert "meaningless" in html


def test_no_banner_for_real_weights(service, browser, monkeypatch):
    monkeypatch.setattr(type(service), "model_state", property(lambda self: {"state": "ready", "name": "real", "random_weights": False}))
    banner = re.search(r'id="random-weights-banner"[^>]*>', browser.get("/").get_data(as_text=True)).group(0)
    assert "hidden" in banner


def test_pages_are_bilingual_and_remember_the_chosen_language(browser):
    html = browser.get("/").get_data(as_text=True)
    assert 'data-lang="both"' in html and "开始分析" in html and "Analyse" in html
    browser.set_cookie("console_lang", "en")
    assert 'data-lang="en"' in browser.get("/").get_data(as_text=True)


def test_pages_forbid_foreign_scripts_and_framing(browser):
    policy = browser.get("/").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_static_files_are_served_without_a_build_step(app):
    client = app.test_client()
    for name in ("console.css", "js/analyse-page.js", "js/timeline-chart.js", "js/result-page.js"):
        assert client.get(f"/static/console/{name}").status_code == 200
