"""Clients on a bad line, or pretending to be: requests sent a byte at a time, for the tests and the benchmark.

Bounded in number and time, and only towards a server on loopback that the
caller started (``tests/test_http_limits.py``, ``bench/bench_slow_clients.py``).
"""

from __future__ import annotations

import socket
import threading
import time


class SlowClients:
    """``count`` connections that each send a request one byte every ``pace_s`` seconds: half dribble
    their headers, half send their headers at once, promising a body, and dribble that. Stops by
    ``deadline_s``."""

    def __init__(self, port: int, count: int, pace_s: float = 0.5, deadline_s: float = 40.0) -> None:
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        self.pending = {sock: self._request(number) for number, sock in enumerate(self.sockets)}
        for sock, request in self.pending.items():
            head, separator, body = request.partition(b"\r\n\r\n")
            if separator:
                sock.sendall(head + separator)
                self.pending[sock] = body
        self.closed_at: dict[socket.socket, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._pace_s, self._deadline = pace_s, self.started + deadline_s
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    @staticmethod
    def _request(number: int) -> bytes:
        if number % 2:
            return b"POST /webhooks/telegram HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000
        head = b"POST /webhooks/telegram HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        return head + b"Content-Length: 50000\r\n\r\n" + b"{" * 50000

    def _dribble(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline and len(self.closed_at) < len(self.sockets):
            for sock in self.sockets:
                if sock in self.closed_at:
                    continue
                try:
                    sock.send(self.pending[sock][:1])
                    self.pending[sock] = self.pending[sock][1:]
                except OSError:
                    self.closed_at[sock] = time.monotonic() - self.started
            self._stop.wait(self._pace_s)

    def wait_until_all_dropped(self, timeout: float) -> dict:
        """Wait until the server has closed every connection (what it answered, if anything, by status)."""
        answers: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        for sock in self.sockets:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
                while data and b"\r\n" not in data:
                    data += sock.recv(65536)
            except ConnectionError:
                data = b""
            except socket.timeout:
                raise AssertionError(f"a slow connection was still open after {timeout} s") from None
            status = data.split(b" ", 2)[1].decode() if data else "closed"
            answers[status] = answers.get(status, 0) + 1
        return answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()
