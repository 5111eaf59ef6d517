"""Slack end to end: events signed with slack_sdk in, threaded replies out through the loopback Web API."""

from __future__ import annotations

import time

import pytest

from bot_bridge.acting.replies import label
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import delivered_after_retries, running_bot
from tests.platforms import fixtures, slack

fake_slack = fixtures.fake_slack


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_slack):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"slack_fake": fake_slack}) as bot:
        yield bot


@pytest.fixture(scope="module")
def clip_m4a():
    return encode(speech_clip(3), 16000, "m4a_aac_moov_end")


def send_clip(bot, fake_slack, data: bytes) -> None:
    bot.deliver(slack.event_request(slack.voice_clip_message(fake_slack.add_file(data))), "slack/events")


def test_a_voice_clip_is_answered_in_its_thread(bot, fake_slack, clip_m4a):
    event = slack.voice_clip_message(fake_slack.add_file(clip_m4a))

    response = bot.deliver(slack.event_request(event), "slack/events")

    assert response.status_code == 200
    [sent] = fake_slack.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    result = bot.store.result(note.result_id)
    assert sent["method"] == "chat.postMessage"
    assert (sent["params"]["channel"], sent["params"]["thread_ts"]) == (event["channel"], event["ts"])
    assert label(result.emotion, result.confidence, "both") in sent["text"]  # "😠 愤怒 Angry · 87%"
    assert note.status == NoteStatus.REPLIED and note.reply_ref == sent["response"]["ts"]


@pytest.mark.parametrize(("mimetype", "fmt"), [("video/mp4", "m4a_aac_moov_end"), ("audio/webm", "webm_opus")])
def test_clips_are_decoded_by_what_they_are_not_by_their_label(bot, fake_slack, mimetype, fmt):
    clip = encode(speech_clip(2), 16000, fmt)
    event = slack.voice_clip_message(fake_slack.add_file(clip, mimetype=mimetype, filetype="mp4"))

    bot.deliver(slack.event_request(event), "slack/events")

    [sent] = fake_slack.wait_for_messages(1, timeout=30)
    assert bot.wait_until_finished()[0].error_code is None
    assert "%" in sent["text"]


def test_url_verification_is_answered_with_the_challenge(bot):
    response = bot.deliver(slack.url_verification_request("challenge-xyz"), "slack/events")

    assert (response.status_code, response.get_data(as_text=True)) == (200, "challenge-xyz")


def test_a_forged_signature_is_refused_before_anything_is_stored(bot, fake_slack, clip_m4a):
    event = slack.voice_clip_message(fake_slack.add_file(clip_m4a))
    signed_elsewhere = slack.event_request(event, signing_secret="not-our-signing-secret")
    tampered = slack.event_request(event).with_body(slack.event_request(event).body.replace(b"audio", b"AUDIO"))

    assert bot.deliver(signed_elsewhere, "slack/events").status_code == 401
    assert bot.deliver(tampered, "slack/events").status_code == 401
    assert bot.notes() == [] and fake_slack.requests == []


def test_a_replayed_request_with_an_old_timestamp_is_refused(bot, fake_slack, clip_m4a):
    event = slack.voice_clip_message(fake_slack.add_file(clip_m4a))
    captured = slack.event_request(event, timestamp=int(time.time()) - 6 * 60)  # validly signed, 6 minutes old

    assert bot.deliver(captured, "slack/events").status_code == 403
    assert bot.notes() == [] and fake_slack.requests == []


def test_slacks_retries_are_answered_but_processed_once(bot, fake_slack, clip_m4a):
    payload = slack.envelope(slack.voice_clip_message(fake_slack.add_file(clip_m4a)))
    deliveries = [slack.signed_request(payload)] + [slack.signed_request(payload, retry_num=n) for n in (1, 2)]

    statuses = [bot.deliver(delivery, "slack/events").status_code for delivery in deliveries]

    assert statuses == [200, 200, 200]
    bot.wait_until_finished()
    assert len(bot.notes()) == 1 and len(fake_slack.calls("chat.postMessage")) == 1
    assert len(fake_slack.calls("download")) == 1


def test_the_bots_own_messages_are_ignored(bot, fake_slack, clip_m4a):
    own_upload = slack.bot_message("😠 Angry · 87%", files=[fake_slack.add_file(clip_m4a)])
    own_post = slack.bot_message("help")

    for event in (own_upload, own_post):
        assert bot.deliver(slack.event_request(event), "slack/events").status_code == 200

    assert bot.notes() == []


def test_help_in_a_direct_message(bot, fake_slack):
    bot.deliver(slack.event_request(slack.text_message("help", channel_type="im")), "slack/events")

    [sent] = fake_slack.wait_for_messages(1, timeout=10)
    assert "database" in sent["text"] and "数据库" in sent["text"]


def test_help_asked_of_the_bot_by_name_in_a_channel_is_answered_in_its_thread(bot, fake_slack):
    event = slack.text_message(f"<@{slack.DEFAULT_BOT_USER_ID}> help", channel_type="channel")

    bot.deliver(slack.event_request(event), "slack/events")

    [sent] = fake_slack.wait_for_messages(1, timeout=10)
    assert (sent["params"]["channel"], sent["params"]["thread_ts"]) == (event["channel"], event["ts"])
    assert "voice note" in sent["text"] and "数据库" in sent["text"]


def test_a_server_error_then_success_delivers_one_reply(bot, fake_slack, clip_m4a):
    fake_slack.fail_next("download", 503)
    fake_slack.fail_next("chat.postMessage", 500)

    send_clip(bot, fake_slack, clip_m4a)

    assert [call["status"] for call in delivered_after_retries(bot, fake_slack, "chat.postMessage")] == [500, 200]


def test_retry_after_is_honoured(bot, fake_slack, clip_m4a):
    fake_slack.rate_limit_next("chat.postMessage", retry_after=1)

    send_clip(bot, fake_slack, clip_m4a)

    limited, delivered = delivered_after_retries(bot, fake_slack, "chat.postMessage")
    assert (limited["status"], delivered["status"]) == (429, 200)
    assert delivered["received_at"] - limited["received_at"] >= 1.0


def test_a_file_the_bot_cannot_download_gets_a_reply_saying_so(bot, fake_slack):
    missing = slack.file_object(fake_slack.base_url, size=1000)  # never hosted: the file host answers 404

    bot.deliver(slack.event_request(slack.voice_clip_message(missing)), "slack/events")

    [sent] = fake_slack.wait_for_messages(1, timeout=10)
    assert "could not be downloaded" in sent["text"]
    assert bot.wait_until_finished()[0].error_code == "download_failed"


def test_text_is_escaped_so_chat_names_cannot_become_links_or_mentions(bot, fake_slack):
    adapter = bot.service.chat.adapters["slack"]

    adapter.send_alert("C0SUPPORT", "R&D <!channel> team > 3 cases")

    [sent] = fake_slack.wait_for_messages(1, timeout=10)
    assert sent["text"] == "R&amp;D &lt;!channel&gt; team &gt; 3 cases"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/audio_message.m4a", True),
        ("https://files.slack-gov.com/files-pri/T1-F1/audio.m4a", True),
        ("http://files.slack.com/files-pri/T1-F1/audio.m4a", False),  # the token only over HTTPS
        ("https://evil.example\\@files.slack.com/x", False),  # requests would fetch evil.example
        ("https://files.slack.com@evil.example/x", False),
        ("https://user:pw@files.slack.com/x", False),
        ("https://files.slack.com.evil.example/x", False),
        ("https://files.slack.com/x\r\nHost: evil.example", False),
    ],
)
def test_the_bot_token_goes_only_to_slack(bot, url, allowed):
    assert bot.service.chat.adapters["slack"].may_carry_token(url) is allowed


def test_the_configured_api_origin_may_serve_files(bot, fake_slack):
    adapter = bot.service.chat.adapters["slack"]
    assert adapter.may_carry_token(f"{fake_slack.base_url}/files/F1")
    assert not adapter.may_carry_token(fake_slack.base_url.replace("127.0.0.1", "localhost") + "/files/F1")
