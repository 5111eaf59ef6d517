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
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from bot_bridge.chat.messages import ChatMessage
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.audio_fixtures import encode, silence, speech_clip, text_as_audio
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
def served(tmp_path_factory, tiny_model_dir, tiny_model):
    """The console on a real HTTP server, with one chat voice note already answered: (URL, its service)."""
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
    yield f"http://127.0.0.1:{http.server_port}", service
    http.shutdown()
    service.close()


@pytest.fixture(scope="module")
def server(served):
    return served[0]


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
def playwright():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright):
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
    page.click("#analyse-button")
    page.wait_for_selector("#result-view:not([hidden])")

    emoji = page.get_attribute("[data-slot=emoji] img", "alt")
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
    page.click("#analyse-button")
    error = page.locator("#analyse-error")
    error.wait_for()
    assert "This is not an audio file" in error.text_content() and "这不是音频文件" in error.text_content()
    assert page.locator("#result-view").is_hidden()
    screenshot(page, "console-error-desktop.png")

    drop_file(page, audio_files / "speech.m4a", "audio/mp4")  # dropped, not picked
    page.click("#analyse-button")
    page.wait_for_selector("#result-view:not([hidden])")
    assert error.is_hidden()
    assert page.locator(".score-bar").count() == 9
    assert page.locator("[data-slot=timeline-section]").is_hidden()  # utterance by default
    assert "m4a" in page.text_content("#chosen-file")
    assert problems == []  # the bad file is the job's news, not a failed request


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
    page.click("#analyse-button")
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


# --- the analysis flow: options first, progress, no accidental duplicates, a player for every format ---


def test_options_come_first_the_page_shows_progress_and_a_second_run_is_asked_for(served, chromium, audio_files):
    server, service = served
    page, problems = open_page(chromium)
    sign_in(page, server)
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    results_before = _result_count(service)

    page.set_input_files("#audio-file", str(audio_files / "speech.wav"))
    page.wait_for_function("() => !document.getElementById('analyse-button').disabled")
    assert posts == [] and page.locator("#result-progress").is_hidden(), "choosing a file starts nothing"
    page.check("input[name=granularity][value=timeline]", force=True)  # there is time to choose

    with service.model.cpu_turn():  # the model is busy: the page must say so, not just spin
        page.click("#analyse-button")
        stage = page.locator("#progress-stage")
        stage.wait_for()
        page.wait_for_function("() => document.getElementById('progress-stage').textContent.includes('Waiting for its turn')")
        assert "speech.wav" in page.text_content("#result-progress") and "so far" in page.text_content("#progress-elapsed")
        assert page.is_disabled("#analyse-button")
        screenshot(page, "console-progress-desktop.png")
    page.wait_for_selector("#result-view:not([hidden])")
    assert page.locator("[data-slot=timeline-section]").is_visible()
    took = page.text_content("[data-slot=took] .en")
    assert re.fullmatch(r"\d{1,3} ms|\d+\.\d s|\d+ min \d+ s", took), took
    assert _result_count(service) == results_before + 1

    page.click("#analyse-button")  # the same file with the same options: ask first
    page.locator("#already-analysed").wait_for()
    assert _result_count(service) == results_before + 1
    page.click("#analyse-again")
    _wait_for(lambda: _result_count(service) == results_before + 2)
    page.wait_for_function("() => !document.getElementById('analyse-button').disabled")
    page.check("input[name=granularity][value=utterance]", force=True)  # other options: another result, no question
    assert page.locator("#already-analysed").is_hidden()
    assert problems == []


def test_progress_and_durations_read_as_people_say_them(server, chromium):
    page, problems = open_page(chromium)
    sign_in(page, server)
    words = page.evaluate("""async () => {
        const { progressWords } = await import('/static/console/js/progress.js');
        const { duration } = await import('/static/console/js/dom.js');
        return {
            chunk: progressWords({ stage: 'model', step: 2, steps: 5, elapsed_s: 82.232 }),
            whole: progressWords({ stage: 'model', step: 1, steps: 1, elapsed_s: 3 }),
            decode: progressWords({ stage: 'decode', elapsed_s: 0.4 }),
            took: [0.408, 8.25, 82.232, 3725].map(duration),
        };
    }""")
    assert words["chunk"]["stage"] == ["模型分析中：第 2 段，共 5 段…", "Running the model: chunk 2 of 5…"]
    assert words["chunk"]["elapsed"] == ["已用 1 分 22 秒", "1 min 22 s so far"] and words["chunk"]["done"] == 1
    assert words["whole"]["stage"][1] == "Running the model…" and words["whole"]["done"] is None
    assert words["decode"]["stage"][1] == "Decoding the audio…" and words["decode"]["elapsed"][1] == "400 ms so far"
    assert [en for _, en in words["took"]] == ["408 ms", "8.3 s", "1 min 22 s", "1 h 2 min"]
    assert problems == []


@pytest.mark.parametrize("fmt", ["amr", "silk"])
def test_an_amr_or_silk_upload_plays_on_both_pages(server, chromium, tmp_path, fmt):
    note = tmp_path / f"voice.{fmt}"
    note.write_bytes(encode(speech_clip(5), 16000, fmt))
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.set_input_files("#audio-file", str(note))
    page.locator("#player-hint").wait_for()  # the browser cannot play the upload itself: it says so
    page.click("#analyse-button")
    page.wait_for_selector("#result-view:not([hidden])")
    page.wait_for_function("() => document.querySelector('#upload-player audio').duration > 4.5")
    assert page.get_attribute("#upload-player audio", "src").endswith("/audio")

    page.click("[data-slot=permalink]")
    page.wait_for_function("() => document.getElementById('result-audio')?.duration > 4.5")  # not a dead 0:00 / 0:00
    assert page.evaluate("document.getElementById('result-audio').error") is None
    assert problems == []


def test_silent_windows_are_unknown_in_the_chart_its_table_and_its_summary(served, chromium, tmp_path):
    server, _ = served
    note = tmp_path / "pauses.wav"
    note.write_bytes(encode(np.concatenate([speech_clip(5), silence(8), speech_clip(4), silence(5)]), 16000, "wav_s16"))
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.check("input[name=granularity][value=timeline]", force=True)
    page.set_input_files("#audio-file", str(note))
    page.click("#analyse-button")
    page.wait_for_selector("#result-view:not([hidden])")

    result = page.evaluate("fetch(document.querySelector('[data-slot=download-json]').href).then((r) => r.json())")
    silent = sum(window["reason"] == "no_speech" for window in result["timeline"])
    spoken = len(result["timeline"]) - silent
    assert silent >= 20
    assert page.locator(".band-cell.no-speech").count() == silent
    assert page.locator("[data-slot=timeline-rows] tr.no-speech").count() == silent
    assert "(no speech)" in page.text_content("[data-slot=timeline-rows] tr.no-speech")
    summary = page.text_content("[data-slot=timeline-summary] .en")
    assert f"of {spoken} windows with speech" in summary and f"{silent} windows without speech" in summary
    assert page.locator(".timeline-chart svg polyline").count() >= 2 * 9  # every line breaks at the pause
    screenshot(page, "console-timeline-pauses.png")
    assert problems == []


# --- the nine emoji are images, in colour without a colour-emoji font ---

NO_EMOJI_FONTS = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <selectfont><rejectfont><glob>*Emoji*</glob><glob>*emoji*</glob></rejectfont></selectfont>
  <cachedir>{cache}</cachedir>
</fontconfig>
"""


@pytest.fixture(scope="module")
def chromium_without_emoji_fonts(playwright, tmp_path_factory):
    """Chromium seeing the system's fonts except any colour-emoji font: a desktop without fonts-noto-color-emoji."""
    folder = tmp_path_factory.mktemp("fontconfig")
    config = folder / "fonts.conf"
    config.write_text(NO_EMOJI_FONTS.format(cache=folder / "cache"), encoding="utf-8")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         env={**os.environ, "FONTCONFIG_FILE": str(config)})
    yield browser
    browser.close()


def test_the_nine_emoji_are_in_colour_without_a_colour_emoji_font(server, chromium_without_emoji_fonts, audio_files):
    page, problems = open_page(chromium_without_emoji_fonts)
    sign_in(page, server)
    # The control: in this browser an emoji written as text has no colour (a black outline or a box).
    page.evaluate("""() => { const probe = document.createElement('span'); probe.id = 'probe';
        probe.style.cssText = 'font-size:76px;position:fixed;top:0;left:0;background:#fff;color:#000';
        probe.textContent = '😨😢😐😲😊😠'; document.body.append(probe); }""")
    assert _colourful_share(page.locator("#probe").screenshot()) < 0.01
    page.evaluate("document.getElementById('probe').remove()")

    page.check("input[name=granularity][value=timeline]", force=True)
    page.set_input_files("#audio-file", str(audio_files / "speech.wav"))
    page.click("#analyse-button")
    page.wait_for_selector("#result-view:not([hidden])")
    page.wait_for_function("() => [...document.images].every((image) => image.complete && image.naturalWidth > 0)")
    assert _colourful_share(page.locator("[data-slot=emoji]").screenshot()) > 0.3  # the 76 px headline
    headline = page.locator("[data-slot=emoji] img")
    assert headline.get_attribute("alt") in "😠🤢😨😊😐🤔😢😲❓" and headline.bounding_box()["width"] == 76
    for place in ("[data-slot=scores] .score-bar", "[data-slot=timeline-legend] .legend-item"):
        images = page.locator(f"{place} img.emoji")
        assert images.count() == 9, place
        for index in range(9):
            assert _colourful_share(images.nth(index).screenshot()) > 0.1, (place, images.nth(index).get_attribute("alt"))
    assert {page.locator("[data-slot=scores] img.emoji").nth(i).get_attribute("alt") for i in range(9)} == set("😠🤢😨😊😐🤔😢😲") | {"❓"}

    page.goto(f"{server}/voice-notes")  # lists drawn by the server use the same images
    listed = page.locator(".records img.emoji").first
    listed.wait_for()
    page.wait_for_function("() => [...document.images].every((image) => image.complete && image.naturalWidth > 0)")
    assert _colourful_share(listed.screenshot()) > 0.1
    screenshot(page, "console-emoji-without-emoji-font.png")
    assert problems == []


def _colourful_share(png: bytes) -> float:
    """The share of pixels with clear colour (channels apart by more than 60 of 255); text in grey has none."""
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")[:, :, :3]
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 60 / 255).mean())


def _result_count(service) -> int:
    from sqlalchemy import func, select

    from bot_bridge.remembering.store import ResultRow

    with service.store.session() as session:
        return session.scalar(select(func.count()).select_from(ResultRow))


def _wait_for(condition, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- feedback on a result, and calibration ---


def test_feedback_buttons_and_the_picker_record_labels_and_calibration_shows_them(server, chromium):
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.click("text=Voice notes")
    page.click(".records a")
    page.wait_for_selector("#result-view:not([hidden])")
    assert "No feedback yet" in page.text_content("#label-now")

    page.click("#label-not")
    page.wait_for_selector("#label-history")
    assert "Not" in page.text_content("#label-now")
    page.click(".emotion-picker button[data-emotion=sad]")
    page.wait_for_function("document.querySelectorAll('#label-history li').length === 2")
    assert "Sad" in page.text_content("#label-now")
    assert "console" in page.text_content("#label-history li.label-current")
    images = page.eval_on_selector_all(".emotion-picker img.emoji", "images => images.map(i => i.naturalWidth)")
    assert len(images) == 9 and all(width > 0 for width in images)  # the nine SVGs load
    screenshot(page, "console-result-feedback.png")

    page.click("text=Calibration")
    page.wait_for_selector(".calibration")
    assert "Too few labels to suggest a threshold" in page.text_content(".calibration")
    assert page.evaluate("document.querySelector('.calibration-chart').naturalWidth") > 0
    screenshot(page, "console-calibration.png")
    assert problems == []
