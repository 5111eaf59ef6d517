"""The web console through Flask's test client: sign-in, sessions and CSRF, pages, the console's data
routes, times and the digest preview. Escalations on the console: tests/test_escalation.py; digests
with their numbers: tests/test_digest.py."""

from __future__ import annotations

import io
import json
import logging
import re
import stat
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import update

from bot_bridge.acting.alerting import build_targets
from bot_bridge.chat.messages import ChatMessage
from bot_bridge.config import load_settings
from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.remembering import first_password
from bot_bridge.remembering.accounts import Accounts, SessionRow
from bot_bridge.remembering.results import Result
from bot_bridge.service import Service
from bot_bridge.web import console as console_module
from bot_bridge.web import create_app
from tests.alert_helpers import add_chat_note
from tests.audio_fixtures import text_as_audio
from tests.console_helpers import PASSWORD, analyse, app, browser, page_token, sign_in, wav  # noqa: F401 - fixtures

PAGES = ["/", "/voice-notes", "/cases", "/escalations", "/digest", "/calibration"]


# --- helpers (signing in and analysing: tests/console_helpers.py) ---


def stored_result(service, vector, *, top: str = "happy", model: str = "tiny-test", created_at=None) -> str:
    """A result with a chosen embedding and top emotion, stored without running the model."""
    scores = {key: (0.6 if key == top else 0.05) for key in EMOTION_KEYS}
    result = Result(
        scores=scores,
        duration_s=2.0,
        speech_ratio=0.9,
        model={"name": model, "random_weights": True},
        embedding=np.asarray(vector, dtype=np.float32),
        file_name="clip.wav",
        **({"created_at": created_at} if created_at else {}),
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


@pytest.mark.parametrize("target", [
    "//evil.example/x", "https://evil.example/", "/\\evil.example", "/\\/evil.example", "http:/evil.example",
    "/\t/evil.example/x", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example", "/x\r\nSet-Cookie: a=b",
    "/\x00/evil.example", "evil.example", "javascript:alert(1)",
])
def test_signing_in_never_redirects_off_site(app, target):
    response = sign_in(app.test_client(), next_page=target)
    assert response.status_code == 302 and response.location == "/"


def test_a_wrong_password_is_refused_in_plain_words(app):
    client = app.test_client()
    response = sign_in(client, password="guess")
    assert response.status_code == 401
    assert "That name or password is not right" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_the_login_form_needs_its_csrf_token(app):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_repeated_wrong_passwords_are_throttled(app, monkeypatch):
    monkeypatch.setattr(console_module, "_throttle", console_module.LoginThrottle())
    client = app.test_client()
    for _ in range(console_module.LOGIN_ATTEMPTS):
        assert sign_in(client, password="nope").status_code == 401
    assert sign_in(client).status_code == 429  # even the right password, until the window passes


def client_at(app, address: str, forwarded_for: str | None = None):
    """A browser at ``address``, or behind a proxy at ``address`` that says it forwards for ``forwarded_for``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if forwarded_for:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client


def test_behind_a_trusted_proxy_the_throttle_counts_each_person_not_the_proxy(settings, service, monkeypatch):
    monkeypatch.setattr(console_module, "_throttle", console_module.LoginThrottle())
    settings.console.password = PASSWORD
    settings.console.trusted_proxies = 1
    app = create_app(service=service)
    guesser = client_at(app, "10.0.0.2", forwarded_for="203.0.113.7")
    for _ in range(console_module.LOGIN_ATTEMPTS):
        assert sign_in(guesser, password="nope").status_code == 401
    assert sign_in(guesser).status_code == 429
    assert sign_in(client_at(app, "10.0.0.2", forwarded_for="198.51.100.4")).status_code == 302  # same proxy


def test_without_trusted_proxies_a_forwarded_for_header_changes_nothing(app, monkeypatch):
    monkeypatch.setattr(console_module, "_throttle", console_module.LoginThrottle())
    for number in range(console_module.LOGIN_ATTEMPTS):  # a new claimed address for every guess
        assert sign_in(client_at(app, "192.0.2.9", forwarded_for=f"203.0.113.{number}"), password="no").status_code == 401
    assert sign_in(client_at(app, "192.0.2.9", forwarded_for="198.51.100.4")).status_code == 429


def test_the_throttle_forgets_after_its_window_and_remembers_a_bounded_number_of_addresses():
    now = [1000.0]
    throttle = console_module.LoginThrottle(attempts=2, window_s=60, addresses=3, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.blocked("a") and not throttle.blocked("b")
    now[0] += 61
    assert not throttle.blocked("a")
    for address in ("b", "c", "d", "e"):
        throttle.failed(address)
    assert len(throttle) == 3  # "a" went first: its failures had passed the window
    for number in range(100):
        throttle.failed(f"spray-{number}")
        throttle.failed(f"spray-{number}")
    assert len(throttle) == 3 and throttle.blocked("spray-99")


def test_sign_out_needs_post_with_csrf_and_ends_the_session_even_for_a_copy_of_the_cookie(app, browser):
    copy = app.test_client()
    copy.set_cookie("bot_bridge_console", browser.get_cookie("bot_bridge_console").value)
    assert browser.get("/logout").status_code == 405
    assert browser.post("/logout").status_code == 400
    response = browser.post("/logout", data={"csrf_token": page_token(browser)})
    assert response.status_code == 302 and response.location.startswith("/login")
    assert browser.get("/").status_code == 302
    assert copy.get("/").status_code == 302, "the session is gone from the server, not only from one browser"


def test_a_session_ends_its_lifetime_after_signing_in_however_busy(browser, service):
    assert browser.get("/").status_code == 200
    with service.store.session.begin() as session:
        session.execute(update(SessionRow).values(expires_at=SessionRow.created_at))
    assert browser.get("/").status_code == 302


@pytest.mark.parametrize(("public_url", "secure"), [("https://bot.example.com", True), ("http://10.0.0.5:7860", False),
                                                     (None, False)])
def test_the_session_cookie_is_http_only_lax_and_secure_over_https(settings, service, public_url, secure):
    settings.console.password = PASSWORD
    settings.public_url = public_url
    cookie = sign_in(create_app(service=service).test_client()).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_resetting_the_password_signs_every_session_out(service, browser):
    Accounts(service.store).reset("admin", actor="admin", via="cli")
    assert browser.get("/").status_code == 302


def test_without_a_password_one_is_generated_once_kept_0600_and_shared(settings, service, caplog):
    caplog.set_level(logging.INFO, logger="bot_bridge.web.console")
    first = create_app(service=service)
    password_file = settings.data_dir / first_password.FILE
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

    client = first.test_client()
    assert sign_in(client, password=password).status_code == 302
    other = second.test_client()  # the same session key: a session from one process works in the other
    other.set_cookie("bot_bridge_console", client.get_cookie("bot_bridge_console").value)
    assert other.get("/").status_code == 200
    assert first_password.FILE in first.test_client().get("/login").get_data(as_text=True)


def test_secrets_are_never_rendered(settings, service):
    settings.console.password = PASSWORD
    settings.console.secret_key = "s3cret-session-key-value"
    settings.api.token = "api-token-value-123"
    client = create_app(service=service).test_client()
    pages = [client.get("/login").get_data(as_text=True)]
    sign_in(client)
    result_id = analyse(client, wav())["result"]["id"]
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
    answer = analyse(client, wav(4), granularity="timeline", embedding="true")
    assert answer["state"] == "done"
    result = answer["result"]
    assert result["origin"] == "console"
    assert abs(sum(result["scores"].values()) - 1) < 1e-4
    assert len(result["timeline"]) > 1 and result["has_embedding"]
    assert client.get(f"/results/{result['id']}/embedding.npy").status_code == 200
    assert client.get(f"/results/{result['id']}/audio").status_code == 200


def test_console_posts_need_the_csrf_header(browser):
    response = browser.post("/analyse", data={"file": (io.BytesIO(wav()), "a.wav")})
    assert response.status_code == 403
    assert response.get_json()["code"] == "csrf_failed"


def test_a_bad_file_gets_the_apis_words_in_both_languages(browser):
    answer = analyse(browser, text_as_audio(), name="notes.txt")
    assert answer["state"] == "failed"
    body = answer["error"]
    assert body["status"] == 415
    assert body["code"] == "not_audio" and "not an audio file" in body["message"] and body["message_zh"]


def test_result_json_downloads_as_an_attachment(browser):
    result = analyse(browser, wav())["result"]
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
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\+8", best["when"])  # console.timezone's, said


def test_find_similar_lists_1_to_50(service, browser, monkeypatch):
    target = stored_result(service, [1, 0])
    for number in range(3):
        stored_result(service, [1, number])
    for asked, listed in (("0", 1), ("-5", 1), ("2", 2), ("x", 3)):
        assert len(browser.get(f"/results/{target}/similar?limit={asked}").get_json()["items"]) == listed, asked
    asked_for = []
    monkeypatch.setattr(console_module.queries, "similar_results",
                        lambda store, result_id, limit: asked_for.append(limit) or [])
    browser.get(f"/results/{target}/similar?limit=100000000")
    assert asked_for == [console_module.SIMILAR_MAX]


def test_find_similar_of_an_unknown_result_is_404_json(browser):
    response = browser.get("/results/nope/similar")
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


# --- operations views ---


def test_a_results_page_shows_where_it_came_from_and_not_escalated(service, browser):
    result = analyse(browser, wav(), granularity="timeline")["result"]
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
    assert "No cases yet" in browser.get("/cases").get_data(as_text=True)
    html = browser.get("/digest?date=2025-03-04").get_data(as_text=True)
    assert "No digest for this day" in html and 'value="2025-03-04"' in html
    assert "date=2025-03-03" in html and "date=2025-03-05" in html


def test_a_digest_date_that_is_not_a_date_is_explained(browser):
    response = browser.get("/digest?date=yesterday")
    assert response.status_code == 400 and "YYYY-MM-DD" in response.get_data(as_text=True)


@pytest.mark.parametrize("before", ["99999999999999999999999", str(2**63), "0", "-1", "x"])
def test_a_page_of_voice_notes_out_of_range_is_a_400_on_the_styled_page(browser, before):
    response = browser.get(f"/voice-notes?before={before}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'class="topbar"' in html and "Voice notes" in html  # the console's own page, not a bare error
    assert "No such page of voice notes" in html and "没有这一页语音消息" in html


def test_the_largest_page_marker_still_works(service, browser):
    chat_voice_note(service, stored_result(service, [1, 0]), platform="slack")
    assert browser.get(f"/voice-notes?before={2**63 - 1}").status_code == 200


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "9999-01-01", "1969-12-31"])
def test_a_digest_date_out_of_range_is_a_400_with_a_message(browser, day):
    response = browser.get(f"/digest?date={day}")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'class="topbar"' in html and "Daily digest preview" in html
    assert "between 1970-01-01 and 9998-12-31" in html and day in html


@pytest.mark.parametrize("day", ["1970-01-01", "9998-12-31"])
def test_the_first_and_last_digest_days_preview(robot_digest, day):
    browser = create_app(service=robot_digest).test_client()
    sign_in(browser)
    response = browser.get(f"/digest?date={day}")
    assert response.status_code == 200, response.get_data(as_text=True)[-2000:]


def test_times_are_shown_in_the_console_zone_and_say_which(settings, service, browser):
    result_id = stored_result(service, [1, 0], created_at=datetime(2025, 1, 15, 12, 0, tzinfo=timezone.utc))
    html = browser.get(f"/results/{result_id}").get_data(as_text=True)
    assert 'title="Asia/Shanghai">2025-01-15 20:00 UTC+8</time>' in html
    assert '<span id="time-zone">Asia/Shanghai</span>' in html
    settings.console.timezone = "America/St_Johns"
    assert "2025-01-15 08:30 UTC-3:30" in browser.get(f"/results/{result_id}").get_data(as_text=True)
    settings.console.timezone = "UTC"
    assert "2025-01-15 12:00 UTC<" in browser.get(f"/results/{result_id}").get_data(as_text=True)


@pytest.fixture
def robot_digest(tmp_path, tiny_model_dir, tiny_model):
    """A service whose daily digests go to a WeCom group robot and to Slack, which is not configured."""
    targets = {"robot": {"platform": "wecom_robot", "chat_id": "robot-key", "name": "客服群 robot"},
               "slack": {"platform": "slack", "chat_id": "C0VOICES01", "name": "Slack #support"}}
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), model__name=str(tiny_model_dir),
                             console__password=PASSWORD, console__timezone="Pacific/Kiritimati", targets=targets,
                             routes=[{"sources": ["*"], "targets": list(targets)}],
                             digest={"targets": {"robot": {}, "slack": {}}})
    service = Service(settings, model=tiny_model)
    yield service
    service.close()


def test_the_digest_preview_opens_on_today_in_the_console_zone_and_builds_its_targets_once(robot_digest, monkeypatch):
    built = []
    monkeypatch.setattr(console_module, "build_targets", lambda *args: built.append(args) or build_targets(*args))
    add_chat_note(robot_digest.store, received_at=datetime(2026, 3, 4, 3, 0, tzinfo=timezone.utc),
                  emotions={"angry": 0.9}, chat_name="Support group")
    browser = create_app(service=robot_digest).test_client()
    sign_in(browser)

    page = browser.get("/digest?date=2026-03-04").get_data(as_text=True)
    assert "客服群 robot" in page and "Support group" in page
    assert "Slack #support" not in page, "slack is not configured here: nothing would be sent there"
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()  # UTC+14: a day ahead of most servers
    assert f'value="{today.isoformat()}"' in browser.get("/digest").get_data(as_text=True)
    assert f'value="{today.isoformat()}"' in browser.get("/digest?date=soon").get_data(as_text=True)
    assert len(built) == 1, "the senders are built once, not for every page view"


# --- on every page ---


def test_every_page_warns_of_random_weights(service, browser):
    result_id = analyse(browser, wav())["result"]["id"]
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
