"""DingTalk end to end: signed HTTP callbacks and Stream mode in, session webhooks and the robot API out.

Everything runs against the loopback DingTalk (``tests/platforms/dingtalk.py``):
its API, its oapi, and its Stream gateway on a real WebSocket, which the
official ``dingtalk-stream`` SDK's client talks to. Voice notes are AMR
(DingTalk does not document its voice codec; the decoder reads what the
bytes are).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import timedelta

import pytest

from adapters.dingtalk import DingTalkAdapter
from adapters.dingtalk_robot import DingTalkRobot
from bot_bridge.acting.replies import label
from bot_bridge.chat.outbound import OutboundError, OutboundHttp
from bot_bridge.config import ConfigError, load_settings
from bot_bridge.remembering.alert_store import DigestState
from bot_bridge.remembering.store import NoteStatus
from tests.alert_helpers import NOON, PUBLIC_URL, Alerts, add_chat_note, texts
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import killed_mid_download_then_restarted, running_bot
from tests.platforms import dingtalk
from tests.processes import wait_for

fake_dingtalk = dingtalk.fake_dingtalk

HOUR_MS = 3600 * 1000


def dingtalk_environment(fake, mode: str) -> dict[str, str]:
    """The variables an operator sets for the app robot (``mode``: stream or http), pointed at the fake."""
    return {"DINGTALK_CLIENT_ID": fake.client_id, "DINGTALK_CLIENT_SECRET": fake.client_secret,
            "DINGTALK_MODE": mode, "DINGTALK_API_BASE": fake.base_url, "DINGTALK_OAPI_BASE": fake.base_url}


@pytest.fixture(scope="module")
def voice_amr():
    return encode(speech_clip(3), 16000, "amr")


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_dingtalk):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={},
                     environ=dingtalk_environment(fake_dingtalk, "http")) as bot:
        yield bot


@pytest.fixture
def stream_bot(tmp_path, tiny_model_dir, tiny_model, fake_dingtalk):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={},
                     environ=dingtalk_environment(fake_dingtalk, "stream")) as bot:
        fake_dingtalk.stream.wait_for_connections(1)
        yield bot


def voice_callback(fake, audio: bytes, **options):
    return dingtalk.callback_request(dingtalk.voice_message(fake.add_file(audio), fake=fake, **options))


# -- HTTP mode -------------------------------------------------------------------------------------


def test_a_signed_voice_message_is_answered_once_through_its_session_webhook(bot, fake_dingtalk, voice_amr):
    response = bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")

    assert response.status_code == 200
    [sent] = fake_dingtalk.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    result = bot.store.result(note.result_id)
    assert sent["method"] == "robot/sendBySession" and sent["params"]["msgtype"] == "text"
    assert label(result.emotion, result.confidence, "both") in sent["text"]
    assert (note.status, note.media["duration_s"], result.audio["codec"]) == (NoteStatus.REPLIED, 3.0,
                                                                           "libopencore_amrnb")
    [resolve] = fake_dingtalk.calls("robot/messageFiles/download")
    [download] = fake_dingtalk.calls("download")
    assert resolve["headers"]["X-Acs-Dingtalk-Access-Token"], "the API gets the token"
    assert not any(name.lower().startswith("x-acs") for name in download["headers"]), "the file URL does not"


@pytest.mark.parametrize(("tamper", "status"), [
    ("forged", 401), ("stale", 403), ("no_sign", 401), ("other_robot", 403), ("not_json", 403),
])
def test_forged_stale_and_foreign_callbacks_are_refused_before_anything_is_stored(bot, fake_dingtalk, voice_amr,
                                                                                  tamper, status):
    robot_code = "dingotherrobot" if tamper == "other_robot" else dingtalk.DEFAULT_CLIENT_ID
    an_hour_and_a_minute_ago = int(time.time() * 1000) - HOUR_MS - 60_000
    message = dingtalk.voice_message(fake_dingtalk.add_file(voice_amr), robot_code=robot_code)
    request = dingtalk.callback_request(message, forged=tamper == "forged",
                                        timestamp_ms=an_hour_and_a_minute_ago if tamper == "stale" else None)
    if tamper == "no_sign":
        request = request.with_headers(sign="")
    if tamper == "not_json":
        request = request.with_body(b"msgtype=audio")

    assert bot.deliver(request, "dingtalk").status_code == status
    assert bot.notes() == [] and fake_dingtalk.requests == []


def test_a_replayed_callback_is_absorbed_within_the_hour_and_refused_after_it(bot, fake_dingtalk, voice_amr):
    captured = voice_callback(fake_dingtalk, voice_amr)

    statuses = [bot.deliver(captured, "dingtalk").status_code for _ in range(3)]
    fake_dingtalk.wait_for_messages(1, timeout=30)
    bot.wait_until_finished()
    bot.service.chat.adapters["dingtalk"].clock = lambda: time.time() + 3601

    assert statuses == [200, 200, 200] and bot.deliver(captured, "dingtalk").status_code == 403
    assert len(bot.notes()) == 1 and len(fake_dingtalk.sent_messages) == 1


def test_without_a_valid_session_webhook_the_reply_goes_through_the_robot_api(bot, fake_dingtalk, voice_amr):
    almost_expired = fake_dingtalk.session_webhook("cid1", expires_in_ms=30_000)  # inside the last minute
    bot.deliver(voice_callback(fake_dingtalk, voice_amr, session=almost_expired), "dingtalk")
    group_help = dingtalk.text_message(" 帮助", conversation_type="2", session=("https://evil.example/hook", 2**42))
    bot.deliver(dingtalk.callback_request(group_help), "dingtalk")

    fake_dingtalk.wait_for_messages(2, timeout=30)
    [one_to_one] = fake_dingtalk.calls("robot/oToMessages/batchSend")
    [group] = fake_dingtalk.calls("robot/groupMessages/send")
    assert one_to_one["params"]["userIds"] == [dingtalk.DEFAULT_STAFF_ID]
    assert group["params"]["openConversationId"] == dingtalk.DEFAULT_GROUP, "not the webhook off DingTalk's hosts"
    assert fake_dingtalk.calls("robot/sendBySession") == []
    assert all(call["params"]["msgKey"] == "sampleText" for call in (one_to_one, group))


def test_5xx_and_rate_limits_are_retried_and_the_reply_sent_once(bot, fake_dingtalk, voice_amr):
    fake_dingtalk.fail_next("robot/messageFiles/download", 502)
    fake_dingtalk.rate_limit_next("robot/sendBySession")  # errcode 130101, HTTP 200

    bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")

    fake_dingtalk.wait_for_messages(1, timeout=30)
    assert bot.wait_until_finished()[0].status == NoteStatus.REPLIED
    assert [call["status"] for call in fake_dingtalk.calls("robot/messageFiles/download")] == [502, 200]
    assert [call["response"]["errcode"] for call in fake_dingtalk.calls("robot/sendBySession")] == [130101, 0]
    assert len(fake_dingtalk.sent_messages) == 1


def test_the_apis_429_and_qps_limit_are_waited_out(bot, fake_dingtalk, voice_amr):
    fake_dingtalk.fail_next("robot/oToMessages/batchSend", 429)
    fake_dingtalk.rate_limit_next("robot/oToMessages/batchSend")  # 403 Forbidden.AccessDenied.QpsLimitForApi

    bot.deliver(voice_callback(fake_dingtalk, voice_amr, session=("", 0)), "dingtalk")

    fake_dingtalk.wait_for_messages(1, timeout=30)
    assert [call["status"] for call in fake_dingtalk.calls("robot/oToMessages/batchSend")] == [429, 403, 200]
    assert len(fake_dingtalk.sent_messages) == 1


def test_the_access_token_is_cached_and_fetched_again_when_dingtalk_rejects_it(bot, fake_dingtalk, voice_amr):
    bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")
    fake_dingtalk.wait_for_messages(1, timeout=30)
    fake_dingtalk.expire_tokens()

    bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")
    bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")

    fake_dingtalk.wait_for_messages(3, timeout=30)
    assert fake_dingtalk.token_calls == 2  # once at first use, once after the 401
    assert [call["status"] for call in fake_dingtalk.calls("robot/messageFiles/download")].count(401) == 1


def test_reaction_chats_are_answered_silently_for_dingtalk_has_no_reactions(tmp_path, tiny_model_dir, tiny_model,
                                                                           fake_dingtalk, voice_amr, caplog):
    caplog.set_level(logging.WARNING, logger="bot_bridge.acting.reply_modes")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, reply__modes={"dingtalk:*": "reaction"},
                     environ=dingtalk_environment(fake_dingtalk, "http")) as bot:
        bot.deliver(voice_callback(fake_dingtalk, voice_amr), "dingtalk")
        [note] = bot.wait_until_finished()

    assert note.status == NoteStatus.SILENT and fake_dingtalk.sent_messages == []
    assert "dingtalk has no reactions" in caplog.text


def test_a_misspelt_mode_stops_the_start_and_names_the_setting(tmp_path, tiny_model_dir, fake_dingtalk):
    from bot_bridge.service import Service
    from tests.chat_helpers import chat_settings

    environ = {**dingtalk_environment(fake_dingtalk, "http"), "DINGTALK_MODE": "steam"}
    service = Service(chat_settings(tmp_path, tiny_model_dir, environ, server__role="web"))

    with pytest.raises(ValueError, match="DINGTALK_MODE"):
        service.start_background("web")
    service.close()
    with pytest.raises(ConfigError, match="platforms.dingtalk.client_scret"):
        load_settings(environ={}, data_dir=str(tmp_path), platforms={"dingtalk": {"client_scret": "x"}})


# -- Stream mode -----------------------------------------------------------------------------------


def test_a_voice_message_over_stream_mode_is_acknowledged_once_recorded_and_answered_once(
        stream_bot, fake_dingtalk, voice_amr):
    message = dingtalk.voice_message(fake_dingtalk.add_file(voice_amr), fake=fake_dingtalk)

    frame = fake_dingtalk.stream.wait_for_ack(fake_dingtalk.stream.send_callback(message))

    [sent] = fake_dingtalk.wait_for_messages(1, timeout=30)
    [note] = stream_bot.wait_until_finished()
    assert frame.ack["code"] == 200 and frame.ack_delay_s < 3.0
    assert sent["method"] == "robot/sendBySession" and note.status == NoteStatus.REPLIED
    assert note.delivery_id == message["msgId"]
    open_call = fake_dingtalk.calls("gateway/connections/open")[0]["params"]
    assert open_call["subscriptions"] == [{"type": "CALLBACK", "topic": dingtalk.CALLBACK_TOPIC}]
    assert stream_bot.client.post("/webhooks/dingtalk", data=b"{}").status_code == 404, "no public URL"
    assert fake_dingtalk.stream.protocol_errors == []


def test_pings_are_answered_with_their_opaque_and_the_same_message_twice_makes_one_reply(
        stream_bot, fake_dingtalk, voice_amr):
    gateway = fake_dingtalk.stream
    ping = gateway.wait_for_ack(gateway.ping())
    message = dingtalk.voice_message(fake_dingtalk.add_file(voice_amr), fake=fake_dingtalk)

    for _ in range(2):
        gateway.wait_for_ack(gateway.send_callback(message))

    fake_dingtalk.wait_for_messages(1, timeout=30)
    assert len(stream_bot.wait_until_finished()) == 1 and len(fake_dingtalk.sent_messages) == 1
    sent_opaque = gateway.frames[ping.message_id]
    assert ping.ack["code"] == 200 and "opaque" in ping.ack["data"] and sent_opaque.kind == "SYSTEM"
    assert gateway.protocol_errors == []


def test_a_message_is_acknowledged_only_once_it_is_recorded(stream_bot, fake_dingtalk, voice_amr, tmp_path):
    database = sqlite3.connect(tmp_path / "bot-bridge.db", isolation_level=None)
    database.execute("BEGIN IMMEDIATE")  # the database takes no write until this ends
    try:
        frame_id = fake_dingtalk.stream.send_callback(
            dingtalk.voice_message(fake_dingtalk.add_file(voice_amr), fake=fake_dingtalk))
        with pytest.raises(AssertionError, match="not acknowledged"):
            fake_dingtalk.stream.wait_for_ack(frame_id, timeout=1.5)
        assert stream_bot.notes() == []
    finally:
        database.execute("ROLLBACK")
        database.close()

    assert fake_dingtalk.stream.wait_for_ack(frame_id).ack["code"] == 200
    assert len(stream_bot.notes()) == 1
    fake_dingtalk.wait_for_messages(1, timeout=30)


def test_the_connection_comes_back_after_dingtalks_disconnect(stream_bot, fake_dingtalk, voice_amr):
    gateway = fake_dingtalk.stream

    gateway.disconnect()
    wait_for(lambda: gateway.connections_opened == 2 and len(gateway.connections) == 1, 15, "a fresh connection")
    gateway.wait_for_ack(gateway.send_callback(dingtalk.voice_message(fake_dingtalk.add_file(voice_amr),
                                                                      fake=fake_dingtalk)))

    fake_dingtalk.wait_for_messages(1, timeout=30)
    assert len(fake_dingtalk.calls("gateway/connections/open")) == 2 and gateway.protocol_errors == []


def test_a_dropped_connection_is_opened_again_by_the_sdk_after_its_pause(stream_bot, fake_dingtalk, voice_amr):
    gateway = fake_dingtalk.stream

    gateway.drop_connections()
    wait_for(lambda: gateway.connections_opened == 2 and len(gateway.connections) == 1, 30, "a new connection")
    gateway.wait_for_ack(gateway.send_callback(dingtalk.voice_message(fake_dingtalk.add_file(voice_amr),
                                                                      fake=fake_dingtalk)))

    fake_dingtalk.wait_for_messages(1, timeout=30)
    assert len(stream_bot.wait_until_finished()) == 1 and gateway.protocol_errors == []


def test_a_wrong_client_secret_is_named_in_the_log_and_tried_again(tmp_path, tiny_model_dir, tiny_model,
                                                                   fake_dingtalk, caplog):
    caplog.set_level(logging.ERROR, logger="bot_bridge.acting.listeners")
    environ = {**dingtalk_environment(fake_dingtalk, "stream"), "DINGTALK_CLIENT_SECRET": "wrong-secret-000000"}

    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ):
        wait_for(lambda: len(fake_dingtalk.calls("gateway/connections/open")) >= 2, 10, "a second try")

    assert ("dingtalk: cannot open its connection: dingtalk gateway/connections/open: DingTalk HTTP 401 "
            "Unauthorized") in caplog.text
    assert "wrong-secret-000000" not in caplog.text and fake_dingtalk.stream.connections_opened == 0


# -- a worker killed mid-note ------------------------------------------------------------------------


def test_a_worker_killed_mid_note_then_restarted_replies_exactly_once(tmp_path, tiny_model_dir, fake_dingtalk,
                                                                      voice_amr):
    request = voice_callback(fake_dingtalk, voice_amr)

    [note], logs = killed_mid_download_then_restarted(
        tmp_path, tiny_model_dir, dingtalk_environment(fake_dingtalk, "http"),
        lambda base: request.send(f"{base}/webhooks/dingtalk"), held=[(fake_dingtalk, "robot/messageFiles/download")])

    assert (note.status, note.attempts, len(fake_dingtalk.sent_messages)) == (NoteStatus.REPLIED, 2, 1)
    assert fake_dingtalk.client_secret not in logs


# -- alerts and digests --------------------------------------------------------------------------------

ROBOT_TARGET = f"{dingtalk.DEFAULT_ROBOT_TOKEN}:{dingtalk.DEFAULT_ROBOT_SECRET}"


@pytest.fixture
def alerts(tmp_path, fake_dingtalk):
    targets = {"group": {"platform": "dingtalk", "chat_id": dingtalk.DEFAULT_GROUP, "name": "钉钉 客服群"},
               "robot": {"platform": "dingtalk_robot", "chat_id": ROBOT_TARGET, "name": "钉钉 robot"}}
    settings = load_settings(environ=dingtalk_environment(fake_dingtalk, "http"), data_dir=str(tmp_path / "data"),
                             targets=targets, routes=[{"sources": ["*"], "targets": list(targets)}],
                             digest={"targets": {"group": {"at": "18:00"}, "robot": {"at": "18:00"}}},
                             public_url=PUBLIC_URL)
    alerts = Alerts(settings)
    yield alerts
    alerts.close()


def test_cases_reach_a_group_through_the_app_robot_and_through_a_signed_custom_robot(alerts, fake_dingtalk):
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice")

    assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"group": 1, "robot": 1}

    group, robot = sorted(fake_dingtalk.sent_messages, key=lambda message: message["method"])
    assert (group["method"], group["params"]["openConversationId"]) == ("robot/groupMessages/send",
                                                                        dingtalk.DEFAULT_GROUP)
    assert robot["method"] == "robot/send" and robot["params"]["msgtype"] == "text"
    for text in texts(fake_dingtalk):
        assert text.startswith("🚨 案件 1 · 待处理 / Case 1 · open\n😠 愤怒 Angry · 87%")
        assert f"{PUBLIC_URL}/cases/1" in text, "no buttons: the case is acted on in the console"


def test_the_daily_digest_reaches_both_dingtalk_targets_with_the_chart_where_dingtalk_takes_one(alerts,
                                                                                             fake_dingtalk):
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, sender_name="Alice")
    due = NOON.replace(hour=10)  # 18:00 in Shanghai

    assert alerts.digests.send_due(due) == {"group": DigestState.SENT, "robot": DigestState.SENT}

    digests = [message for message in fake_dingtalk.sent_messages if "Daily emotion digest" in (message["text"] or "")]
    assert sorted(message["method"] for message in digests) == ["robot/groupMessages/send", "robot/send"]
    [chart] = [message for message in fake_dingtalk.sent_messages if message["images"]]
    assert chart["method"] == "robot/groupMessages/send" and chart["images"][0].startswith(b"\x89PNG")
    assert not any(message["images"] for message in fake_dingtalk.calls("robot/send")), "a custom robot takes none"


def test_the_custom_robot_keeps_to_20_messages_a_minute_and_a_wrong_secret_is_refused(fake_dingtalk):
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    fake_dingtalk.robot_rate_limit = None
    robot = DingTalkRobot({"api_base": fake_dingtalk.base_url}, OutboundHttp(sleep=lambda _s: None),
                          clock=lambda: now[0], sleep=sleep)
    for number in range(21):
        robot.send_alert(ROBOT_TARGET, f"message {number}")
        now[0] += 1
    assert slept == [40.0] and len(fake_dingtalk.sent_messages) == 21

    with pytest.raises(OutboundError, match="errcode 310000"):
        robot.send_alert(f"{dingtalk.DEFAULT_ROBOT_TOKEN}:SECwrong", "forged")



def test_an_alert_to_one_person_goes_through_batch_send_and_an_unknown_staff_id_is_refused(fake_dingtalk):
    fake_dingtalk.known_staff = {dingtalk.DEFAULT_STAFF_ID}
    settings = {"client_id": fake_dingtalk.client_id, "client_secret": fake_dingtalk.client_secret,
                "api_base": fake_dingtalk.base_url, "oapi_base": fake_dingtalk.base_url}
    adapter = DingTalkAdapter(settings, OutboundHttp(sleep=lambda _s: None))

    assert adapter.send_alert(f"user:{dingtalk.DEFAULT_STAFF_ID}", "🚨 Case 1")
    with pytest.raises(OutboundError, match="no staff member"):
        adapter.send_alert("user:left-the-company", "🚨 Case 2")

    assert [message["params"]["userIds"] for message in fake_dingtalk.sent_messages] == [[dingtalk.DEFAULT_STAFF_ID]]
    assert fake_dingtalk.token_calls == 1, "one token for both"


def test_an_audio_file_is_heard_and_other_files_pictures_and_chatter_are_not():
    from bot_bridge.chat.messages import InboundRequest

    adapter = DingTalkAdapter({"client_id": "dingapp", "client_secret": "s"})

    def parsed(msgtype: str, body: dict):
        message = dingtalk.robot_message(msgtype, body, robot_code="dingapp")
        return adapter.parse(InboundRequest.carrying(json.dumps(message).encode(), "test")).messages

    [note] = parsed("file", {"content": {"downloadCode": "dc1", "fileName": "客户来电.M4A"}})
    assert (note.kind, note.media.ref, note.media.file_name) == ("voice", "dc1", "客户来电.M4A")
    assert parsed("file", {"content": {"downloadCode": "dc2", "fileName": "合同.pdf"}}) == ()
    assert parsed("picture", {"content": {"downloadCode": "dc3"}}) == ()
    assert parsed("text", {"text": {"content": "hello"}}) == ()
    [help_note] = parsed("text", {"text": {"content": " 帮助"}})
    assert help_note.kind == "help" and help_note.thread_id == "1", "no session webhook: the robot API later"
