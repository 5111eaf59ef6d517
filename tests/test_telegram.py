"""Telegram end to end: PTB-built updates in, replies out through the loopback Bot API."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot_bridge.acting.replies import label
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import chord, encode, speech_clip, text_as_audio
from tests.chat_helpers import delivered_after_retries, platform_environment, running_bot
from tests.platforms import fixtures
from tests.platforms import telegram as tg

fake_telegram = fixtures.fake_telegram


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_telegram):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        yield bot


@pytest.fixture(scope="module")
def voice_ogg():
    return encode(speech_clip(3), 16000, "ogg_opus")


def send_voice(bot, fake_telegram, data: bytes) -> None:
    bot.deliver(tg.webhook_request(tg.voice_update(fake_telegram.add_file(data))), "telegram")


def test_a_voice_note_is_answered_with_emoji_label_and_confidence(bot, fake_telegram, voice_ogg):
    file_id = fake_telegram.add_file(voice_ogg, "audio/ogg")
    update = tg.voice_update(file_id, file_size=len(voice_ogg))

    response = bot.deliver(tg.webhook_request(update), "telegram")

    assert response.status_code == 200
    [sent] = fake_telegram.wait_for_messages(1, timeout=30)
    message = update["message"]
    assert sent["method"] == "sendMessage"
    assert sent["params"]["chat_id"] == message["chat"]["id"]
    assert sent["params"]["reply_parameters"]["message_id"] == message["message_id"]
    [note] = bot.wait_until_finished()
    result = bot.store.result(note.result_id)
    # The sender's app is in English; the tiny model has random weights, and the reply says so first.
    assert sent["text"].startswith("⚠️ TEST MODEL")
    assert label(result.emotion, result.confidence, "en") in sent["text"]  # e.g. "😠 Angry · 87%"
    assert (note.status, note.reply_ref, note.delivery_id) == (NoteStatus.REPLIED, str(sent["response"]["result"]["message_id"]), str(update["update_id"]))


@pytest.mark.parametrize(
    ("kind", "fmt", "mime_type"),
    [("audio", "mp3", "audio/mpeg"), ("video_note", "mp4_video", "video/mp4"), ("document", "m4a_aac", "audio/mp4")],
)
def test_audio_files_round_videos_and_audio_documents_are_analysed(bot, fake_telegram, kind, fmt, mime_type):
    data = encode(speech_clip(2), 16000, fmt)
    file_id = fake_telegram.add_file(data, mime_type, kind=kind)
    build = {"audio": tg.audio_update, "video_note": tg.video_note_update, "document": tg.audio_document_update}[kind]

    bot.deliver(tg.webhook_request(build(file_id)), "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    assert note.error_code is None and note.result_id is not None
    assert "%" in sent["text"]


def test_a_wrong_or_missing_secret_token_is_refused_before_anything_is_stored(bot, fake_telegram, voice_ogg):
    file_id = fake_telegram.add_file(voice_ogg)
    update = tg.voice_update(file_id)

    assert bot.deliver(tg.webhook_request(update, secret_token="forged-token"), "telegram").status_code == 401
    assert bot.deliver(tg.webhook_request(update, secret_token=None), "telegram").status_code == 401

    assert bot.notes() == []
    assert fake_telegram.requests == []


def test_the_same_update_delivered_three_times_gets_one_reply(bot, fake_telegram, voice_ogg):
    """Telegram signs nothing and has no timestamp: a replayed update is stopped by its update_id."""
    request = tg.webhook_request(tg.voice_update(fake_telegram.add_file(voice_ogg)))

    statuses = [bot.deliver(request, "telegram").status_code for _ in range(3)]
    bot.wait_until_finished()
    bot.deliver(request, "telegram")  # and once more, long after it was answered

    assert statuses == [200, 200, 200]
    assert len(bot.notes()) == 1
    assert len(fake_telegram.calls("sendMessage")) == 1
    assert len(fake_telegram.calls("getFile")) == 1


def test_a_file_over_20_mb_gets_a_reply_saying_so_without_a_download(bot, fake_telegram):
    update = tg.voice_update("AwACAgIAAxkBAAI-never-stored", file_size=25 * 1024 * 1024)

    bot.deliver(tg.webhook_request(update), "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=10)
    assert "20 MB" in sent["text"]
    assert fake_telegram.calls("getFile") == [] and fake_telegram.calls("download") == []
    assert bot.wait_until_finished()[0].error_code == "too_large_to_fetch"


def test_bad_audio_gets_a_reply_naming_the_problem_in_the_chats_language(bot, fake_telegram):
    update = tg.voice_update(fake_telegram.add_file(text_as_audio()))
    update["message"]["from"]["language_code"] = "zh-hans"

    bot.deliver(tg.webhook_request(update), "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=10)
    assert "这不是音频文件" in sent["text"] and "not an audio file" not in sent["text"]
    assert bot.wait_until_finished()[0].error_code == "not_audio"


def test_a_voice_note_in_a_forum_topic_is_answered_in_that_topic(bot, fake_telegram, voice_ogg):
    update = tg.voice_update(fake_telegram.add_file(voice_ogg), chat_type="supergroup", message_thread_id=77,
                             is_topic_message=True)

    bot.deliver(tg.webhook_request(update), "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=30)
    assert (sent["params"]["chat_id"], sent["params"]["message_thread_id"]) == (update["message"]["chat"]["id"], 77)
    assert sent["params"]["reply_parameters"]["message_id"] == update["message"]["message_id"]


def test_a_note_without_speech_gets_a_reply_saying_none_was_heard(bot, fake_telegram):
    """Music (a chord progression) is sound but no voice: the model is not asked, and the reply says why."""
    bot.deliver(tg.webhook_request(tg.voice_update(fake_telegram.add_file(encode(chord(4), 16000, "ogg_opus")))),
                "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=30)
    assert sent["text"] == "⚠️ TEST MODEL (random weights): this label is meaningless\n❓ No speech heard (speech 0%)"
    [note] = bot.wait_until_finished()
    assert bot.store.result(note.result_id).reason == "no_speech" and note.error_code is None


def test_with_keep_audio_off_the_bot_keeps_and_says_it_keeps_only_results(tmp_path, tiny_model_dir, tiny_model,
                                                                          fake_telegram, voice_ogg):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram},
                     audio__keep_audio=False) as bot:
        bot.deliver(tg.webhook_request(tg.text_update("/start")), "telegram")
        send_voice(bot, fake_telegram, voice_ogg)
        help_reply, _ = fake_telegram.wait_for_messages(2, timeout=30)
        notes = bot.wait_until_finished(2)
        [result_id] = [note.result_id for note in notes if note.result_id]
        row = bot.store.result_row(result_id)

    assert "What I keep: the result, in this service's database." in help_reply["text"]
    assert row.audio_file is None
    assert [path.name for path in (tmp_path / "outputs").rglob("*") if path.is_file()] == ["result.json"]


def test_start_gets_what_the_bot_does_and_keeps(bot, fake_telegram):
    bot.deliver(tg.webhook_request(tg.text_update("/start")), "telegram")
    bot.deliver(tg.webhook_request(tg.text_update("just chatting")), "telegram")

    [sent] = fake_telegram.wait_for_messages(1, timeout=10)
    assert "voice note" in sent["text"] and "What I keep: the recording and the result" in sent["text"]
    assert len(bot.wait_until_finished()) == 1  # ordinary text is not answered


def test_a_server_error_then_success_delivers_one_reply(bot, fake_telegram, voice_ogg):
    fake_telegram.fail_next("sendMessage", 500)
    fake_telegram.fail_next("getFile", 502)

    send_voice(bot, fake_telegram, voice_ogg)

    assert [call["status"] for call in delivered_after_retries(bot, fake_telegram, "sendMessage")] == [500, 200]


def test_flood_control_is_honoured_for_as_long_as_telegram_asks(bot, fake_telegram, voice_ogg):
    fake_telegram.rate_limit_next("sendMessage", retry_after=2)

    send_voice(bot, fake_telegram, voice_ogg)

    limited, delivered = delivered_after_retries(bot, fake_telegram, "sendMessage")
    assert (limited["status"], delivered["status"]) == (429, 200)
    assert delivered["received_at"] - limited["received_at"] >= 2.0


def test_set_webhook_registers_the_url_with_the_secret_token(fake_telegram, tmp_path, monkeypatch):
    from bot_bridge.cli import cli

    for name, value in platform_environment(telegram=fake_telegram).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BOT_BRIDGE_DATA_DIR", str(tmp_path))

    outcome = CliRunner().invoke(cli, ["telegram", "set-webhook", "https://bot.example.com/webhooks/telegram"])

    assert outcome.exit_code == 0, outcome.output
    assert fake_telegram.webhook["url"] == "https://bot.example.com/webhooks/telegram"
    assert fake_telegram.webhook["secret_token"] == tg.DEFAULT_SECRET_TOKEN
    assert fake_telegram.webhook["allowed_updates"] == ["message", "callback_query"], "messages and presses on cases"
    assert fake_telegram.token not in outcome.output


@pytest.mark.parametrize("body", [b"[1, 2]", b'{"update_id": 5, "message": "not an object"}', b"not json"])
def test_a_verified_update_that_cannot_be_read_is_acknowledged_not_stored(bot, fake_telegram, body):
    """A non-2xx answer would make Telegram resend it for a day; no resend could be read either."""
    request = tg.webhook_request(tg.text_update("/start")).with_body(body)

    response = bot.deliver(request, "telegram")

    assert response.status_code == 200
    assert bot.notes() == []
    assert fake_telegram.sent_messages == []


def test_a_reply_whose_send_times_out_is_left_unconfirmed_not_sent_twice(bot, fake_telegram, voice_ogg):
    from bot_bridge.chat.outbound import OutboundHttp

    bot.service.chat.adapters["telegram"].http = OutboundHttp(read_timeout_s=0.5)
    fake_telegram.delay_next("sendMessage", 2)

    send_voice(bot, fake_telegram, voice_ogg)

    [note] = bot.wait_until_finished()
    assert note.status == NoteStatus.UNCONFIRMED and note.error_code == "reply_unconfirmed"
    fake_telegram.wait_for_messages(1, timeout=10)
    assert len(fake_telegram.calls("sendMessage")) == 1


def test_a_platform_file_name_with_line_breaks_is_cleaned_and_its_audio_served(bot, fake_telegram):
    data = encode(speech_clip(2), 16000, "m4a_aac")
    file_id = fake_telegram.add_file(data, "audio/mp4", kind="document")

    bot.deliver(tg.webhook_request(tg.audio_document_update(file_id, file_name="a\r\nSet-Cookie: x\r\n.m4a")), "telegram")

    [note] = bot.wait_until_finished()
    assert note.media["file_name"] == "aSet-Cookie: x.m4a"
    assert bot.store.result_row(note.result_id).file_name == "aSet-Cookie: x.m4a"
    with bot.client.get(f"/api/results/{note.result_id}/audio") as served:
        assert served.status_code == 200 and "Set-Cookie" not in served.headers
