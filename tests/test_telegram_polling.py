"""Telegram without a public URL: a bot token alone, updates pulled with getUpdates from the loopback Bot API.

The updates are the same PTB-built ``Update`` objects the webhook tests
send; the fake hands them out as Telegram does (long poll, offsets, 409s).
A real process killed mid-batch is in tests/test_telegram_polling_restart.py.
"""

from __future__ import annotations

import logging
import threading

import pytest
import requests
from sqlalchemy import select

from adapters.telegram import ANOTHER_POLLER, POLL_TIMEOUT_S, WEBHOOK_STILL_SET
from bot_bridge.remembering.alert_store import LeaseRow
from bot_bridge.remembering.cursors import Cursors
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import ChatBot, chat_settings, running_bot, without_webhooks
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.processes import wait_for

fake_telegram = fixtures.fake_telegram


@pytest.fixture(scope="module")
def voice_ogg():
    return encode(speech_clip(2), 16000, "ogg_opus")


@pytest.fixture
def polling_bot(tmp_path, tiny_model_dir, tiny_model, fake_telegram):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={},
                     environ=without_webhooks(telegram=fake_telegram)) as bot:
        yield bot


def push_voice(fake: tg.FakeTelegram, audio: bytes, **message) -> dict:
    update = tg.voice_update(fake.add_file(audio), **message)
    fake.push_update(update)
    return update


def replied_to(fake: tg.FakeTelegram) -> list[int]:
    return [m["params"]["reply_parameters"]["message_id"] for m in fake.sent_messages]


def test_a_token_alone_polls_and_answers_voice_notes_without_a_webhook(polling_bot, fake_telegram, voice_ogg):
    update = push_voice(fake_telegram, voice_ogg)

    [sent] = fake_telegram.wait_for_messages(1, timeout=30)
    [note] = polling_bot.wait_until_finished()

    assert sent["params"]["reply_parameters"]["message_id"] == update["message"]["message_id"]
    assert (note.status, note.delivery_id) == (NoteStatus.REPLIED, str(update["update_id"]))
    confirming = wait_for(lambda: [c for c in fake_telegram.calls("getUpdates")
                                   if c["params"].get("offset") == update["update_id"] + 1], 10, "the next poll")
    assert confirming[0]["params"]["timeout"] == POLL_TIMEOUT_S
    assert confirming[0]["params"]["allowed_updates"] == ["message", "callback_query"]
    assert Cursors(polling_bot.store).get("pull:telegram") == str(update["update_id"] + 1)
    assert fake_telegram.updates == [] and fake_telegram.poll_conflicts == 0
    assert polling_bot.client.post("/webhooks/telegram", data=b"{}").status_code == 404, "no webhook in polling mode"


def test_polling_deletes_a_webhook_left_from_webhook_mode_and_answers_what_it_held(
        tmp_path, tiny_model_dir, tiny_model, fake_telegram, voice_ogg):
    fake_telegram.webhook = {"url": "https://old.example.com/webhooks/telegram", "max_connections": 40,
                             "allowed_updates": ["message"]}
    waiting = [push_voice(fake_telegram, voice_ogg) for _ in range(2)]

    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=without_webhooks(fake_telegram)) as bot:
        fake_telegram.wait_for_messages(2, timeout=30)
        bot.wait_until_finished(2)

    [deleted] = fake_telegram.calls("deleteWebhook")
    assert deleted["params"].get("drop_pending_updates") is False
    assert sorted(replied_to(fake_telegram)) == sorted(u["message"]["message_id"] for u in waiting)


def test_a_webhook_set_again_is_named_in_the_log_and_polling_resumes_once_it_is_gone(
        polling_bot, fake_telegram, voice_ogg, caplog):
    caplog.set_level(logging.ERROR, logger="bot_bridge.acting.listeners")
    wait_for(lambda: fake_telegram.calls("getUpdates"), 10, "the first poll")
    fake_telegram.webhook = {"url": "https://other.example.com/hook", "max_connections": 40, "allowed_updates": None}
    push_voice(fake_telegram, voice_ogg)  # ends the poll in flight: the next one meets the webhook

    wait_for(lambda: WEBHOOK_STILL_SET in caplog.text, 10, "the 409 explained in the log")
    fake_telegram.webhook = None

    fake_telegram.wait_for_messages(1, timeout=30)
    assert len(polling_bot.wait_until_finished()) == 1
    assert ANOTHER_POLLER not in caplog.text


def test_another_program_polling_the_same_token_is_named_in_the_log(polling_bot, fake_telegram, voice_ogg, caplog):
    caplog.set_level(logging.ERROR, logger="bot_bridge.acting.listeners")
    wait_for(lambda: fake_telegram.calls("getUpdates"), 10, "the bot's first poll")
    intruder = threading.Thread(target=requests.post, daemon=True, kwargs={
        "url": f"{fake_telegram.base_url}/bot{fake_telegram.token}/getUpdates", "json": {"timeout": 1}, "timeout": 10})
    intruder.start()  # cuts the bot's long poll off, as Telegram does

    wait_for(lambda: ANOTHER_POLLER in caplog.text, 10, "the 409 explained in the log")
    intruder.join()
    push_voice(fake_telegram, voice_ogg)
    fake_telegram.wait_for_messages(1, timeout=30)
    assert WEBHOOK_STILL_SET not in caplog.text


def test_an_update_delivered_again_before_its_offset_was_confirmed_is_answered_once(
        polling_bot, fake_telegram, voice_ogg):
    update = push_voice(fake_telegram, voice_ogg)
    fake_telegram.wait_for_messages(1, timeout=30)
    polling_bot.wait_until_finished()

    fake_telegram.push_update(update)  # the same update_id again, as after a crash before the offset was saved
    wait_for(lambda: Cursors(polling_bot.store).get("pull:telegram") == str(update["update_id"] + 1)
             and fake_telegram.updates == [], 10, "the repeat pulled and confirmed")

    assert len(polling_bot.notes()) == 1
    assert len(fake_telegram.calls("sendMessage")) == 1 and len(fake_telegram.calls("getFile")) == 1


def test_of_two_pollers_one_polls_and_the_other_takes_over_when_it_stops(
        tmp_path, tiny_model_dir, tiny_model, fake_telegram, voice_ogg):
    settings = [chat_settings(tmp_path, tiny_model_dir, without_webhooks(fake_telegram)) for _ in range(2)]
    bots = [ChatBot(settings[0], tiny_model), ChatBot(settings[1], tiny_model)]
    try:
        first = [push_voice(fake_telegram, voice_ogg) for _ in range(4)]
        fake_telegram.wait_for_messages(4, timeout=60)
        holder = _lease_holder(bots[0].store)
        [polling] = [bot for bot in bots if bot.service._listeners.holder == holder]
        [other] = [bot for bot in bots if bot is not polling]
        assert fake_telegram.poll_conflicts == 0, "the two never polled at once"

        polling.close()
        bots.remove(polling)
        wait_for(lambda: _lease_holder(other.store) == other.service._listeners.holder, 10, "the other took over")
        later = push_voice(fake_telegram, voice_ogg)
        fake_telegram.wait_for_messages(5, timeout=30)
        other.wait_until_finished(5)
    finally:
        for bot in bots:
            bot.close()

    assert sorted(replied_to(fake_telegram)) == sorted(u["message"]["message_id"] for u in [*first, later])


def _lease_holder(store) -> str | None:
    with store.session() as session:
        return session.scalar(select(LeaseRow.holder).where(LeaseRow.name == "pull:telegram"))
