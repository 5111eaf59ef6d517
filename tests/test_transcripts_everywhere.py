"""What was said travels where the emotion goes: chat replies, alerts and the console, from the tiny models.

Every model here has RANDOM WEIGHTS, built at run time: SenseVoice's words are
gibberish, and the replies say so. Where a test needs a word the model said
(a keyword rule), it takes one from the transcript the model wrote for the
note, never a word written here: the tiny SenseVoice is deterministic (no
dither), but what it says is its own.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from adapters.base import TextLimit
from adapters.telegram import TelegramAdapter
from bot_bridge.acting.replies import SHORT_TRANSCRIPT, label
from bot_bridge.config import load_settings
from bot_bridge.remembering.results import Result
from bot_bridge.remembering.search import SearchIndex
from bot_bridge.service import Service
from bot_bridge.web import create_app
from bot_bridge.web.console import FIRST_WORDS, rule_words
from bot_bridge.words import clip, is_chinese, words
from tests.alert_helpers import NOON, TELEGRAM_CHAT, Alerts, add_chat_note, alert_settings, scores, texts, transcript
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import running_bot
from tests.console_helpers import analyse, app, browser, csrf_from, wav  # noqa: F401 - fixtures
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.processes import wait_for
from tests.test_console import chat_voice_note
from tests.test_console_e2e import PASSWORD as E2E_PASSWORD
from tests.test_console_e2e import chromium, open_page, playwright, screenshot, sign_in  # noqa: F401 - fixtures
from tests.test_worker import whistle_model, whistle_model_dir, whistled_voice  # noqa: F401 - fixtures

fake_telegram = fixtures.fake_telegram
MEANINGLESS = "💬 (random weights: these words are meaningless) "


def answer_one_voice_note(tmp_path, model_dir, model, transcriber, fake, audio: bytes, **settings):
    """A Telegram voice note through the webhook, answered by a bot with both tiny models: (its reply, its result)."""
    with running_bot(tmp_path, model_dir, model, fakes={"telegram": fake}, transcriber=transcriber, **settings) as bot:
        bot.deliver(tg.webhook_request(tg.voice_update(fake.add_file(audio))), "telegram")
        [sent] = fake.wait_for_messages(1, timeout=60)
        [note] = bot.wait_until_finished()
        return sent, bot.store.result(note.result_id)


@pytest.fixture(scope="module")
def voice_note():
    """12 s of voice: the tiny SenseVoice says more than 200 characters of it."""
    return encode(speech_clip(12), 16000, "ogg_opus")


def test_a_telegram_reply_ends_with_the_start_of_what_was_said_marked_meaningless(
    tmp_path, tiny_model_dir, tiny_model, tiny_transcriber, fake_telegram, voice_note
):
    sent, result = answer_one_voice_note(tmp_path, tiny_model_dir, tiny_model, tiny_transcriber, fake_telegram,
                                         voice_note)

    *emotion_lines, said = sent["text"].split("\n")
    assert emotion_lines[0].startswith("⚠️ TEST MODEL") and "·" in emotion_lines[1]  # the emotion, as before
    assert len(result.transcript.text) > SHORT_TRANSCRIPT  # the tiny model's babble: more than a short reply holds
    assert said == MEANINGLESS + clip(result.transcript.text, SHORT_TRANSCRIPT)
    assert said.endswith("…") and len(said) - len(MEANINGLESS) <= SHORT_TRANSCRIPT


@pytest.mark.parametrize(
    ("settings", "transcribed", "shown"),
    [
        ({"reply__transcripts": {f"telegram:{tg.DEFAULT_USER_ID}": "full"}}, True, "full"),
        ({"reply__transcript": "full", "reply__transcripts": {"telegram:*": "off"}}, True, "off"),
        ({"transcribe__chats": {"telegram:*": False}}, False, "off"),  # a chat whose notes are never transcribed
        ({"transcribe__enabled": False, "transcribe__chats": {f"telegram:{tg.DEFAULT_USER_ID}": True}}, True, "short"),
    ],
)
def test_each_chat_has_its_own_transcript_settings(tmp_path, tiny_model_dir, tiny_model, tiny_transcriber,
                                                   fake_telegram, voice_note, settings, transcribed, shown):
    sent, result = answer_one_voice_note(tmp_path, tiny_model_dir, tiny_model, tiny_transcriber, fake_telegram,
                                         voice_note, **settings)

    assert (result.transcript is not None) is transcribed
    said = sent["text"].split("\n")[-1]
    if shown == "off":
        assert "💬" not in sent["text"]
    else:
        words_shown = result.transcript.text if shown == "full" else clip(result.transcript.text, SHORT_TRANSCRIPT)
        assert said == MEANINGLESS + words_shown
    assert result.scores  # emotions as ever, transcript or not


def test_a_reply_with_a_chart_fits_telegrams_caption_the_words_cut_not_the_emotion(
    tmp_path, whistle_model_dir, whistle_model, tiny_transcriber, fake_telegram  # noqa: F811 - fixtures
):
    """90 s of voice whose emotion changes gets a chart, so the reply is a photo's caption (1,024 UTF-16 units);
    the whole transcript is wanted (``full``) and is longer than that."""
    sent, result = answer_one_voice_note(tmp_path, whistle_model_dir, whistle_model, tiny_transcriber, fake_telegram,
                                         encode(whistled_voice(90), 16000, "ogg_opus"), reply__transcript="full")

    assert sent["method"] == "sendPhoto" and sent["images"][0].startswith(b"\x89PNG")
    caption = sent["text"]
    assert TelegramAdapter.caption_limit.measure(caption) <= 1024 < len(MEANINGLESS + result.transcript.text)
    *emotion_lines, said = caption.split("\n")
    assert emotion_lines[0].startswith("⚠️ TEST MODEL")
    assert emotion_lines[1] == label(result.emotion, result.confidence, "en")
    assert said.startswith(MEANINGLESS) and said.endswith("…")
    assert result.transcript.text.startswith(said[len(MEANINGLESS):-1].rstrip())


def test_a_keyword_the_model_said_raises_a_case_alone_and_its_alert_quotes_the_note(
    tmp_path, tiny_model_dir, tiny_model, tiny_transcriber, fake_telegram, voice_note, caplog
):
    """The rule has a keyword and no emotion threshold: only the words can make this note a case. Replying,
    alerting and searching log nothing of what was said."""
    caplog.set_level(logging.DEBUG)
    _, result = answer_one_voice_note(tmp_path / "data", tiny_model_dir, tiny_model, tiny_transcriber, fake_telegram,
                                      voice_note)
    keyword = next(word for word in words(result.transcript.text) if is_chinese(word))  # what the model said
    settings = alert_settings(tmp_path, telegram=fake_telegram, public_url=None,  # the bot's data_dir
                              escalation={"rules": {"telegram:*": {"keywords": ["no such word", keyword]}}})
    alerts = Alerts(settings)
    try:
        [(case, steps)] = alerts.escalator.new_cases(result.created_at + timedelta(minutes=1))
        assert (case.keyword, case.threshold, [step.target for step in steps]) == (keyword, None, ["telegram"])

        assert alerts.escalator.sweep(result.created_at + timedelta(minutes=1)) == {"telegram": 1}
        assert [match.result.id for match in SearchIndex(alerts.store).search(keyword)] == [result.id]
    finally:
        alerts.close()
    alert = texts(fake_telegram)[-1]
    assert fake_telegram.sent_messages[-1]["params"]["chat_id"] == int(TELEGRAM_CHAT)
    assert f"🔑 关键词「{keyword}」" in alert  # the telegram target speaks Chinese
    [quote] = [line for line in alert.split("\n") if line.startswith("💬")]
    assert quote.startswith("💬 (随机权重，文字没有意义) ") and quote.endswith("…")
    assert result.transcript.text.startswith(quote.removeprefix("💬 (随机权重，文字没有意义) ")[:-1].rstrip())
    said = [result.transcript.text[start:start + 12] for start in range(0, len(result.transcript.text) - 12, 12)]
    assert caplog.records and not [words for words in said if words in caplog.text]  # never logged


def test_reply_limits_are_the_platforms_own():
    telegram = TelegramAdapter({"bot_token": "1:x", "webhook_secret": "s"})

    assert telegram.reply_limit(with_image=True) == TextLimit(1024, "utf-16 units")
    assert telegram.reply_limit(with_image=False) == TelegramAdapter.alert_text_limit


# --- the console: lists, search, the result page ------------------------------------------------------


def test_the_console_lists_what_was_said_and_finds_voice_notes_and_uploads_by_words(service, app, browser):
    zh = "我已经等了三个星期了，退款到底什么时候到？客服一直不回复，我要投诉你们！我真的很生气。" * 2
    note = add_chat_note(service.store, received_at=NOON, emotions={"angry": 0.9}, said=zh)
    upload = Result(scores=scores(happy=0.8), duration_s=3.0, speech_ratio=1.0, model={"name": "m"}, file_name="a.wav",
                    transcript=transcript("Where is my refund? Thanks."))
    babble = Result(scores=scores(sad=0.8), duration_s=3.0, speech_ratio=1.0, model={"name": "m"},
                    transcript=transcript("忏濟椃僲攊颬", random_weights=True))
    service.store.save_result(upload)
    service.store.save_result(babble)
    chat_voice_note(service, babble.id, chat_name="Babble")

    listed = browser.get("/voice-notes").get_data(as_text=True)
    assert f'<span class="said">{clip(zh, FIRST_WORDS)}</span>' in listed and len(zh) > FIRST_WORDS
    assert '<span class="said">忏濟椃僲攊颬</span> <span class="badge badge-warning"' in listed  # random words marked

    def search(**form) -> set[str]:
        token = csrf_from(browser.get("/search").get_data(as_text=True))
        html = browser.post("/search", data={**form, "csrf_token": token}).get_data(as_text=True)
        return set(re.findall(r'href="/results/([0-9a-f]+)"', html))

    assert search(q="退款 投诉") == {note}
    assert search(q="refund") == {upload.id}
    assert search(q="refund", kind="chat") == set()
    assert search(q="生气", kind="chat") == {note}
    assert "No recording says these words" in browser.post(
        "/search", data={"q": "monkey", "csrf_token": csrf_from(browser.get("/search").get_data(as_text=True))}
    ).get_data(as_text=True)
    refused = browser.post("/search", data={"q": "退款"})  # the words come in a POST, with the page's token
    assert refused.status_code == 400 and note not in refused.get_data(as_text=True)
    assert app.test_client().get("/search").headers["Location"].startswith("/login")  # signed out


def test_a_result_page_has_its_transcript_under_the_player(service, browser, tiny_transcriber):
    service._transcriber = tiny_transcriber  # this service's notes are transcribed from here on
    result = analyse(browser, wav(4), granularity="timeline")["result"]

    html = browser.get(f"/results/{result['id']}").get_data(as_text=True)

    assert html.index('id="result-audio"') < html.index('id="transcript"') < html.index('id="escalation-status"')
    embedded = json.loads(re.search(r'id="result-data">(.*?)</script>', html, re.S).group(1))
    assert embedded["transcript"]["segments"][0]["text"] and embedded["transcript"]["random_weights"] is True
    assert "transcript-view.js" in browser.get("/static/console/js/result-view.js").get_data(as_text=True)


@pytest.fixture(scope="module")
def served_with_words(tmp_path_factory, tiny_model_dir, tiny_model, tiny_sensevoice_dir, tiny_transcriber):
    """The console on a real HTTP server, its notes transcribed, with one 16 s recording heard in 5 s chunks:
    (its URL, the recording's result)."""
    settings = load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("console-words")),
                             model__name=str(tiny_model_dir), model__threads=2, model__max_chunk_s=5.0,
                             transcribe__model=str(tiny_sensevoice_dir), console__password=E2E_PASSWORD)
    service = Service(settings, model=tiny_model, transcriber=tiny_transcriber)
    result = service.analyse(encode(speech_clip(16), 16000, "ogg_opus"), file_name="long.ogg", timeline=True)
    http = make_server("127.0.0.1", 0, create_app(service=service), threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_port}", result, service
    http.shutdown()
    service.close()


def test_each_segment_plays_from_its_start_and_moves_the_timelines_cursor_by_mouse_or_keyboard(
    served_with_words, chromium
):
    server, result, _ = served_with_words
    segments = result.transcript.segments
    assert len(segments) >= 3
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.goto(f"{server}/results/{result.id}")
    page.wait_for_selector("#transcript:not([hidden]) .segment")
    wait_for(lambda: page.evaluate("document.getElementById('result-audio').readyState >= 1"), timeout=15,
             what="the player to read the recording")

    buttons = page.locator("#transcript .segment")
    assert buttons.count() == len(segments)
    assert [text.strip() for text in page.locator("#transcript .segment-text").all_text_contents()] == \
        [segment.text for segment in segments]
    assert page.locator(".timeline-chart .said-span").count() == len(segments)  # the same stretches on the chart
    assert page.locator("[data-slot=random]").is_visible()  # SenseVoice's random weights, said where its words are

    buttons.nth(2).click()
    playing_from = page.evaluate("document.getElementById('result-audio').currentTime")
    assert segments[2].start - 0.05 <= playing_from < segments[2].end
    assert page.get_attribute(".timeline-chart [data-role=cursor]", "visibility") == "visible"
    readout = page.text_content("[data-slot=timeline-readout]")
    window = min(result.timeline, key=lambda w: abs((w.start + w.end) / 2 - segments[2].start))
    assert readout.startswith(f"{window.start:.1f}–{window.end:.1f} s")

    page.evaluate("document.getElementById('result-audio').pause()")
    buttons.nth(0).focus()
    page.keyboard.press("Tab")  # from the first segment to the second, as a keyboard user goes
    page.keyboard.press("Enter")
    playing_from = page.evaluate("document.getElementById('result-audio').currentTime")
    assert segments[1].start - 0.05 <= playing_from < segments[1].end
    wait_for(lambda: page.get_attribute("#transcript .segment >> nth=1", "aria-current") == "true", timeout=15,
             what="the segment being played to be marked")
    screenshot(page, "console-transcript.png")
    assert problems == []


def test_where_sensevoice_hears_another_emotion_the_page_shows_both(served_with_words, chromium):
    server, _, service = served_with_words
    heard = Result(scores=scores(angry=0.7), duration_s=6.0, speech_ratio=1.0, model={"name": "m"},
                   transcript=transcript("我要投诉", emotion="happy"))
    service.store.save_result(heard)
    page, problems = open_page(chromium)
    sign_in(page, server)
    page.goto(f"{server}/results/{heard.id}")
    page.click("button[data-language=en]")

    disagreement = page.locator("#transcript [data-slot=disagree]")
    disagreement.wait_for()
    words_shown = re.sub(r"\s+", " ", disagreement.inner_text())
    assert words_shown.startswith("SenseVoice hears Happy · emotion2vec+ hears Angry")
    emoji = [disagreement.locator(f".emotion-{key} img.emoji").count() for key in ("happy", "angry")]
    assert emoji == [1, 1]  # each with its emoji (an image: no text)
    assert page.locator("#transcript [data-slot=random]").is_hidden()  # real words: no warning
    assert problems == []


def test_the_console_writes_a_rule_and_a_case_with_their_keywords():
    assert rule_words({"angry": 0.5}, ["退款", "refund"], "any") == "angry ≥ 0.50; keywords 退款, refund (match any)"
    assert rule_words({}, ["退款"]) == "keywords 退款"  # a case a keyword alone raised
