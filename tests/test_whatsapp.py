"""WhatsApp end to end: Meta's signed webhooks in, the Graph API out, silent towards customers by default.

Everything runs against the loopback Graph API (``tests/platforms/whatsapp.py``),
which keeps WhatsApp's 24-hour customer-service window: a free-form message
to someone who has not written within a day is refused with error 131047.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from adapters.whatsapp import OUTSIDE_WINDOW, WhatsAppAdapter
from bot_bridge.acting.alerting import build_targets
from bot_bridge.acting.escalation import Escalator
from bot_bridge.acting.scheduler import utc_now
from bot_bridge.acting.replies import label
from bot_bridge.chat.outbound import OutboundError, OutboundHttp
from bot_bridge.config import load_settings
from bot_bridge.emotions import BY_KEY, EMOTION_KEYS
from bot_bridge.remembering.alert_store import DigestState
from bot_bridge.remembering.store import NoteStatus
from tests.alert_helpers import NOON, PUBLIC_URL, Alerts, add_chat_note, texts
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import killed_mid_download_then_restarted, running_bot
from tests.console_helpers import PASSWORD, sign_in
from tests.platforms import telegram
from tests.platforms import whatsapp as wa

fake_whatsapp = wa.fake_whatsapp
fake_telegram = telegram.fake_telegram  # the support team's chat
ANSWERING = {"whatsapp:*": "message"}  # a business that lets the bot answer its customers


@pytest.fixture(scope="module")
def voice_ogg():
    return encode(speech_clip(3), 16000, "ogg_opus")


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_whatsapp):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wa.environment(fake_whatsapp)) as bot:
        yield bot


@pytest.fixture
def answering_bot(tmp_path, tiny_model_dir, tiny_model, fake_whatsapp):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wa.environment(fake_whatsapp),
                     reply__modes=ANSWERING, console__password=PASSWORD) as bot:
        yield bot


def voice_webhook(fake, audio: bytes, **options):
    return wa.webhook_request(wa.voice_message(fake.add_media(audio), **options), fake=fake)


# -- customers hear nothing, the support team hears of them ------------------------------------------


def test_a_customers_voice_note_is_escalated_with_nothing_sent_to_the_customer(
        tmp_path, tiny_model_dir, tiny_model, fake_whatsapp, fake_telegram, voice_ogg):
    """The rule is one every analysed note meets (1 % of any emotion), as the silent-chat test's is."""
    targets = {"support": {"platform": "telegram", "chat_id": "-100777", "language": "en"}}
    environ = {**wa.environment(fake_whatsapp), "TELEGRAM_BOT_TOKEN": fake_telegram.token,
               "TELEGRAM_WEBHOOK_SECRET": "s" * 16, "TELEGRAM_API_BASE": fake_telegram.base_url}
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ, reply__mode="message",
                     targets=targets, routes=[{"sources": ["whatsapp:*"], "targets": ["support"]}],
                     escalation__rules={"whatsapp:*": dict.fromkeys(EMOTION_KEYS, 0.01)}) as bot:
        assert bot.deliver(voice_webhook(fake_whatsapp, voice_ogg), "whatsapp").status_code == 200
        bot.deliver(wa.webhook_request(wa.text_message("help"), fake=fake_whatsapp), "whatsapp")
        notes = bot.wait_until_finished(2)
        settings = bot.service.settings
        sent = Escalator(bot.store, settings, build_targets(settings, bot.service.chat.adapters)).sweep(utc_now())

    assert {note.status for note in notes} == {NoteStatus.SILENT}, "not even help: reply.mode is for colleagues"
    assert fake_whatsapp.sent_messages == [] and fake_whatsapp.calls("messages") == []
    assert sent == {"support": 1}
    [alert] = fake_telegram.wait_for_messages(1, timeout=10)
    assert "🚨" in alert["text"] and "王小明" in alert["text"]
    [voice] = [note for note in notes if note.kind == "voice"]
    assert (voice.platform, voice.chat_id, voice.media["file_name"]) == ("whatsapp", wa.DEFAULT_CUSTOMER, "voice.ogg")


def test_where_the_business_lets_it_the_bot_answers_quoting_the_note_once(answering_bot, fake_whatsapp, voice_ogg):
    request = voice_webhook(fake_whatsapp, voice_ogg, message_id="wamid.HBgNODYxMzgwMDEzODAwMBUCABIYFjNFQjA")

    statuses = [answering_bot.deliver(request, "whatsapp").status_code for _ in range(3)]  # Meta retries
    [sent] = fake_whatsapp.wait_for_messages(1, timeout=30)
    [note] = answering_bot.wait_until_finished()
    result = answering_bot.store.result(note.result_id)

    assert statuses == [200, 200, 200] and len(answering_bot.notes()) == 1
    assert sent["params"]["context"] == {"message_id": "wamid.HBgNODYxMzgwMDEzODAwMBUCABIYFjNFQjA"}
    assert sent["params"]["to"] == wa.DEFAULT_CUSTOMER
    assert label(result.emotion, result.confidence, "both") in sent["text"]
    assert note.status == NoteStatus.REPLIED and result.audio["codec"] == "opus"
    [lookup] = fake_whatsapp.calls("media lookup")
    [download] = fake_whatsapp.calls("media download")
    bearer = f"Bearer {wa.DEFAULT_ACCESS_TOKEN}"
    assert lookup["headers"]["Authorization"] == download["headers"]["Authorization"] == bearer
    time.sleep(0.5)
    assert len(fake_whatsapp.sent_messages) == 1


def test_a_reaction_chat_gets_the_emotions_own_emoji_once(tmp_path, tiny_model_dir, tiny_model, fake_whatsapp,
                                                          voice_ogg):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wa.environment(fake_whatsapp),
                     reply__modes={"whatsapp:*": "reaction"}) as bot:
        bot.deliver(voice_webhook(fake_whatsapp, voice_ogg, message_id="wamid.react1"), "whatsapp")
        [sent] = fake_whatsapp.wait_for_messages(1, timeout=30)
        [note] = bot.wait_until_finished()
        result = bot.store.result(note.result_id)

    assert sent["params"]["type"] == "reaction"
    assert sent["params"]["reaction"] == {"message_id": "wamid.react1", "emoji": BY_KEY[result.emotion].emoji}


# -- what is refused ----------------------------------------------------------------------------------------


def test_the_subscription_check_echoes_the_challenge_only_with_the_right_verify_token(bot):
    right = bot.deliver(wa.subscription_check(), "whatsapp")
    wrong = bot.deliver(wa.subscription_check(verify_token="guess"), "whatsapp")

    assert (right.status_code, right.get_data(as_text=True)) == (200, "1158201444")
    assert wrong.status_code == 403 and "1158201444" not in wrong.get_data(as_text=True)


@pytest.mark.parametrize("tamper", ["forged", "unsigned", "body_changed"])
def test_forged_or_altered_deliveries_are_refused_before_anything_is_stored(bot, fake_whatsapp, voice_ogg, tamper):
    request = voice_webhook(fake_whatsapp, voice_ogg)
    if tamper == "forged":
        request = wa.webhook_request(wa.voice_message(fake_whatsapp.add_media(voice_ogg)), app_secret="not-the-secret")
    elif tamper == "unsigned":
        request = request.with_headers(X_Hub_Signature_256="")
    else:
        request = request.with_body(request.body.replace(wa.DEFAULT_CUSTOMER.encode(), b"8613900000000"))

    assert bot.deliver(request, "whatsapp").status_code == 401
    assert bot.notes() == [] and fake_whatsapp.requests == []


def test_a_delivery_older_than_metas_seven_days_of_retries_is_refused_as_a_replay(bot, fake_whatsapp, voice_ogg):
    eight_days_ago = time.time() - 8 * 86400
    captured = voice_webhook(fake_whatsapp, voice_ogg, sent_at=eight_days_ago)

    assert bot.deliver(captured, "whatsapp").status_code == 403
    assert bot.notes() == [] and fake_whatsapp.requests == []


def test_another_numbers_messages_statuses_and_pictures_are_not_notes(bot, fake_whatsapp, voice_ogg):
    other_number = wa.webhook_request(wa.voice_message(fake_whatsapp.add_media(voice_ogg)), phone_number_id="999")
    picture = wa.webhook_request({"from": wa.DEFAULT_CUSTOMER, "id": "wamid.pic", "timestamp": str(int(time.time())),
                                  "type": "image", "image": {"id": "1"}})
    statuses = wa.signed(b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
                         b'"value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},'
                         b'"statuses":[{"id":"wamid.out1","status":"read"}]}}]}]}')

    assert [bot.deliver(request, "whatsapp").status_code for request in (other_number, picture, statuses)] == [200] * 3
    assert bot.notes() == []


# -- faults and the window ----------------------------------------------------------------------------------


def test_5xx_and_rate_limits_are_retried_and_the_reply_sent_once(answering_bot, fake_whatsapp, voice_ogg):
    fake_whatsapp.fail_next("media lookup", 503)
    fake_whatsapp.rate_limit_next("messages")  # code 130429, HTTP 400: WhatsApp's throughput limit

    answering_bot.deliver(voice_webhook(fake_whatsapp, voice_ogg), "whatsapp")
    fake_whatsapp.wait_for_messages(1, timeout=30)
    [note] = answering_bot.wait_until_finished()

    assert note.status == NoteStatus.REPLIED and len(fake_whatsapp.sent_messages) == 1
    assert [call["status"] for call in fake_whatsapp.calls("media lookup")] == [503, 200]
    assert [call["status"] for call in fake_whatsapp.calls("messages")] == [400, 200]


def test_a_note_older_than_the_24_hour_window_gets_no_reply_and_says_why(answering_bot, fake_whatsapp, voice_ogg,
                                                                         caplog):
    a_day_and_an_hour_ago = time.time() - 25 * 3600  # delivered late: Meta retries for up to 7 days
    answering_bot.deliver(voice_webhook(fake_whatsapp, voice_ogg, sent_at=a_day_and_an_hour_ago), "whatsapp")
    [note] = answering_bot.wait_until_finished()

    assert note.status == NoteStatus.FAILED and "24-hour" in note.error_detail
    assert fake_whatsapp.calls("messages") == [], "not even tried: WhatsApp would refuse it"
    assert "24-hour customer-service window" in caplog.text
    sign_in(answering_bot.client)
    assert "outside WhatsApp&#39;s 24-hour customer-service window" in answering_bot.client.get(
        "/voice-notes").get_data(as_text=True)


def test_an_alert_to_a_number_whose_window_closed_fails_with_the_reason(fake_whatsapp):
    adapter = WhatsAppAdapter(load_settings(environ=wa.environment(fake_whatsapp)).platforms["whatsapp"],
                              http=OutboundHttp(backoff_s=0.01))
    fake_whatsapp.customer_wrote("8613700000000", at=time.time() - 25 * 3600)

    with pytest.raises(OutboundError) as refused:
        adapter.send_alert("8613700000000", "🚨 Case 1")
    assert OUTSIDE_WINDOW in str(refused.value) and fake_whatsapp.sent_messages == []


def test_a_worker_killed_mid_note_then_restarted_replies_exactly_once(tmp_path, tiny_model_dir, fake_whatsapp,
                                                                      voice_ogg):
    request = voice_webhook(fake_whatsapp, voice_ogg)
    [note], logs = killed_mid_download_then_restarted(
        tmp_path, tiny_model_dir, wa.environment(fake_whatsapp), lambda base: request.send(f"{base}/webhooks/whatsapp"),
        held=[(fake_whatsapp, "media download")], settings={"reply": {"modes": ANSWERING}})

    assert (note.status, note.attempts, len(fake_whatsapp.sent_messages)) == (NoteStatus.REPLIED, 2, 1)
    assert wa.DEFAULT_ACCESS_TOKEN not in logs and wa.DEFAULT_APP_SECRET not in logs


# -- alerts and digests to a WhatsApp number ----------------------------------------------------------------

AGENT = "8613711112222"


@pytest.fixture
def alerts(tmp_path, fake_whatsapp):
    fake_whatsapp.customer_wrote(AGENT)  # the agent wrote to the business number today: the window is open
    targets = {"agent": {"platform": "whatsapp", "chat_id": AGENT, "name": "On-call agent"}}
    settings = load_settings(environ=wa.environment(fake_whatsapp), data_dir=str(tmp_path / "data"),
                             targets=targets, routes=[{"sources": ["*"], "targets": ["agent"]}],
                             digest={"targets": {"agent": {"at": "18:00"}}}, public_url=PUBLIC_URL)
    alerts = Alerts(settings)
    yield alerts
    alerts.close()


def test_cases_and_digests_reach_a_whatsapp_number(alerts, fake_whatsapp):
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice")

    assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"agent": 1}
    assert alerts.digests.send_due(NOON.replace(hour=10)) == {"agent": DigestState.SENT}  # 18:00 in Shanghai

    case, *digest = texts(fake_whatsapp)
    assert case.startswith("🚨") and "😠 愤怒 Angry · 87%" in case and f"{PUBLIC_URL}/cases/1" in case
    assert any("Daily emotion digest" in text for text in digest)
    assert {message["params"]["to"] for message in fake_whatsapp.sent_messages} == {AGENT}
    assert all("context" not in message["params"] for message in fake_whatsapp.sent_messages)
