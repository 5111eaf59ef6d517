"""Slow clients and oversized webhooks against a real ``serve``: latency under load, memory after abuse.

    .venv/bin/python bench/bench_slow_clients.py [--worker-class gthread] [--slow 200]

Starts ``gunicorn -c config/gunicorn.conf.py wsgi:app`` (what ``bot-bridge
serve`` runs, role ``all``, a random-weight tiny model, a temporary data
directory) on loopback, then:

1. opens ``--slow`` connections that send a request one byte every 0.5 s
   (half their headers, half a promised body: ``tests/slow_clients.py``) and,
   while they are open, times ``GET /healthz`` and a Telegram webhook (a
   ``/start`` message) one after the other, each on a new connection, and
   prints p50/p99 (a request unanswered in 2 s counts as a timeout; five in
   a row end the round);
2. posts 16 unsigned webhooks declaring 25 MB bodies and prints the resident
   memory of the server's processes before and after.

``--worker-class gthread`` runs gunicorn's threaded worker that bot-bridge
used before (issue 10), for comparison. Targets (docs/operations.md):
webhook p99 < 200 ms and /healthz p99 < 100 ms with 200 slow connections open.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot_bridge.hearing.model_files import make_random_model  # noqa: E402
from tests.platforms import telegram as tg  # noqa: E402
from tests.processes import free_port, start, wait_until_answering  # noqa: E402
from tests.slow_clients import SlowClients  # noqa: E402

SAMPLES = 200
TIMEOUT_S = 2.0
OVERSIZED_POSTS = 16
DECLARED_BYTES = 25_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-class", default=None, help="gunicorn worker class (default: bot-bridge's own)")
    parser.add_argument("--slow", type=int, default=200, help="slow connections held open while timing")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        port = free_port()
        environ = {**os.environ, "BOT_BRIDGE_DATA_DIR": str(root / "data"), "BOT_BRIDGE_PORT": str(port),
                   "BOT_BRIDGE_MODEL": str(make_random_model("tiny", root / "model")), "BOT_BRIDGE_THREADS": "1",
                   "TELEGRAM_BOT_TOKEN": "7000000001:AAFbench", "TELEGRAM_WEBHOOK_SECRET": tg.DEFAULT_SECRET_TOKEN,
                   "TELEGRAM_API_BASE": f"http://127.0.0.1:{free_port()}"}
        command = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"]
        if options.worker_class:
            command += ["--worker-class", options.worker_class]
        log = root / "serve.log"
        server = start(command, environ, log)
        try:
            wait_until_answering(server, port, "/readyz", log, timeout=120)
            print(f"worker class: {options.worker_class or 'bot-bridge default'}; {options.slow} slow connections")
            under_slow_clients(port, options.slow)
            oversized_webhooks(port, server.pid)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(60)


def under_slow_clients(port: int, count: int) -> None:
    url = f"http://127.0.0.1:{port}"
    slow = SlowClients(port, count, deadline_s=120)
    try:
        time.sleep(1.0)  # every slow connection has begun its request
        report("GET /healthz", timed(lambda _n: requests.get(f"{url}/healthz", timeout=TIMEOUT_S)))
        report("POST /webhooks/telegram", timed(
            lambda n: webhook(n).send(f"{url}/webhooks/telegram", timeout=TIMEOUT_S)))
        try:
            dropped = slow.wait_until_all_dropped(timeout=180)
            print(f"slow connections: all {count} ended by the server {time.monotonic() - slow.started:.0f} s "
                  f"after they opened: {dropped} (header deadline 5 s, body deadline server.body_timeout_s)")
        except AssertionError as still_open:
            print(f"slow connections: {still_open}")
    finally:
        slow.close()


def timed(call) -> tuple[list[float], int]:
    latencies, timeouts, in_a_row = [], 0, 0
    for number in range(SAMPLES):
        started = time.perf_counter()
        try:
            answer = call(number)
            assert answer.status_code == 200, answer.status_code
            latencies.append(time.perf_counter() - started)
            in_a_row = 0
        except requests.RequestException:
            timeouts, in_a_row = timeouts + 1, in_a_row + 1
            if in_a_row == 5:
                break
    return latencies, timeouts


def report(what: str, outcome: tuple[list[float], int]) -> None:
    latencies, timeouts = outcome
    if len(latencies) < 2:
        print(f"{what}: {len(latencies)} answered, {timeouts} timed out (> {TIMEOUT_S} s)")
        return
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{what}: {len(latencies)} answered, {timeouts} timed out; "
          f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")


def webhook(update_id: int):
    return tg.webhook_request({"update_id": 900_000 + update_id, "message": {
        "message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "/start"}})


def oversized_webhooks(port: int, group: int) -> None:
    """Unsigned webhooks that declare 25 MB and send it: memory of the server's processes before and after."""
    before = resident_mb(group)
    chunk = b"{" * 1_000_000
    statuses = []
    for _ in range(OVERSIZED_POSTS):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /webhooks/telegram HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % DECLARED_BYTES)
            try:
                for _ in range(DECLARED_BYTES // len(chunk)):
                    sock.sendall(chunk)
            except OSError:
                pass  # refused before the body was read, and the connection closed
            statuses.append(sock.recv(64).split(b" ")[1].decode() if sock else "?")
    time.sleep(2)  # let the processes settle before reading their memory  # noqa: not a synchronisation
    print(f"{OVERSIZED_POSTS} unsigned 25 MB webhooks (answers {sorted(set(statuses))}): resident memory "
          f"{before:.0f} MB before, {resident_mb(group):.0f} MB after")


def resident_mb(group: int) -> float:
    """The resident memory of every process in the process group ``group``, in MB."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total / 1024


if __name__ == "__main__":
    main()
