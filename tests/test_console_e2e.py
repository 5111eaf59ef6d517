"""The web console end to end in real headless Chromium (Debian's, driven by Playwright).

The real app runs on 127.0.0.1 on a free port, with the tiny random-weight model and an API
token set, so these tests also prove the console works without ever handing that token to the
browser. Screenshots land in test-artifacts/ at the repository root.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from bot_bridge.chat.messages import ChatMessage
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.audio_fixtures import encode, speech_clip, text_as_audio
from tests.processes import wait_for

PASSWORD = "e2e console password"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = os.environ.get("BOT_BRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking switches Chromium keeps calling home, which a closed network punishes.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, tiny_model):
    """The console on a real HTTP server, with one chat voice note already answered."""
    from bot_bridge.config import load_settings

    settings = load_settings(
        environ={},
        data_dir=str(tmp_path_factory.mktemp("console-e2e")),
        model__name=str(tiny_model_dir),
        model__threads=2,
        console__password=PASSWORD,
        api__token="e2e-api-token-never-in-the-browser",
    )
    service = Service(settings, model=tiny_model)
    _answered_voice_note(service)
    http = make_server("127.0.0.1", 0, create_app(service=service), threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    service.close()


def _answered_voice_note(service: Service) -> None:
    result = service.analyse(encode(speech_clip(5), 16000, "ogg_opus"), file_name="voice.ogg", timeline=True, origin="telegram")
    store = service.store
    note_id, _ = store.record_voice_note(
        ChatMessage(platform="telegram", delivery_id="e2e-1", kind="voice", chat_id="-100200",
                    chat_name="客服一群 Support", sender_id="42", sender_name="Alice")
    )
    store.claim_voice_note(note_id, "e2e", 60)
    store.save_reply(note_id, "e2e", "reply", result_id=result.id, error_code=None, error_detail=None)
    store.mark_sending(note_id, "e2e")
    store.mark_replied(note_id, "ref")


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def audio_files(tmp_path):
    files = {
        "speech.wav": encode(speech_clip(6), 16000, "wav_s16"),
        "speech.m4a": encode(speech_clip(4), 16000, "m4a_aac"),
        "notes.txt": text_as_audio(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def open_page(chromium, viewport=DESKTOP):
    context = chromium.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    return page, problems


def sign_in(page, server):
    page.goto(f"{server}/")
    assert page.url.startswith(f"{server}/login")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{server}/")


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_analyse_see_the_result_download_find_similar_and_sign_out(server, chromium, audio_files):
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.check("input[name=granularity][value=timeline]", force=True)
    page.check("input[name=embedding]", force=True)
    page.set_input_files("#audio-file", str(audio_files / "speech.wav"))
    page.wait_for_selector("#result-view:not([hidden])")

    emoji = page.text_content("[data-slot=emoji]")
    assert emoji and emoji.strip() in {"😠", "🤢", "😨", "😊", "😐", "🤔", "😢", "😲", "❓"}
    assert page.locator(".score-bar").count() == 9
    shown = [float(v.rstrip("%")) for v in page.locator(".score-bar-value").all_text_contents()]
    assert abs(sum(shown) - 100) < 0.5 and shown == sorted(shown, reverse=True)
    chart = page.locator(".timeline-chart svg")
    assert chart.locator("[data-emotion]").count() == 9 and chart.locator(".band-cell").count() > 1
    assert "Emotion timeline" in chart.get_attribute("aria-label")
    assert page.locator("[data-slot=timeline-rows] tr").count() == chart.locator(".band-cell").count()
    assert page.locator("#random-weights-banner").is_visible()
    assert page.locator("[data-slot=log] li").first.text_content().startswith("decoded 6.0 s")
    assert page.get_attribute("#upload-player audio", "src").startswith("blob:")

    with page.expect_download() as download_info:
        page.click("[data-slot=download-json]")
    download = download_info.value
    assert download.suggested_filename == "result.json"
    result = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert result["emoji"] == emoji.strip() and abs(sum(result["scores"].values()) - 1) < 1e-4
    assert len(result["timeline"]) == chart.locator(".band-cell").count()

    with page.expect_download() as download_info:
        page.click("[data-slot=download-embedding]")
    vector = np.load(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    assert vector.shape == (result["model"]["embedding_dim"],)

    page.click("[data-slot=find-similar]")
    similar = page.locator(".similar-item a")
    similar.first.wait_for()
    assert "telegram · 客服一群 Support · Alice" in page.text_content(".similar-list")
    assert "UTC+8" in page.text_content(".similar-list") and page.text_content("#time-zone") == "Asia/Shanghai"
    assert similar.first.get_attribute("href").startswith("/results/")
    screenshot(page, "console-analyse-desktop.png")

    page.click("#logout-button")
    page.wait_for_url(f"{server}/login?signed_out=1")
    page.goto(f"{server}/voice-notes")
    assert page.url.startswith(f"{server}/login")
    assert problems == []


def test_a_bad_file_is_explained_and_the_page_stays_usable(server, chromium, audio_files):
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.set_input_files("#audio-file", str(audio_files / "notes.txt"))
    error = page.locator("#analyse-error")
    error.wait_for()
    assert "This is not an audio file" in error.text_content() and "这不是音频文件" in error.text_content()
    assert page.locator("#result-view").is_hidden()
    screenshot(page, "console-error-desktop.png")

    drop_file(page, audio_files / "speech.m4a", "audio/mp4")  # dropped, not picked
    page.wait_for_selector("#result-view:not([hidden])")
    assert error.is_hidden()
    assert page.locator(".score-bar").count() == 9
    assert page.locator("[data-slot=timeline-section]").is_hidden()  # utterance by default
    assert "m4a" in page.text_content("#chosen-file")
    # network problems in the browser would show up as console errors; the 415 above is expected
    assert all("415" in problem for problem in problems)


def drop_file(page, path: Path, mime: str):
    """Drop a file on the page as a person dragging it from their desktop would."""
    page.evaluate(
        """([name, mime, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            const target = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
            }
        }""",
        [path.name, mime, base64.b64encode(path.read_bytes()).decode()],
    )


def test_phone_width_keyboard_and_a_voice_notes_result_page(server, chromium, audio_files):
    page, problems = open_page(chromium, PHONE)
    sign_in(page, server)
    page.keyboard.press("Tab")  # the skip link first, for keyboard users
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.focus("#audio-file")
    assert page.evaluate("getComputedStyle(document.getElementById('dropzone')).outlineStyle") != "none"
    page.check("input[name=granularity][value=timeline]", force=True)
    page.set_input_files("#audio-file", str(audio_files / "speech.wav"))
    page.wait_for_selector("#result-view:not([hidden])")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    chart = page.locator(".timeline-chart svg")
    chart.focus()
    page.keyboard.press("ArrowRight")
    assert "0.0–1.0 s" in page.text_content("[data-slot=timeline-readout]")
    screenshot(page, "console-analyse-phone.png")

    page.click("text=Voice notes")
    page.click(".records a")
    page.wait_for_selector("#result-view:not([hidden])")
    assert "客服一群 Support" in page.text_content(".side-panel")
    assert "Not escalated" in page.text_content("#escalation-status")
    assert page.get_attribute("#result-audio", "src").endswith("/audio")
    # The player has read the kept recording: Chromium decoded its header and knows it lasts 5 s.
    has_metadata = "document.getElementById('result-audio').readyState >= HTMLMediaElement.HAVE_METADATA"
    wait_for(lambda: page.evaluate(has_metadata), timeout=15, what="the result page's player to read the recording")
    assert abs(page.evaluate("document.getElementById('result-audio').duration") - 5.0) < 0.1
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "console-result-phone.png")

    page.click("button[data-language=en]")
    assert page.locator("h1 .zh").first.is_hidden() and page.locator("h1 .en").first.is_visible()
    assert problems == []
