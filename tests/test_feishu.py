"""Feishu/Lark end to end: sealed, signed events in, replies, reactions, cards out through the loopback Open API,
and the SDK's long connection against the fake's protobuf WebSocket endpoint."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import timedelta

import pytest
import yaml

from adapters.base import Refused
from adapters.feishu import FeishuAdapter, open_sealed
from bot_bridge.acting.alerting import build_targets
from bot_bridge.acting.escalation import Escalator
from bot_bridge.acting.replies import label
from bot_bridge.acting.scheduler import utc_now
from bot_bridge.chat.messages import CaseInsensitiveDict, InboundRequest
from bot_bridge.config import ConfigError, load_settings
from bot_bridge.remembering.alert_store import DigestState
from bot_bridge.remembering.case_store import CaseState, CaseStore
from bot_bridge.remembering.store import NoteStatus
from tests.alert_helpers import NOON, PUBLIC_URL, Alerts, add_chat_note
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import (delivered_after_retries, killed_mid_download_then_restarted, platform_environment,
                                running_bot)
from tests.platforms import feishu, fixtures
from tests.processes import wait_for

fake_feishu = fixtures.fake_feishu
TARGETS = {"feishu": {"platform": "feishu", "chat_id": feishu.DEFAULT_CHAT_ID, "name": "客服群", "language": "zh"}}
ROUTES = [{"sources": ["*"], "targets": ["feishu"]}]


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_feishu):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"feishu_fake": fake_feishu}) as bot:
        yield bot


@pytest.fixture(scope="module")
def voice_opus():
    return encode(speech_clip(3), 16000, "ogg_opus")


def test_a_voice_message_is_answered_once_quoting_it(bot, fake_feishu, voice_opus):
    voice = fake_feishu.add_voice(voice_opus)

    response = bot.deliver(feishu.event_request(feishu.voice_event(voice)), "feishu")

    assert response.status_code == 200
    [sent] = fake_feishu.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    result = bot.store.result(note.result_id)
    assert (sent["method"], sent["path"]) == ("reply", f"/open-apis/im/v1/messages/{voice[0]}/reply")
    assert sent["params"]["msg_type"] == "post" and sent["params"]["reply_in_thread"] is False
    assert label(result.emotion, result.confidence, "both") in sent["text"]
    assert result.audio["codec"] == "opus"
    assert note.status == NoteStatus.REPLIED and note.reply_ref == sent["response"]["data"]["message_id"]
    [download] = fake_feishu.calls("resources")
    assert download["params"] == {"type": "file"} and download["headers"]["Authorization"].startswith("Bearer t-")


def test_the_url_check_is_answered_with_its_challenge_and_stores_nothing(bot, fake_feishu):
    response = bot.deliver(feishu.url_verification_request("ajls384kdjx98XX"), "feishu")

    assert response.status_code == 200 and response.get_json() == {"challenge": "ajls384kdjx98XX"}
    assert bot.deliver(feishu.url_verification_request(token="not-ours"), "feishu").status_code == 403
    assert bot.notes() == [] and fake_feishu.requests == []


def test_forged_events_are_refused_before_anything_is_stored_or_downloaded(bot, fake_feishu, voice_opus):
    event = feishu.voice_event(fake_feishu.add_voice(voice_opus))
    genuine = feishu.event_request(event)
    forgeries = {
        "signed with another key": (feishu.event_request(event, signed_with="not-our-encrypt-key"), 401),
        "body changed after signing": (genuine.with_body(feishu.seal(event)), 401),
        "sealed with another key": (feishu.event_request(event, encrypt_key="another-encrypt-key"), 401),
        "not signed": (feishu.event_request(event, signed=False), 401),
        "another app's token": (feishu.event_request({**event, "header": {**event["header"], "token": "x"}}), 403),
    }

    statuses = {name: bot.deliver(request, "feishu").status_code for name, (request, _) in forgeries.items()}

    assert statuses == {name: status for name, (_, status) in forgeries.items()}
    assert bot.notes() == [] and fake_feishu.requests == []


def test_a_replayed_event_with_an_old_timestamp_is_refused(bot, fake_feishu, voice_opus):
    captured = feishu.event_request(feishu.voice_event(fake_feishu.add_voice(voice_opus)),
                                    timestamp=int(time.time()) - 6 * 60)

    assert bot.deliver(captured, "feishu").status_code == 403
    assert bot.notes() == [] and fake_feishu.requests == []


def test_re_pushes_of_one_message_get_one_reply(bot, fake_feishu, voice_opus):
    voice = fake_feishu.add_voice(voice_opus)
    event = feishu.voice_event(voice)
    again_with_a_new_event_id = feishu.voice_event(voice)

    statuses = [bot.deliver(feishu.event_request(e), "feishu").status_code
                for e in (event, event, event, again_with_a_new_event_id)]

    assert statuses == [200, 200, 200, 200]
    fake_feishu.wait_for_messages(1, timeout=30)
    bot.wait_until_finished()
    assert len(bot.notes()) == 1 and len(fake_feishu.calls("reply")) == 1


def test_the_tenant_token_is_cached_and_fetched_again_when_feishu_says_it_is_invalid(bot, fake_feishu, voice_opus):
    bot.deliver(feishu.event_request(feishu.message_event("text", {"text": "@_user_1 帮助"})), "feishu")
    fake_feishu.wait_for_messages(1, timeout=10)
    fake_feishu.expire_tokens()

    bot.deliver(feishu.event_request(feishu.voice_event(fake_feishu.add_voice(voice_opus))), "feishu")

    fake_feishu.wait_for_messages(2, timeout=30)
    assert fake_feishu.token_calls == 2  # once at first use, once after code 99991663
    assert [call["response"]["code"] for call in fake_feishu.calls("resources")[:1]] == [feishu.TOKEN_INVALID]


def test_server_errors_and_rate_limits_are_retried(bot, fake_feishu, voice_opus):
    fake_feishu.fail_next("resources", 502)
    fake_feishu.rate_limit_next("reply")  # HTTP 429, code 99991400, x-ogw-ratelimit-reset: 1

    bot.deliver(feishu.event_request(feishu.voice_event(fake_feishu.add_voice(voice_opus))), "feishu")

    replies = delivered_after_retries(bot, fake_feishu, "reply")
    assert [call["response"]["code"] for call in replies] == [feishu.RATE_LIMITED, 0]
    assert replies[1]["received_at"] - replies[0]["received_at"] >= 1.0, "the reset header was waited for"
    assert [call["status"] for call in fake_feishu.calls("resources")] == [502, 200]


def test_audio_sent_as_a_file_is_answered_and_apps_messages_are_not(bot, fake_feishu, voice_opus):
    message, file_key = fake_feishu.add_voice(voice_opus)
    own_reply = feishu.message_event("audio", {"file_key": file_key, "duration": 3000}, sender_type="app")
    bot.deliver(feishu.event_request(own_reply), "feishu")
    as_file = feishu.message_event("file", {"file_key": file_key, "file_name": "会议录音.ogg"}, message=message)

    bot.deliver(feishu.event_request(as_file), "feishu")

    [sent] = fake_feishu.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    assert note.status == NoteStatus.REPLIED and "%" in sent["text"]


def test_reaction_mode_puts_feishus_emoji_on_the_voice_message(tmp_path, tiny_model_dir, tiny_model, fake_feishu,
                                                              voice_opus):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"feishu_fake": fake_feishu},
                     reply__modes={"feishu:*": "reaction"}) as bot:
        voice = fake_feishu.add_voice(voice_opus)
        bot.deliver(feishu.event_request(feishu.voice_event(voice)), "feishu")
        fake_feishu.wait_for_messages(1, timeout=30)
        [note] = bot.wait_until_finished()

    [reaction] = fake_feishu.reactions
    assert reaction["message_id"] == voice[0] and fake_feishu.calls("reply") == []
    assert note.status == NoteStatus.REPLIED


def test_feishus_published_decryption_vector_and_the_fakes_sealing_agree():
    """open.feishu.cn's example ("test key" seals "hello world"), and the fake's sealing read by the SDK's own
    AESCipher: the fake and the adapter do not share an implementation."""
    from lark_oapi.core.utils.decryptor import AESCipher

    assert open_sealed("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == b"hello world"
    sealed = json.loads(feishu.seal({"challenge": "x"}, "k"))["encrypt"]
    assert json.loads(AESCipher("k").decrypt_str(sealed)) == {"challenge": "x"} == json.loads(open_sealed("k", sealed))


def test_misspelt_settings_and_modes_are_named_at_start(tmp_path):
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({"platforms": {"feishu": {"app_id": "a", "encrypt_kye": "k"}}}))

    with pytest.raises(ConfigError, match=r"platforms\.feishu\.encrypt_kye.*unknown setting"):
        load_settings(environ={"BOT_BRIDGE_CONFIG": str(config)})
    with pytest.raises(ValueError, match="FEISHU_MODE"):
        FeishuAdapter({"app_id": "a", "app_secret": "s", "mode": "socket"})
    with pytest.raises(ValueError, match="FEISHU_DOMAIN"):
        FeishuAdapter({"app_id": "a", "app_secret": "s", "domain": "larksuite"})
    assert FeishuAdapter.missing_settings({"app_id": "a", "app_secret": "s", "verification_token": "t"}) == [
        "encrypt_key"], "events mode needs the Encrypt Key: without it Feishu signs nothing"


def test_an_unsigned_event_other_than_the_url_check_is_refused():
    adapter = FeishuAdapter({"app_id": "a", "app_secret": "s", "verification_token": feishu.DEFAULT_VERIFICATION_TOKEN,
                             "encrypt_key": feishu.DEFAULT_ENCRYPT_KEY})
    unsigned = feishu.event_request(feishu.message_event("text", {"text": "help"}), signed=False)

    with pytest.raises(Refused) as refused:
        adapter.verify(InboundRequest("POST", "feishu", {}, CaseInsensitiveDict(unsigned.headers), unsigned.body))
    assert refused.value.status == 401


# -- alerts, digests and cases at a Feishu chat ---------------------------------------------------------------


def test_cases_and_digests_reach_a_feishu_chat(tmp_path, fake_feishu):
    settings = load_settings(environ=platform_environment(feishu_fake=fake_feishu), data_dir=str(tmp_path / "data"),
                             targets=TARGETS, routes=ROUTES, public_url=PUBLIC_URL,
                             digest={"targets": {"feishu": {"at": "18:00"}}})
    alerts = Alerts(settings)
    try:
        add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
        assert alerts.escalator.sweep(NOON + timedelta(minutes=1)) == {"feishu": 1}
        assert alerts.digests.send_due(NOON + timedelta(hours=4)) == {"feishu": DigestState.SENT}  # 18:00 Shanghai
    finally:
        alerts.close()

    card, *digest = fake_feishu.sent_messages
    assert card["method"] == "messages" and card["params"]["receive_id"] == feishu.DEFAULT_CHAT_ID
    posted = fake_feishu.messages[card["response"]["data"]["message_id"]]["content"]
    assert posted["config"]["update_multi"] is True and card["text"].startswith("🚨 案件 1")
    values = [b["value"]["bot_bridge_case"] for b in feishu.card_buttons(posted) if "value" in b]
    assert [value.rsplit(":", 1)[1] for value in values] == ["acknowledge", "resolve", "snooze", "right", "wrong"]
    assert [b["url"] for b in feishu.card_buttons(posted) if "url" in b] == [f"{PUBLIC_URL}/cases/1"]
    assert digest and digest[0]["params"]["msg_type"] == "post" and "每日情绪摘要" in digest[0]["text"]


def test_a_case_with_the_longest_names_fits_a_card(tmp_path, fake_feishu):
    settings = load_settings(environ=platform_environment(feishu_fake=fake_feishu), data_dir=str(tmp_path / "data"),
                             targets=TARGETS, routes=ROUTES)
    alerts = Alerts(settings)
    try:
        case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9},
                             chat_name="客户服务投诉处理中心" * 30, sender_name="客" * 185)
        assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"feishu": 1}
    finally:
        alerts.close()

    [card] = fake_feishu.sent_messages  # the fake refuses a card over 30 KB (code 230025)
    assert card["status"] == 200 and case in card["text"]


def escalated_card(bot, fake) -> tuple[str, str]:
    """An angry note escalated to the Feishu target: its card's message id, and its Acknowledge button's value."""
    add_chat_note(bot.store, received_at=utc_now() - timedelta(minutes=1), emotions={"angry": 0.9})
    Escalator(bot.store, bot.service.settings, build_targets(bot.service.settings, bot.service.chat.adapters)
              ).sweep(utc_now())
    [card] = fake.sent_messages
    card_id = card["response"]["data"]["message_id"]
    value = next(b["value"]["bot_bridge_case"] for b in feishu.card_buttons(fake.messages[card_id]["content"])
                 if b.get("value", {}).get("bot_bridge_case", "").endswith(":acknowledge"))
    return card_id, value


def test_a_card_button_press_is_answered_at_once_then_the_card_is_updated(tmp_path, tiny_model_dir, tiny_model,
                                                                         fake_feishu):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"feishu_fake": fake_feishu}, targets=TARGETS,
                     routes=ROUTES, public_url=PUBLIC_URL) as bot:
        card_id, value = escalated_card(bot, fake_feishu)
        press = feishu.event_request(feishu.card_press(fake_feishu, card_id, value))
        too_late = feishu.event_request(feishu.card_press(fake_feishu, card_id, value, open_id="ou_second_presser"))

        started = time.perf_counter()
        answer = bot.deliver(press, "feishu")
        answered_in = time.perf_counter() - started
        again = bot.deliver(press, "feishu")
        wait_for(lambda: fake_feishu.patches, 10, "the card updated")
        assert bot.deliver(too_late, "feishu").status_code == 200
        [told] = wait_for(lambda: fake_feishu.calls("reply"), 10, "a reply under the card")
        case = CaseStore(bot.store).view(1).case

    assert answer.status_code == 200 and answer.get_json() == {} and answered_in < 3
    assert again.status_code == 200
    assert case.state == CaseState.ACKNOWLEDGED and case.acknowledged_via == "feishu"
    assert told["path"] == f"/open-apis/im/v1/messages/{card_id}/reply", "the second presser is told why"
    [patch] = fake_feishu.patches
    assert patch["message_id"] == card_id and patch["text"].startswith("🚨 案件 1 · 已认领")
    left = [b["value"]["bot_bridge_case"].rsplit(":", 1)[1] for b in feishu.card_buttons(patch["card"]) if "value" in b]
    assert left == ["resolve", "snooze", "right", "wrong"]


def test_forged_stale_or_replayed_card_presses_change_nothing(tmp_path, tiny_model_dir, tiny_model, fake_feishu):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"feishu_fake": fake_feishu}, targets=TARGETS,
                     routes=ROUTES, public_url=PUBLIC_URL) as bot:
        card_id, value = escalated_card(bot, fake_feishu)
        press = feishu.card_press(fake_feishu, card_id, value)
        refused = {
            "signed with another key": bot.deliver(feishu.event_request(press, signed_with="x"), "feishu").status_code,
            "sealed with another key": bot.deliver(feishu.event_request(press, encrypt_key="y"), "feishu").status_code,
            "replayed after 6 minutes": bot.deliver(feishu.event_request(press, timestamp=int(time.time()) - 360),
                                                    "feishu").status_code,
        }
        case = CaseStore(bot.store).view(1).case

    assert refused == {"signed with another key": 401, "sealed with another key": 401, "replayed after 6 minutes": 403}
    assert case.state == CaseState.OPEN and fake_feishu.patches == [] and fake_feishu.calls("reply") == []


# -- the long connection ----------------------------------------------------------------------------------------


@pytest.fixture
def connected_bot(tmp_path, tiny_model_dir, tiny_model, fake_feishu):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={},
                     environ=feishu.long_connection_environment(fake_feishu), targets=TARGETS, routes=ROUTES,
                     public_url=PUBLIC_URL) as bot:
        fake_feishu.long_connection.wait_for_connections(1, timeout=60)
        yield bot


def test_the_long_connection_answers_a_voice_message_once_and_survives_a_drop(connected_bot, fake_feishu,
                                                                              voice_opus):
    endpoint = fake_feishu.long_connection
    event = feishu.voice_event(fake_feishu.add_voice(voice_opus))

    delivery = endpoint.wait_for_ack(endpoint.send_event(event))
    [sent] = fake_feishu.wait_for_messages(1, timeout=30)
    [note] = connected_bot.wait_until_finished()
    endpoint.drop_connections()
    endpoint.wait_for_connections(1, timeout=30)
    again = endpoint.wait_for_ack(endpoint.send_event(event))  # pushed again after the drop: absorbed

    assert delivery.ack_code == 200 and delivery.acked_at - delivery.sent_at < 3.0
    assert again.ack_code == 200 and len(connected_bot.notes()) == 1 and len(fake_feishu.sent_messages) == 1
    assert note.status == NoteStatus.REPLIED and sent["method"] == "reply"
    assert endpoint.connections_opened == 2 and endpoint.protocol_errors == []
    assert connected_bot.client.post("/webhooks/feishu", data=b"{}").status_code == 404, "no Request URL"


def test_an_event_is_acknowledged_only_once_it_is_recorded(connected_bot, fake_feishu, voice_opus, tmp_path):
    database = sqlite3.connect(tmp_path / "bot-bridge.db", isolation_level=None)
    database.execute("BEGIN IMMEDIATE")  # the database takes no write until this ends
    try:
        frame = fake_feishu.long_connection.send_event(feishu.voice_event(fake_feishu.add_voice(voice_opus)))
        with pytest.raises(AssertionError, match="not acknowledged"):
            fake_feishu.long_connection.wait_for_ack(frame, timeout=1.5)
        assert connected_bot.notes() == []
    finally:
        database.execute("ROLLBACK")
        database.close()

    assert fake_feishu.long_connection.wait_for_ack(frame).ack_code == 200
    assert len(connected_bot.notes()) == 1
    fake_feishu.wait_for_messages(1, timeout=30)


def test_a_card_press_over_the_long_connection_updates_the_card(connected_bot, fake_feishu):
    add_chat_note(connected_bot.store, received_at=utc_now() - timedelta(minutes=1), emotions={"angry": 0.9})
    settings = connected_bot.service.settings
    Escalator(connected_bot.store, settings, build_targets(settings, connected_bot.service.chat.adapters)
              ).sweep(utc_now())
    [card] = fake_feishu.sent_messages
    card_id = card["response"]["data"]["message_id"]
    value = next(b["value"]["bot_bridge_case"] for b in feishu.card_buttons(fake_feishu.messages[card_id]["content"])
                 if b.get("value", {}).get("bot_bridge_case", "").endswith(":resolve"))

    press = fake_feishu.long_connection.wait_for_ack(
        fake_feishu.long_connection.send_event(feishu.card_press(fake_feishu, card_id, value)))

    wait_for(lambda: fake_feishu.patches, 10, "the card updated")
    assert press.ack_code == 200 and CaseStore(connected_bot.store).view(1).case.state == CaseState.RESOLVED
    left = [b["value"]["bot_bridge_case"].rsplit(":", 1)[1] for b in feishu.card_buttons(fake_feishu.patches[0]["card"])
            if "value" in b]
    assert left == ["right", "wrong"], "a resolved case keeps only the verdict buttons"


def test_wrong_app_credentials_are_named_in_the_log_and_tried_again(tmp_path, tiny_model_dir, tiny_model,
                                                                    fake_feishu, caplog):
    caplog.set_level(logging.ERROR, logger="bot_bridge.acting.listeners")
    environ = {**feishu.long_connection_environment(fake_feishu), "FEISHU_APP_SECRET": "WrongSecret0123456789"}

    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ):
        wait_for(lambda: len(fake_feishu.calls("endpoint")) >= 2, 10, "a second try")

    assert "feishu: cannot open its connection" in caplog.text and "app secret invalid" in caplog.text
    assert "WrongSecret0123456789" not in caplog.text
    assert fake_feishu.long_connection.connections_opened == 0


# -- a killed worker ----------------------------------------------------------------------------------------------


def test_a_worker_killed_mid_note_then_restarted_replies_exactly_once(tmp_path, tiny_model_dir, fake_feishu,
                                                                      voice_opus):
    request = feishu.event_request(feishu.voice_event(fake_feishu.add_voice(voice_opus)))

    [note], logs = killed_mid_download_then_restarted(
        tmp_path, tiny_model_dir, platform_environment(feishu_fake=fake_feishu),
        lambda base: request.send(f"{base}/webhooks/feishu"), held=[(fake_feishu, "resources")])

    assert (note.status, note.attempts, len(fake_feishu.sent_messages)) == (NoteStatus.REPLIED, 2, 1)
    for secret in (fake_feishu.app_secret, feishu.DEFAULT_ENCRYPT_KEY, feishu.DEFAULT_VERIFICATION_TOKEN):
        assert secret not in logs
