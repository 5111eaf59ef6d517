"""Outbound HTTP: what is retried, how long it waits, and that no token leaks into errors or logs."""

from __future__ import annotations

import logging
import socket

import pytest

from adapters.telegram import _check as telegram_check
from bot_bridge.chat.outbound import MaybeDelivered, OutboundError, OutboundHttp, TooLarge
from tests.platforms import fixtures

fake_telegram = fixtures.fake_telegram


@pytest.fixture
def waits():
    return []


@pytest.fixture
def http(waits):
    return OutboundHttp(attempts=3, backoff_s=0.5, read_timeout_s=0.5, sleep=waits.append)


def method_url(fake, method="getMe"):
    return f"{fake.base_url}/bot{fake.token}/{method}"


def test_server_errors_are_retried_with_growing_backoff(http, waits, fake_telegram):
    fake_telegram.fail_next("getMe", 502, times=2)

    me = http.call("POST", method_url(fake_telegram), call="telegram getMe", check=telegram_check)

    assert me["is_bot"] is True
    assert len(waits) == 2 and 0.5 <= waits[0] < waits[1] <= 1.25


def test_a_timeout_is_retried(http, fake_telegram):
    fake_telegram.delay_next("getMe", 2)

    http.call("POST", method_url(fake_telegram), call="telegram getMe", check=telegram_check)

    assert len(fake_telegram.calls("getMe")) == 2


def test_a_client_error_is_final_at_once_and_keeps_the_platforms_words(http, fake_telegram):
    with pytest.raises(OutboundError) as raised:
        http.call("POST", method_url(fake_telegram, "getFile"), call="telegram getFile", check=telegram_check,
                  json={"file_id": "nope"})

    assert not raised.value.retryable
    assert str(raised.value) == "telegram getFile: Bad Request: invalid file_id"
    assert len(fake_telegram.calls("getFile")) == 1


def test_a_long_rate_limit_is_handed_back_to_the_queue_instead_of_blocking(http, waits, fake_telegram):
    fake_telegram.rate_limit_next("getMe", retry_after=600)

    with pytest.raises(OutboundError) as raised:
        http.call("POST", method_url(fake_telegram), call="telegram getMe", check=telegram_check)

    assert (raised.value.retryable, raised.value.retry_after_s, waits) == (True, 600, [])


def test_downloads_stop_at_the_byte_limit(http, fake_telegram):
    file_id = fake_telegram.add_file(bytes(300_000))
    path = fake_telegram.files[file_id].file_path

    with pytest.raises(TooLarge):
        http.download(f"{fake_telegram.base_url}/file/bot{fake_telegram.token}/{path}", call="telegram file download",
                      max_bytes=100_000)


def test_tokens_in_urls_never_reach_errors_or_logs(http, caplog):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    token = "7000000001:AAsecret-token-in-the-path"

    with caplog.at_level(logging.DEBUG), pytest.raises(OutboundError) as raised:
        http.call("POST", f"http://127.0.0.1:{port}/bot{token}/sendMessage?access_token=also-secret",
                  call="telegram sendMessage")

    assert str(raised.value) == "telegram sendMessage: ConnectionError after 3 tries"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "secret" not in caplog.text


def test_a_message_whose_answer_times_out_is_not_sent_again(http, fake_telegram):
    """The platform may have shown it: a second try could show it twice."""
    fake_telegram.delay_next("sendMessage", 1.5)

    with pytest.raises(MaybeDelivered) as raised:
        http.call("POST", method_url(fake_telegram, "sendMessage"), call="telegram sendMessage", check=telegram_check,
                  delivers=True, json={"chat_id": 1, "text": "😠 Angry · 87%"})

    assert not raised.value.retryable
    fake_telegram.wait_for_messages(1, timeout=5)
    assert len(fake_telegram.calls("sendMessage")) == 1


def test_a_message_that_could_not_connect_is_tried_again(http, waits):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once closed: connections are refused

    with pytest.raises(OutboundError) as raised:
        http.call("POST", f"http://127.0.0.1:{port}/sendMessage", call="telegram sendMessage", delivers=True)

    assert not isinstance(raised.value, MaybeDelivered) and raised.value.retryable
    assert len(waits) == 2  # three tries: the request never left
