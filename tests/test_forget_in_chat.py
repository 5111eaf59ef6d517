"""Deletion on request from the chat: ``forget`` / ``删除我的数据`` through each platform's loopback fake deletes
the sender's notes, results and recordings (not other people's) and answers how many, in both languages; Slack's
``file_deleted`` deletes the note made from that file, and a recall (撤回) in Feishu (webhook or long connection)
or 微信客服 the note made from that message, silently. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging

import pytest

from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.forgetting import Forgetting, Selection
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import platform_environment, running_bot
from tests.platforms import dingtalk, feishu, fixtures, slack, wecom
from tests.platforms import telegram as tg
from tests.platforms import whatsapp as wa
from tests.processes import wait_for

fake_telegram, fake_slack, fake_wecom = fixtures.fake_telegram, fixtures.fake_slack, fixtures.fake_wecom
fake_whatsapp, fake_dingtalk, fake_feishu = wa.fake_whatsapp, dingtalk.fake_dingtalk, feishu.fake_feishu
OTHER_FEISHU_USER = "ou_2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c02"


@pytest.fixture(scope="module")
def speech():
    return speech_clip(3)


def result_folders(bot) -> list[str]:
    outputs = bot.service.settings.outputs_dir
    return sorted(path.name for path in outputs.iterdir()) if outputs.exists() else []


def assert_only_the_request_is_left(bot, sender: str, kept_sender: str) -> None:
    notes = bot.wait_until_finished(2)
    assert sorted((note.kind, note.sender_id) for note in notes) == [("forget", sender), ("voice", kept_sender)]
    [kept] = [note for note in notes if note.kind == "voice"]
    assert [folder.endswith(kept.result_id) for folder in result_folders(bot)] == [True]
    [entry] = [entry for entry in AuditLog(bot.store).entries() if entry.action == "data.delete"]
    assert entry.detail == {"notes": 1, "results": 1} and entry.actor.endswith(sender)


def assert_the_recalled_note_is_gone(bot, recalled_result: str, kept_sender: str) -> None:
    """After the platform's recall of one voice note: it, its result and folder are gone, the other person's
    note stays, and the recall is recorded once, silently, naming no one, with one audit entry for one note."""
    notes = bot.wait_until_finished(2)
    assert sorted((note.kind, note.sender_id) for note in notes) == [("deleted", None), ("voice", kept_sender)]
    [kept] = [note for note in notes if note.kind == "voice"]
    assert bot.store.result(recalled_result) is None
    assert [folder.endswith(kept.result_id) for folder in result_folders(bot)] == [True]
    assert next(note for note in notes if note.kind == "deleted").status == NoteStatus.SILENT
    [entry] = [entry for entry in AuditLog(bot.store).entries() if entry.action == "data.delete"]
    assert entry.detail == {"notes": 1, "results": 1} and entry.actor == f"{kept.platform}:platform"


def assert_an_unknown_recall_deleted_nothing(bot) -> None:
    """After a recall of a message no note was made from: the kept note and its folder are still there, and the
    audit log holds no entry for a deletion of nothing (most recalls in a chat are of text messages)."""
    notes = bot.wait_until_finished(3)
    assert sorted(note.kind for note in notes) == ["deleted", "deleted", "voice"]
    assert {note.status for note in notes if note.kind == "deleted"} == {NoteStatus.SILENT}
    assert len(result_folders(bot)) == 1
    deleted = [entry.detail["notes"] for entry in AuditLog(bot.store).entries() if entry.action == "data.delete"]
    assert deleted == [1]


def test_forget_from_telegram(tmp_path, tiny_model_dir, tiny_model, fake_telegram, database_url, speech):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram},
                     database_url=database_url) as bot:
        for user_id in (111, 222):
            file_id = fake_telegram.add_file(encode(speech, 16000, "ogg_opus"), "audio/ogg")
            bot.deliver(tg.webhook_request(tg.voice_update(file_id, user_id=user_id)), "telegram")
        fake_telegram.wait_for_messages(2, timeout=30)
        bot.wait_until_finished(2)

        bot.deliver(tg.webhook_request(tg.text_update("/forget", user_id=111)), "telegram")

        *_, answer = fake_telegram.wait_for_messages(3, timeout=30)
        assert "deleted 1 voice note of yours" in answer["text"]  # the sender's app is in English
        assert_only_the_request_is_left(bot, "111", "222")


def test_forget_from_slack_and_a_deleted_file(tmp_path, tiny_model_dir, tiny_model, fake_slack, database_url, speech):
    clip = encode(speech, 16000, "m4a_aac_moov_end")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"slack_fake": fake_slack},
                     database_url=database_url) as bot:
        files = [fake_slack.add_file(clip) for _ in range(3)]
        for file, user in zip(files, ("U0FORGET1", "U0KEEPS02", "U0KEEPS02")):
            bot.deliver(slack.event_request(slack.voice_clip_message(file, user=user)), "slack/events")
        fake_slack.wait_for_messages(3, timeout=30)
        bot.wait_until_finished(3)

        bot.deliver(slack.event_request({"type": "file_deleted", "file_id": files[2]["id"],
                                         "event_ts": slack.new_ts()}), "slack/events")
        bot.wait_until_finished(3)
        bot.deliver(slack.event_request(slack.text_message("删除我的数据", user="U0FORGET1")), "slack/events")

        *_, answer = fake_slack.wait_for_messages(4, timeout=30)
        assert "已删除你的 1 条语音" in answer["text"] and "deleted 1 voice note" in answer["text"]
        notes = bot.wait_until_finished(3)
        assert sorted((note.kind, note.sender_id) for note in notes) == [
            ("deleted", None), ("forget", "U0FORGET1"), ("voice", "U0KEEPS02")]
        [kept] = [note for note in notes if note.kind == "voice"]
        assert kept.delivery_id.endswith(files[1]["id"]) and len(result_folders(bot)) == 1
        assert next(note for note in notes if note.kind == "deleted").status == NoteStatus.SILENT


def feishu_delivery(bot, fake, mode: str):
    """How an event reaches the bot: posted to its Request URL (``events``) or pushed over the long connection
    (``connection``), returning once it is recorded."""
    if mode == "events":
        return lambda event: bot.deliver(feishu.event_request(event), "feishu").status_code == 200
    fake.long_connection.wait_for_connections(1, timeout=60)
    return lambda event: fake.long_connection.wait_for_ack(fake.long_connection.send_event(event)).ack_code == 200


@pytest.mark.parametrize("mode", ["events", "connection"])
def test_a_recalled_feishu_voice_message_is_deleted_silently(mode, tmp_path, tiny_model_dir, tiny_model, fake_feishu,
                                                             database_url, speech):
    environ = (platform_environment(feishu_fake=fake_feishu) if mode == "events"
               else feishu.long_connection_environment(fake_feishu))
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ, database_url=database_url) as bot:
        deliver = feishu_delivery(bot, fake_feishu, mode)
        voices = [fake_feishu.add_voice(encode(speech, 16000, "ogg_opus")) for _ in range(2)]
        for voice, person in zip(voices, (feishu.DEFAULT_OPEN_ID, OTHER_FEISHU_USER)):
            assert deliver(feishu.voice_event(voice, open_id=person))
        fake_feishu.wait_for_messages(2, timeout=30)
        [recalled] = [note for note in bot.wait_until_finished(2) if note.message_id == voices[0][0]]

        recall = feishu.recall_event(voices[0][0])
        assert deliver(recall) and deliver(recall)  # pushed again: recorded once

        assert_the_recalled_note_is_gone(bot, recalled.result_id, OTHER_FEISHU_USER)
        assert deliver(feishu.recall_event(feishu.message_id()))  # a message no note was made from
        assert_an_unknown_recall_deleted_nothing(bot)
        assert len(fake_feishu.sent_messages) == 2, "the two voice notes' replies, and nothing about the recalls"


def test_a_forged_feishu_recall_is_refused_and_only_the_genuine_one_deletes(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_feishu, speech):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"feishu_fake": fake_feishu}) as bot:
        voice = fake_feishu.add_voice(encode(speech, 16000, "ogg_opus"))
        bot.deliver(feishu.event_request(feishu.voice_event(voice)), "feishu")
        [note] = bot.wait_until_finished()
        recall = feishu.recall_event(voice[0])

        assert bot.deliver(feishu.event_request(recall, signed_with="not-our-encrypt-key"), "feishu").status_code == 401
        assert [n.id for n in bot.notes()] == [note.id] and len(result_folders(bot)) == 1
        assert bot.deliver(feishu.event_request(recall), "feishu").status_code == 200
        assert [n.kind for n in bot.wait_until_finished()] == ["deleted"] and result_folders(bot) == []


def test_forget_from_wecom(tmp_path, tiny_model_dir, tiny_model, fake_wecom, database_url, speech):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"wecom_fake": fake_wecom},
                     database_url=database_url) as bot:
        for user in ("zhangsan", "lisi"):
            bot.deliver(wecom.voice_callback(fake_wecom.add_media(encode(speech, 16000, "amr")), from_user=user),
                        "wecom")
        fake_wecom.wait_for_messages(2, timeout=30)
        bot.wait_until_finished(2)

        bot.deliver(wecom.text_callback("删除我的数据", from_user="zhangsan"), "wecom")

        *_, answer = fake_wecom.wait_for_messages(3, timeout=30)
        assert "已删除你的 1 条语音" in answer["text"]
        assert_only_the_request_is_left(bot, "zhangsan", "lisi")


def test_forget_with_nothing_kept_says_so(tmp_path, tiny_model_dir, tiny_model, fake_wecom):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"wecom_fake": fake_wecom}) as bot:
        bot.deliver(wecom.text_callback("forget", from_user="wangwu"), "wecom")
        [answer] = fake_wecom.wait_for_messages(1, timeout=30)
    assert "没有需要删除的内容" in answer["text"] and "nothing to delete" in answer["text"]


def test_a_note_deleted_while_it_is_analysed_gets_no_reply_and_its_result_goes(tmp_path, tiny_model_dir, tiny_model,
                                                                               fake_telegram, speech, caplog):
    caplog.set_level(logging.INFO, logger="bot_bridge.acting.worker")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        fake_telegram.delay_next("download", 2)
        file_id = fake_telegram.add_file(encode(speech, 16000, "ogg_opus"), "audio/ogg")
        bot.deliver(tg.webhook_request(tg.voice_update(file_id, user_id=333)), "telegram")
        wait_for(lambda: [note.status for note in bot.notes()] == [NoteStatus.WORKING], 30, "the note in work")

        Forgetting(bot.store).forget(Selection.of_sender("telegram", "333"), actor="admin", via="console")

        wait_for(lambda: "deleted while analysed" in caplog.text, 30, "the worker dropping its result")
        assert bot.notes() == [] and result_folders(bot) == []
        assert fake_telegram.calls("download") and fake_telegram.sent_messages == []


def test_a_customer_asks_whatsapp_to_forget_them_and_hears_nothing_back(tmp_path, tiny_model_dir, tiny_model,
                                                                         fake_whatsapp, database_url, speech):
    clip = encode(speech, 16000, "ogg_opus")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wa.environment(fake_whatsapp),
                     database_url=database_url) as bot:
        for sender in ("8613800000001", "8613800000002"):
            message = wa.voice_message(fake_whatsapp.add_media(clip), sender=sender, message_id=f"wamid.{sender}")
            bot.deliver(wa.webhook_request(message, fake=fake_whatsapp), "whatsapp")
        bot.wait_until_finished(2)

        forget = wa.text_message("删除我的数据", sender="8613800000001", message_id="wamid.forget")
        bot.deliver(wa.webhook_request(forget, fake=fake_whatsapp), "whatsapp")

        assert_only_the_request_is_left(bot, "8613800000001", "8613800000002")
        assert fake_whatsapp.sent_messages == [], "silent towards customers, even about their own data"


def test_a_customer_asks_wecom_customer_service_to_forget_them(tmp_path, tiny_model_dir, tiny_model, fake_wecom,
                                                               database_url, speech):
    clip = encode(speech, 8000, "amr")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wecom.kf_environment(fake_wecom),
                     database_url=database_url) as bot:
        for customer in ("wmForgetMe", "wmKeepMe"):
            fake_wecom.add_kf_voice(clip, customer=customer)
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
        bot.wait_until_finished(2)

        fake_wecom.add_kf_message({"origin": 3, "msgtype": "text", "open_kfid": wecom.DEFAULT_OPEN_KFID,
                                   "external_userid": "wmForgetMe", "text": {"content": "删除我的数据"}})
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")

        wait_for(lambda: len(bot.notes()) == 2 and {n.kind for n in bot.notes()} == {"forget", "voice"}, 30,
                 "the forget request to be done")
        assert_only_the_request_is_left(bot, "wmForgetMe", "wmKeepMe")
        assert fake_wecom.calls("kf/send_msg") == []


def recalls(bot) -> int:
    """How many recalls (deleted items) the bot has recorded."""
    return sum(note.kind == "deleted" for note in bot.notes())


def test_a_customer_recalls_a_voice_note_in_wecom_customer_service(tmp_path, tiny_model_dir, tiny_model, fake_wecom,
                                                                     database_url, speech):
    clip = encode(speech, 8000, "amr")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=wecom.kf_environment(fake_wecom),
                     database_url=database_url) as bot:
        recalled_msgid, _ = [fake_wecom.add_kf_voice(clip, customer=customer) for customer in ("wmRecalls", "wmKeeps")]
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
        [recalled] = [note for note in bot.wait_until_finished(2) if note.message_id == recalled_msgid]

        fake_wecom.add_kf_recall(recalled_msgid, customer="wmRecalls")
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")

        wait_for(lambda: recalls(bot) == 1, 30, "the recall to be pulled")
        assert_the_recalled_note_is_gone(bot, recalled.result_id, "wmKeeps")
        fake_wecom.add_kf_recall("msgid-of-a-text-message", customer="wmKeeps")
        bot.deliver(fake_wecom.kf_callback(), "wecom_kf")
        wait_for(lambda: recalls(bot) == 2, 30, "the second recall to be pulled")
        assert_an_unknown_recall_deleted_nothing(bot)
        assert fake_wecom.calls("kf/send_msg") == []


def test_forget_from_dingtalk(tmp_path, tiny_model_dir, tiny_model, fake_dingtalk, database_url, speech):
    environ = {"DINGTALK_CLIENT_ID": fake_dingtalk.client_id, "DINGTALK_CLIENT_SECRET": fake_dingtalk.client_secret,
               "DINGTALK_MODE": "http", "DINGTALK_API_BASE": fake_dingtalk.base_url,
               "DINGTALK_OAPI_BASE": fake_dingtalk.base_url}
    clip = encode(speech, 8000, "amr")
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ, database_url=database_url) as bot:
        for staff in ("manager4220", "keeper0001"):
            message = dingtalk.voice_message(fake_dingtalk.add_file(clip), fake=fake_dingtalk, sender_staff_id=staff)
            bot.deliver(dingtalk.callback_request(message), "dingtalk")
        fake_dingtalk.wait_for_messages(2, timeout=30)
        bot.wait_until_finished(2)

        forget = dingtalk.text_message("删除我的数据", fake=fake_dingtalk, sender_staff_id="manager4220")
        bot.deliver(dingtalk.callback_request(forget), "dingtalk")

        *_, answer = fake_dingtalk.wait_for_messages(3, timeout=30)
        assert "已删除你的 1 条语音" in answer["text"]
        assert_only_the_request_is_left(bot, "manager4220", "keeper0001")


def test_forget_from_feishu(tmp_path, tiny_model_dir, tiny_model, fake_feishu, database_url, speech):
    environ = platform_environment(feishu_fake=fake_feishu)
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ, database_url=database_url) as bot:
        voice = fake_feishu.add_voice(encode(speech, 16000, "ogg_opus"))
        bot.deliver(feishu.event_request(feishu.voice_event(voice)), "feishu")
        fake_feishu.wait_for_messages(1, timeout=30)
        bot.wait_until_finished()

        bot.deliver(feishu.event_request(feishu.message_event("text", {"text": "@_user_1 删除我的数据"})), "feishu")

        *_, answer = fake_feishu.wait_for_messages(2, timeout=30)
        assert "已删除你的 1 条语音" in answer["text"]
        notes = bot.wait_until_finished()
        assert [note.kind for note in notes] == ["forget"] and result_folders(bot) == []
