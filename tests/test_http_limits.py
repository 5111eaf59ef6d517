"""The HTTP front: slow clients hold no thread, oversized webhooks are refused unread, refusals keep
connections usable.

Against a real ``bot-bridge serve`` on loopback, as clients on the internet
would meet it: raw sockets that send a request a byte at a time (bounded in
number and time), requests with huge declared bodies, and a keep-alive client
(``requests.Session``) reusing its connection after a refusal. These check
that answers come back and connections end; how fast is measured by
``bench/bench_slow_clients.py``.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import requests
import yaml

from tests.console_helpers import csrf_from
from tests.platforms import telegram as tg
from tests.processes import free_port, serve
from tests.slow_clients import SlowClients

PASSWORD = "console-password-for-tests"
API_TOKEN = "api-token-for-tests"
SLOW_CLIENTS = 200
BODY_TIMEOUT_S = 3.0
HEADER_TIMEOUT_S = 5.0  # bot_bridge/server.py KEEPALIVE_S: also how long headers may take to arrive
WEBHOOK_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """``bot-bridge serve`` (role all) with Telegram on (its API on a dead loopback port), a console password
    and an API token."""
    root = tmp_path_factory.mktemp("http-limits")
    port = free_port()
    config = root / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(root / "data"),
                                      "model": {"name": str(tiny_model_dir), "threads": 1},
                                      "server": {"body_timeout_s": BODY_TIMEOUT_S}}))
    environ = {**os.environ, "BOT_BRIDGE_CONFIG": str(config), "BOT_BRIDGE_PORT": str(port),
               "BOT_BRIDGE_CONSOLE_PASSWORD": PASSWORD, "BOT_BRIDGE_API_TOKEN": API_TOKEN,
               "TELEGRAM_BOT_TOKEN": "7000000001:AAFtest", "TELEGRAM_WEBHOOK_SECRET": tg.DEFAULT_SECRET_TOKEN,
               "TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}"}
    process = serve(environ, port, root / "serve.log")
    yield f"http://127.0.0.1:{port}", port
    process.terminate()
    process.wait(60)


def webhook(update_id: int) -> tg.InboundRequest:
    return tg.webhook_request({"update_id": update_id, "message": {
        "message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "/start"}})


def test_slow_clients_hold_no_thread_and_are_dropped_in_bounded_time(server):
    url, port = server
    slow = SlowClients(port, SLOW_CLIENTS)
    try:
        time.sleep(1.0)  # every slow connection has started its request  # noqa: sleep is the load, not a wait
        health = requests.get(f"{url}/healthz", timeout=5)
        answer = webhook(1).send(f"{url}/webhooks/telegram", timeout=5)
        assert (health.status_code, answer.status_code) == (200, 200)

        dropped = slow.wait_until_all_dropped(timeout=HEADER_TIMEOUT_S + BODY_TIMEOUT_S + 20)
    finally:
        slow.close()

    assert sum(dropped.values()) == SLOW_CLIENTS
    assert dropped.get("408") == SLOW_CLIENTS // 2, dropped  # those whose body was late; the others: closed


@pytest.mark.parametrize("path", ["telegram", "slack/events", "slack/interactions", "wecom", "wecom_kf", "feishu",
                                  "dingtalk", "whatsapp"])
def test_a_webhook_body_over_the_limit_is_refused_before_it_is_read(server, path):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /webhooks/{path} HTTP/1.1\r\nHost: x\r\n".encode()
                     + b"Content-Type: application/json\r\n"
                     b"Content-Length: 25000000\r\n\r\n" + b"{" * 1000)  # the other 24.99 MB never come

        answer = sock.recv(65536)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()


def test_a_chunked_webhook_body_is_cut_off_at_the_limit(server):
    url, _ = server

    def chunks():
        for _ in range(2 * WEBHOOK_LIMIT // 65536 + 1):
            yield b"{" * 65536

    answer = requests.post(f"{url}/webhooks/telegram", data=chunks(), timeout=10,
                           headers={"X-Telegram-Bot-Api-Secret-Token": tg.DEFAULT_SECRET_TOKEN})

    assert answer.status_code == 413 and answer.json()["code"] == "too_large"


@pytest.mark.parametrize("refused", ["signed-out /analyse", "CSRF", "no API token", "webhook over the limit"])
def test_a_request_refused_before_its_body_was_read_leaves_the_connection_usable(server, refused):
    url, _ = server
    body = b"x" * 2_000_000
    session = requests.Session()
    if refused == "CSRF":
        login = session.get(f"{url}/login", timeout=10).text
        signed_in = session.post(f"{url}/login", timeout=10, allow_redirects=False,
                                 data={"password": PASSWORD, "csrf_token": csrf_from(login)})
        assert signed_in.status_code == 302
        status = session.post(f"{url}/analyse", files={"file": ("a.wav", body)}, timeout=10,
                              headers={"X-CSRF-Token": "stale"}).status_code
    elif refused == "signed-out /analyse":
        status = session.post(f"{url}/analyse", files={"file": ("a.wav", body)}, timeout=10).status_code
    elif refused == "no API token":
        status = session.post(f"{url}/api/predict", files={"file": ("a.wav", body)}, timeout=10).status_code
    else:
        status = session.post(f"{url}/webhooks/telegram", data=body, timeout=10).status_code

    after = [session.get(f"{url}/healthz", timeout=5).status_code for _ in range(3)]

    assert status == {"signed-out /analyse": 401, "CSRF": 403, "no API token": 401, "webhook over the limit": 413}[refused]
    assert after == [200, 200, 200]
