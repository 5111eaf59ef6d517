"""Slack without a public URL: Socket Mode against the fake's real WebSocket endpoint on 127.0.0.1.

The bot has a bot token and an app-level token, no signing secret; the
fake hands out ``ws://`` URLs from apps.connections.open and sends Events
API envelopes over them, as Slack does. Acknowledgements must come within
3 s, and only once the event is recorded.
"""

from __future__ import annotations

import logging
import sqlite3

import pytest

import adapters.slack as slack_adapter
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import running_bot, without_webhooks
from tests.platforms import fixtures, slack
from tests.processes import wait_for

fake_slack = fixtures.fake_slack


@pytest.fixture(scope="module")
def clip_m4a():
    return encode(speech_clip(2), 16000, "m4a_aac_moov_end")


@pytest.fixture
def socket_bot(tmp_path, tiny_model_dir, tiny_model, fake_slack, monkeypatch):
    monkeypatch.setattr(slack_adapter, "PING_INTERVAL_S", 1.0)  # a dead connection is noticed in seconds
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={},
                     environ=without_webhooks(slack_fake=fake_slack)) as bot:
        fake_slack.socket_mode.wait_for_connections(1)
        yield bot


def clip_event(fake, clip: bytes, **fields) -> dict:
    return slack.envelope(slack.voice_clip_message(fake.add_file(clip)), **fields)


def test_a_voice_clip_over_socket_mode_is_acknowledged_within_3_s_and_answered_in_its_thread(
        socket_bot, fake_slack, clip_m4a):
    payload = clip_event(fake_slack, clip_m4a)

    envelope = fake_slack.socket_mode.wait_for_ack(fake_slack.socket_mode.send_event(payload))

    [sent] = fake_slack.wait_for_messages(1, timeout=30)
    [note] = socket_bot.wait_until_finished()
    assert envelope.ack_delay_s < 3.0
    assert (sent["params"]["channel"], sent["params"]["thread_ts"]) == (payload["event"]["channel"],
                                                                         payload["event"]["ts"])
    assert note.status == NoteStatus.REPLIED and note.delivery_id.startswith(payload["event_id"])
    assert fake_slack.socket_mode.protocol_errors == []
    assert socket_bot.client.post("/webhooks/slack/events", data=b"{}").status_code == 404, "no Request URL"


def test_an_envelope_is_acknowledged_only_once_its_event_is_recorded(socket_bot, fake_slack, clip_m4a, tmp_path):
    database = sqlite3.connect(tmp_path / "bot-bridge.db", isolation_level=None)
    database.execute("BEGIN IMMEDIATE")  # the database takes no write until this ends
    try:
        envelope_id = fake_slack.socket_mode.send_event(clip_event(fake_slack, clip_m4a))
        with pytest.raises(AssertionError, match="not acknowledged"):
            fake_slack.socket_mode.wait_for_ack(envelope_id, timeout=1.5)
        assert socket_bot.notes() == []
    finally:
        database.execute("ROLLBACK")
        database.close()

    envelope = fake_slack.socket_mode.wait_for_ack(envelope_id)
    assert len(socket_bot.notes()) == 1 and envelope.retry_attempt == 0
    fake_slack.wait_for_messages(1, timeout=30)


def test_the_same_event_in_two_envelopes_makes_one_note_and_one_reply(socket_bot, fake_slack, clip_m4a):
    payload = clip_event(fake_slack, clip_m4a)

    for _ in range(2):  # a retry, or the same event on another connection
        fake_slack.socket_mode.wait_for_ack(fake_slack.socket_mode.send_event(payload))

    fake_slack.wait_for_messages(1, timeout=30)
    assert len(socket_bot.wait_until_finished()) == 1
    assert len(fake_slack.calls("chat.postMessage")) == 1


def test_the_connection_comes_back_after_a_disconnect_message_and_after_a_dropped_connection(
        socket_bot, fake_slack, clip_m4a):
    endpoint = fake_slack.socket_mode

    endpoint.request_refresh()
    wait_for(lambda: endpoint.connections_opened == 2 and len(endpoint.connections) == 1, 15, "a fresh connection")
    endpoint.wait_for_ack(endpoint.send_event(clip_event(fake_slack, clip_m4a)))
    endpoint.drop_connections()
    wait_for(lambda: endpoint.connections_opened == 3 and len(endpoint.connections) == 1, 30, "a new connection")
    endpoint.wait_for_ack(endpoint.send_event(clip_event(fake_slack, clip_m4a)))

    fake_slack.wait_for_messages(2, timeout=30)
    assert len(socket_bot.wait_until_finished(2)) == 2
    assert len(fake_slack.sent_messages) == 2 and endpoint.protocol_errors == []


def test_a_wrong_app_token_is_named_in_the_log_and_tried_again(tmp_path, tiny_model_dir, tiny_model, fake_slack,
                                                               caplog):
    caplog.set_level(logging.ERROR, logger="bot_bridge.acting.listeners")
    environ = {**without_webhooks(slack_fake=fake_slack), "SLACK_APP_TOKEN": "xapp-1-wrong-token-0000"}

    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={}, environ=environ):
        wait_for(lambda: len(fake_slack.calls("apps.connections.open")) >= 2, 10, "a second try")

    assert "slack: cannot open its connection: slack apps.connections.open: invalid_auth" in caplog.text
    assert "xapp-1-wrong-token-0000" not in caplog.text
    assert fake_slack.socket_mode.connections_opened == 0
