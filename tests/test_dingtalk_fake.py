"""The loopback DingTalk checked with DingTalk's own ``dingtalk-stream`` SDK, as its users run it (not bot-bridge's
adapter): the SDK opens the connection with its own request, reads the fake's frames, acknowledges them, parses
a robot message, fetches a download URL and replies through the session webhook. If the fake were wrong, the
SDK would say so before bot-bridge's tests trusted it.
"""

from __future__ import annotations

import asyncio
import threading

import dingtalk_stream
import pytest
import requests
from dingtalk_stream import AckMessage, ChatbotHandler, ChatbotMessage, Credential, DingTalkStreamClient

from adapters.dingtalk import _run_until_stopped
from tests.platforms import dingtalk
from tests.processes import wait_for

fake_dingtalk = dingtalk.fake_dingtalk


class _Heard(ChatbotHandler):
    """What the SDK made of each robot message: its parsed fields and the download URL of its audio."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[ChatbotMessage, str]] = []

    async def process(self, callback):
        message = ChatbotMessage.from_dict(callback.data)
        url = self.get_image_download_url(message.extensions["content"]["downloadCode"])
        self.reply_text("收到 / got it", message)
        self.messages.append((message, url))
        return AckMessage.STATUS_OK, "OK"


@pytest.fixture
def sdk(fake_dingtalk, monkeypatch):
    """The SDK's client on the fake (its endpoint is a module constant: pointed at the fake, nothing replaced)."""
    monkeypatch.setattr(DingTalkStreamClient, "OPEN_CONNECTION_API",
                        f"{fake_dingtalk.base_url}/v1.0/gateway/connections/open")
    monkeypatch.setattr(dingtalk_stream.stream, "DINGTALK_OPENAPI_ENDPOINT", fake_dingtalk.base_url)
    monkeypatch.setattr(dingtalk_stream.chatbot, "DINGTALK_OPENAPI_ENDPOINT", fake_dingtalk.base_url)
    client = DingTalkStreamClient(Credential(fake_dingtalk.client_id, fake_dingtalk.client_secret))
    heard = _Heard()
    client.register_callback_handler(ChatbotMessage.TOPIC, heard)
    stopping = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_run_until_stopped(client.start(), stopping)), daemon=True)
    thread.start()
    yield heard
    stopping.set()
    thread.join(10)


def test_the_sdk_connects_acknowledges_parses_downloads_and_replies(sdk, fake_dingtalk):
    gateway = fake_dingtalk.stream
    gateway.wait_for_connections(1)
    message = dingtalk.voice_message(fake_dingtalk.add_file(b"#!AMR\n-audio-"), fake=fake_dingtalk,
                                     duration_ms=4200)

    ping = gateway.wait_for_ack(gateway.ping())
    frame = gateway.wait_for_ack(gateway.send_callback(message))

    [(parsed, url)] = sdk.messages
    assert (parsed.message_id, parsed.message_type, parsed.sender_staff_id) == (message["msgId"], "audio",
                                                                                 dingtalk.DEFAULT_STAFF_ID)
    assert parsed.extensions["content"]["duration"] == 4200
    assert requests.get(url, timeout=5).content == b"#!AMR\n-audio-"
    assert frame.ack["code"] == 200 and ping.ack["code"] == 200
    [reply] = fake_dingtalk.wait_for_messages(1)
    assert (reply["method"], reply["text"]) == ("robot/sendBySession", "收到 / got it")
    assert gateway.protocol_errors == [] and fake_dingtalk.server_errors == []


def test_the_gateway_refuses_a_wrong_secret_and_a_ticket_used_twice(fake_dingtalk):
    opened = requests.post(f"{fake_dingtalk.base_url}/v1.0/gateway/connections/open", timeout=5,
                           json={"clientId": fake_dingtalk.client_id, "clientSecret": "wrong",
                                 "subscriptions": [{"type": "CALLBACK", "topic": dingtalk.CALLBACK_TOPIC}]})
    assert (opened.status_code, opened.json()["code"]) == (401, "Unauthorized")

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    issued = fake_dingtalk.stream.issue()
    with connect(f"{issued['endpoint']}?ticket={issued['ticket']}"):
        wait_for(lambda: fake_dingtalk.stream.connections_opened == 1, 5, "the connection")
        with pytest.raises(InvalidStatus):
            connect(f"{issued['endpoint']}?ticket={issued['ticket']}")
