"""The fakes' long-lived side, checked with the platforms' own client libraries (not bot-bridge's code).

Telegram's getUpdates (long poll, offsets, 409s) and setMessageReaction
through python-telegram-bot; Slack's reactions.add through slack_sdk's
WebClient and its Socket Mode endpoint through slack_sdk's own
SocketModeClient: if the fakes were wrong, these libraries would say so
before bot-bridge's tests trusted them.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import requests
import telegram
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse
from telegram.error import BadRequest, Conflict

from tests.platforms import fixtures, slack
from tests.platforms import telegram as tg
from tests.processes import wait_for

fake_slack, fake_telegram = fixtures.fake_slack, fixtures.fake_telegram


def ptb_bot(fake: tg.FakeTelegram) -> telegram.Bot:
    return telegram.Bot(fake.token, base_url=fake.base_url + "/bot", base_file_url=fake.base_url + "/file/bot")


# -- Telegram ------------------------------------------------------------------------


def test_get_updates_waits_for_an_update_and_keeps_it_until_the_offset_confirms_it(fake_telegram):
    first, second = tg.text_update("/start"), tg.text_update("/help")

    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            empty = await bot.get_updates(timeout=1)
            threading.Timer(0.3, fake_telegram.push_update, (first,)).start()
            arrived = await bot.get_updates(timeout=10)
            again = await bot.get_updates(timeout=0)  # not confirmed yet: handed out again
            fake_telegram.push_update(second)
            after = await bot.get_updates(offset=first["update_id"] + 1, timeout=0)
            return empty, arrived, again, after

    empty, arrived, again, after = asyncio.run(scenario())

    assert empty == () and [u.update_id for u in arrived] == [u.update_id for u in again] == [first["update_id"]]
    assert [u.update_id for u in after] == [second["update_id"]] and fake_telegram.updates == [second]
    waited, pushed = [call["answered_at"] - call["received_at"] for call in fake_telegram.calls("getUpdates")[:2]]
    assert waited >= 1.0, "an empty long poll waits its timeout"
    assert 0.2 < pushed < 5, "a long poll answers as soon as an update arrives"


def test_get_updates_is_refused_while_a_webhook_is_set_and_when_another_poll_cuts_in(fake_telegram):
    fake_telegram.push_update(tg.text_update("/start"))

    async def scenario():
        async with ptb_bot(fake_telegram) as bot, ptb_bot(fake_telegram) as other:
            await bot.set_webhook("https://bot.example.com/webhooks/telegram")
            with pytest.raises(Conflict, match="webhook is active"):
                await bot.get_updates()
            assert (await bot.get_webhook_info()).pending_update_count == 1
            await bot.delete_webhook(drop_pending_updates=False)
            fake_telegram.updates.clear()
            waiting = asyncio.create_task(bot.get_updates(timeout=10))
            await asyncio.sleep(0.5)
            await other.get_updates(timeout=0)
            with pytest.raises(Conflict, match="terminated by other getUpdates"):
                await waiting

    asyncio.run(scenario())
    assert fake_telegram.poll_conflicts == 1


def test_delete_webhook_drops_pending_updates_only_when_asked(fake_telegram):
    for drop in (False, True):
        fake_telegram.push_update(tg.text_update("/start"))
        fake_telegram.webhook = {"url": "https://bot.example.com/hook", "max_connections": 40, "allowed_updates": None}
        requests.post(f"{fake_telegram.base_url}/bot{fake_telegram.token}/deleteWebhook",
                      json={"drop_pending_updates": drop}, timeout=5)
        assert len(fake_telegram.updates) == (0 if drop else 1)


def test_set_message_reaction_takes_one_allowed_emoji(fake_telegram):
    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            assert await bot.set_message_reaction(-1001234567890, 17, "😡")
            with pytest.raises(BadRequest, match="(?i)reaction_invalid"):
                await bot.set_message_reaction(-1001234567890, 17, "😠")  # not among the bots' emoji
            with pytest.raises(BadRequest, match="(?i)reactions_too_many"):
                await bot.set_message_reaction(-1001234567890, 17, ["😡", "😢"])

    asyncio.run(scenario())
    assert [(r["chat_id"], r["message_id"], r["emoji"]) for r in fake_telegram.reactions] == [
        (-1001234567890, 17, "😡")]


# -- Slack -----------------------------------------------------------------------------


def test_reactions_add_checks_the_name_and_refuses_a_second_identical_one(fake_slack):
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.base_url + "/api/")
    assert client.reactions_add(channel=slack.DEFAULT_CHANNEL, timestamp="1712345678.000100", name="nauseated_face")
    for name, error in (("nauseated_face", "already_reacted"), ("not_an_emoji", "invalid_name")):
        with pytest.raises(SlackApiError) as refused:
            client.reactions_add(channel=slack.DEFAULT_CHANNEL, timestamp="1712345678.000100", name=name)
        assert refused.value.response["error"] == error
    assert fake_slack.reactions == [{"channel": slack.DEFAULT_CHANNEL, "timestamp": "1712345678.000100",
                                     "name": "nauseated_face"}]


def test_apps_connections_open_takes_only_the_app_level_token(fake_slack):
    bot = WebClient(token=fake_slack.bot_token, base_url=fake_slack.base_url + "/api/")
    with pytest.raises(SlackApiError) as refused:
        bot.apps_connections_open(app_token=fake_slack.bot_token)
    assert refused.value.response["error"] == "not_allowed_token_type"
    url = bot.apps_connections_open(app_token=fake_slack.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:") and "ticket=" in url


def test_slack_sdks_socket_mode_client_gets_hello_envelopes_retries_and_refreshes(fake_slack):
    """slack_sdk's own client: acknowledged envelopes are done, an unacknowledged one comes back as a retry."""
    endpoint = fake_slack.socket_mode
    endpoint.ack_timeout_s = 0.5
    seen, hellos = [], []
    client = SocketModeClient(fake_slack.app_token, ping_interval=1,
                              web_client=WebClient(base_url=fake_slack.base_url + "/api/"))

    def on_request(socket_client, request):
        seen.append((request.envelope_id, request.retry_attempt, request.payload["event_id"]))
        if request.payload["event_id"] != "EvIGNORED" or request.retry_attempt:
            socket_client.send_socket_mode_response(SocketModeResponse(request.envelope_id))

    client.socket_mode_request_listeners.append(on_request)
    client.message_listeners.append(lambda _client, message, _raw: hellos.append(message)
                                    if message.get("type") == "hello" else None)
    client.connect()
    try:
        endpoint.wait_for_connections(1)
        acked = endpoint.wait_for_ack(endpoint.send_event(slack.envelope({}, event_id="EvACKED")))
        ignored = endpoint.send_event(slack.envelope({}, event_id="EvIGNORED"))
        wait_for(lambda: len(seen) == 3, 10, "the retry of the unacknowledged envelope")
        endpoint.request_refresh(close_after_s=0.5)
        wait_for(lambda: endpoint.connections_opened == 2 and len(endpoint.connections) == 1, 10, "a new connection")
        after_refresh = endpoint.wait_for_ack(endpoint.send_event(slack.envelope({}, event_id="EvAFTER")))
    finally:
        client.close()

    assert acked.ack_delay_s < 3 and after_refresh.acked_at is not None
    assert endpoint.envelopes[ignored].acked_at is None
    assert [(attempt, event) for _, attempt, event in seen] == [
        (0, "EvACKED"), (0, "EvIGNORED"), (1, "EvIGNORED"), (0, "EvAFTER")]
    assert hellos and hellos[0]["num_connections"] == 1
    assert endpoint.protocol_errors == []


def test_a_socket_mode_ticket_opens_one_connection(fake_slack):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = WebClient(base_url=fake_slack.base_url + "/api/").apps_connections_open(app_token=fake_slack.app_token)["url"]
    with connect(url) as first:
        assert '"hello"' in first.recv(timeout=5)
        with pytest.raises(InvalidStatus, match="401"):
            connect(url)
        started = time.monotonic()
        fake_slack.socket_mode.drop_connections()
        with pytest.raises(Exception):
            first.recv(timeout=5)
        assert time.monotonic() - started < 5
