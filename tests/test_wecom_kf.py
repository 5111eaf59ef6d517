"""微信客服 end to end: a signed callback wakes the puller, kf/sync_msg hands over the customers' voice notes.

Everything runs against the loopback WeCom (``tests/platforms/wecom.py``),
whose 微信客服 keeps a message log paged by cursor as ``kf/sync_msg`` does.
Customers hear nothing; the support team's Telegram chat gets the case.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from adapters.wecom_kf import SYNC_INTERVAL_S, WeComKfAdapter
from bot_bridge.acting.alerting import build_targets
from bot_bridge.acting.escalation import Escalator
from bot_bridge.acting.scheduler import utc_now
from bot_bridge.chat.outbound import OutboundError
from bot_bridge.config import load_settings
from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.remembering.alert_store import DigestState
from bot_bridge.remembering.cursors import Cursors
from bot_bridge.remembering.store import NoteStatus
from tests.alert_helpers import NOON, PUBLIC_URL, Alerts, add_chat_note, texts
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import killed_mid_download_then_restarted, running_bot
from tests.platforms import telegram, wecom

fake_wecom = wecom.fake_wecom
fake_telegram = telegram.fake_telegram  # the support team's chat
CURSOR = "pull:wecom_kf"


@pytest.fixture(scope="module")
def voice_amr():
    return encode(speech_clip(3), 16000, "amr")


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_wecom):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wecom.kf_environment(fake_wecom)) as bot:
        yield bot


def test_a_customers_voice_note_is_escalated_silently_exactly_once(tmp_path, tiny_model_dir, tiny_model,
                                                                   fake_wecom, fake_telegram, voice_amr):
    """The rule is one every analysed note meets (1 % of any emotion), as the silent-chat test's is."""
    targets = {"support": {"platform": "telegram", "chat_id": "-100777", "language": "zh"}}
    environ = {**wecom.kf_environment(fake_wecom), "TELEGRAM_BOT_TOKEN": fake_telegram.token,
               "TELEGRAM_WEBHOOK_SECRET": "s" * 16, "TELEGRAM_API_BASE": fake_telegram.base_url}
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ, reply__mode="message",
                     targets=targets, routes=[{"sources": ["wecom_kf:*"], "targets": ["support"]}],
                     escalation__rules={"wecom_kf:*": dict.fromkeys(EMOTION_KEYS, 0.01)}) as bot:
        msgid = fake_wecom.add_kf_voice(voice_amr)
        fake_wecom.add_kf_message({"origin": 4, "msgtype": "event", "event": {"event_type": "enter_session"}})
        fake_wecom.add_kf_message({"origin": 5, "msgtype": "text", "open_kfid": wecom.DEFAULT_OPEN_KFID,
                                   "external_userid": wecom.DEFAULT_KF_CUSTOMER, "text": {"content": "您好"}})
        for _ in range(2):  # WeCom may announce the same messages twice
            assert bot.deliver(fake_wecom.kf_callback(), "wecom_kf").status_code == 200
        [note] = bot.wait_until_finished()
        settings = bot.service.settings
        sent = Escalator(bot.store, settings, build_targets(settings, bot.service.chat.adapters)).sweep(utc_now())

    assert (note.status, note.delivery_id, note.chat_id, note.sender_id) == (
        NoteStatus.SILENT, msgid, wecom.DEFAULT_OPEN_KFID, wecom.DEFAULT_KF_CUSTOMER)
    assert fake_wecom.calls("kf/send_msg") == [] and fake_wecom.sent_messages == [], "the customer hears nothing"
    assert sent == {"support": 1} and "🚨" in fake_telegram.wait_for_messages(1, timeout=10)[0]["text"]
    assert any(call["params"].get("token", "").startswith("ENC") for call in fake_wecom.calls("kf/sync_msg"))


def test_the_callback_wakes_the_puller_and_the_cursor_moves_only_past_recorded_messages(bot, fake_wecom,
                                                                                        voice_amr):
    first = fake_wecom.add_kf_voice(voice_amr)
    started = time.monotonic()
    bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
    bot.wait_until_finished()
    assert time.monotonic() - started < SYNC_INTERVAL_S + 20
    assert Cursors(bot.store).get(CURSOR) == "1" and [n.delivery_id for n in bot.notes()] == [first]

    fake_wecom.fail_next("kf/sync_msg", 502)  # WeCom down for one sync: the cursor stays, nothing is lost
    second = fake_wecom.add_kf_voice(voice_amr, customer="wmAnotherCustomer")
    bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
    bot.wait_until_finished(2)
    assert sorted(n.delivery_id for n in bot.notes()) == sorted([first, second])
    assert Cursors(bot.store).get(CURSOR) == "2"


def test_a_restart_resumes_from_the_stored_cursor_with_no_gap_and_no_repeat(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_wecom, voice_amr):
    environ = wecom.kf_environment(fake_wecom)
    fake_wecom.add_kf_voice(voice_amr)
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ) as bot:
        bot.wait_until_finished()
    for _ in range(2):
        fake_wecom.add_kf_voice(voice_amr)  # while bot-bridge is down
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ) as bot:
        notes = bot.wait_until_finished(3)
        cursors = [call["params"].get("cursor") for call in fake_wecom.calls("kf/sync_msg")]

    assert sorted(n.delivery_id for n in notes) == sorted(m["msgid"] for m in fake_wecom.kf_log)
    assert "1" in cursors, "the second process began where the first stopped"
    assert len(fake_wecom.calls("media/get")) == 3


def test_forged_and_stale_callbacks_are_refused_and_wake_nothing(bot, fake_wecom):
    forged = fake_wecom.kf_callback(forgery="signature")
    stale = fake_wecom.kf_callback(timestamp=int(time.time()) - 600)

    assert [bot.deliver(request, "wecom_kf").status_code for request in (forged, stale)] == [401, 403]
    time.sleep(SYNC_INTERVAL_S)  # a sync or two: none carries the refused callbacks' tokens
    assert not [call for call in fake_wecom.calls("kf/sync_msg") if call["params"].get("token")]


def test_the_callback_url_check_echoes_the_decrypted_echostr(bot):
    answer = bot.deliver(wecom.verification_request(), "wecom_kf")
    assert (answer.status_code, answer.get_data(as_text=True)) == (200, wecom.DEFAULT_ECHO)


def test_rate_limits_and_server_errors_on_media_get_are_retried(bot, fake_wecom, voice_amr):
    fake_wecom.rate_limit_next("media/get")  # errcode 45009
    fake_wecom.fail_next("media/get", 503)
    fake_wecom.add_kf_voice(voice_amr)
    bot.deliver(fake_wecom.kf_callback(), "wecom_kf")

    [note] = bot.wait_until_finished()
    assert note.status == NoteStatus.SILENT and note.result_id is not None
    assert len(fake_wecom.calls("media/get")) == 3


def test_where_the_business_lets_it_the_customer_gets_a_text_reply(tmp_path, tiny_model_dir, tiny_model,
                                                                   fake_wecom, voice_amr):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wecom.kf_environment(fake_wecom),
                     reply__modes={"wecom_kf:*": "message"}) as bot:
        fake_wecom.add_kf_voice(voice_amr)
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
        [sent] = fake_wecom.wait_for_messages(1, timeout=30)
        [note] = bot.wait_until_finished()

    assert note.status == NoteStatus.REPLIED
    assert (sent["params"]["touser"], sent["params"]["open_kfid"]) == (wecom.DEFAULT_KF_CUSTOMER,
                                                                        wecom.DEFAULT_OPEN_KFID)


def test_cases_and_digests_reach_a_person_who_writes_to_the_account(tmp_path, fake_wecom):
    lead = f"{wecom.DEFAULT_OPEN_KFID}:wmOnCallLeadOnWeChat"
    targets = {"lead": {"platform": "wecom_kf", "chat_id": lead, "name": "值班主管"}}
    settings = load_settings(environ=wecom.kf_environment(fake_wecom), data_dir=str(tmp_path / "data"), targets=targets,
                             routes=[{"sources": ["*"], "targets": ["lead"]}],
                             digest={"targets": {"lead": {"at": "18:00"}}}, public_url=PUBLIC_URL)
    alerts = Alerts(settings)
    try:
        add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice")
        assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"lead": 1}
        assert alerts.digests.send_due(NOON.replace(hour=10)) == {"lead": DigestState.SENT}  # 18:00 in Shanghai
    finally:
        alerts.close()

    case, *digest = texts(fake_wecom)
    assert case.startswith("🚨") and "😠 愤怒 Angry · 87%" in case and f"{PUBLIC_URL}/cases/1" in case
    assert any("每日情绪" in text or "Daily emotion digest" in text for text in digest)
    assert {(m["params"]["open_kfid"], m["params"]["touser"]) for m in fake_wecom.sent_messages} == {
        tuple(lead.split(":"))}
    assert any(message["images"] for message in fake_wecom.sent_messages), "the digest's chart as an image"


def test_a_target_that_names_no_person_is_refused_with_the_form_it_needs(fake_wecom):
    adapter = WeComKfAdapter(load_settings(environ=wecom.kf_environment(fake_wecom)).platforms["wecom_kf"])
    with pytest.raises(OutboundError, match="open_kfid:external_userid"):
        adapter.send_alert(wecom.DEFAULT_OPEN_KFID, "🚨")
    assert fake_wecom.requests == []


def test_a_worker_killed_mid_note_then_restarted_finishes_it_once(tmp_path, tiny_model_dir, fake_wecom, voice_amr):
    fake_wecom.add_kf_voice(voice_amr)

    [note], logs = killed_mid_download_then_restarted(
        tmp_path, tiny_model_dir, wecom.kf_environment(fake_wecom),
        lambda base: fake_wecom.kf_callback().send(f"{base}/webhooks/wecom_kf"), held=[(fake_wecom, "media/get")],
        settings={"reply": {"modes": {"wecom_kf:*": "message"}}})

    assert (note.status, note.attempts, len(fake_wecom.sent_messages)) == (NoteStatus.REPLIED, 2, 1)
    assert fake_wecom.corp_secret not in logs and wecom.DEFAULT_ENCODING_AES_KEY not in logs
