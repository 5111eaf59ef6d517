"""What the fakes of platforms' long connections share: a real WebSocket server on 127.0.0.1 (the ``websockets``
library) that opens a connection only with a one-time ticket and hands each message to one open connection.

Slack's Socket Mode (``slack_socket_mode.py``) and DingTalk's Stream gateway
(``dingtalk.py``) work alike: the platform's HTTP API hands out a URL with a
ticket, the client opens a WebSocket with it (a reused or unknown ticket is
refused with HTTP 401 before the upgrade), and the platform gives each
message to ONE open connection (round robin here) and waits for its
acknowledgement. A subclass holds its platform's frames: what it sends
(``_send`` after ``_next_connection``), what a new connection is told
(``_opened``), and how acknowledgements read (``_received``), keeping what it
sent by id in ``_sent()`` with an ``acked_at`` each.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve


@dataclass
class Connection:
    number: int
    websocket: ServerConnection


class TicketedGateway:
    """One app's long-connection side. ``changed`` is the fake's condition (its lock and waits)."""

    #: What the platform calls a connection, in failures ("Socket Mode", "Stream").
    kind = "long"

    def __init__(self, changed: threading.Condition, app_id: str) -> None:
        self.changed = changed
        self.app_id = app_id
        self.connections: list[Connection] = []
        self.connections_opened = 0
        self.protocol_errors: list[str] = []
        self._tickets: set[str] = set()
        self._numbers = itertools.count(1)
        self._turn = itertools.count()
        self._timers: list[threading.Timer] = []
        self._server: Server | None = None

    def start(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0, process_request=self._check_ticket, compression=None)
        threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True).start()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def new_ticket(self) -> tuple[str, int]:
        """A fresh one-time ticket, and the port the server listens on."""
        ticket = secrets.token_urlsafe(16)
        with self.changed:
            self._tickets.add(ticket)
        return ticket, self._server.socket.getsockname()[1]

    # -- what tests do -------------------------------------------------------------

    def drop_connections(self) -> None:
        """Cut every open connection without a close frame, as a dead network or a reset does."""
        with self.changed:
            dropped = list(self.connections)
        for connection in dropped:
            # shutdown, not close alone: the server's reading thread is blocked on this socket, and a close
            # from another thread neither wakes it nor ends the TCP connection until that read returns.
            with contextlib.suppress(OSError):
                connection.websocket.socket.shutdown(socket.SHUT_RDWR)
            connection.websocket.socket.close()

    def close_later(self, connections: list[Connection], seconds: float) -> None:
        """Close ``connections`` (with a close frame) ``seconds`` from now, as after a ``disconnect``."""
        self._later(seconds, lambda: [connection.websocket.close() for connection in connections])

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> list[Connection]:
        self._wait(lambda: len(self.connections) >= count, timeout,
                   lambda: f"{len(self.connections)} {self.kind} connection(s) after {timeout} s, not {count}")
        return list(self.connections)

    def wait_for_ack(self, sent_id: str, timeout: float = 10.0) -> Any:
        """What was sent as ``sent_id``, once acknowledged."""
        self._wait(lambda: self._sent()[sent_id].acked_at is not None, timeout,
                   lambda: f"{sent_id} not acknowledged within {timeout} s")
        return self._sent()[sent_id]

    # -- for subclasses ---------------------------------------------------------------

    def _sent(self) -> dict[str, Any]:
        raise NotImplementedError

    def _opened(self, connection: Connection, count: int) -> bool:
        """A new connection (``count`` open with it): tell it what the platform says first; False closes it."""
        return True

    def _received(self, raw: str | bytes) -> None:
        raise NotImplementedError

    def _next_connection(self, timeout: float) -> Connection:
        """The open connection whose turn it is (waiting ``timeout`` for one); call holding ``changed``."""
        self._wait(lambda: self.connections, timeout,
                   lambda: f"no {self.kind} connection to send to within {timeout} s")
        return self.connections[next(self._turn) % len(self.connections)]

    def _say(self, connection: Connection, message: dict) -> None:
        try:
            connection.websocket.send(json.dumps(message, ensure_ascii=False))
        except (ConnectionClosed, OSError):
            pass  # gone meanwhile: what the platform does about it is the subclass's (retry or not)

    def _later(self, seconds: float, action) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # -- the server -------------------------------------------------------------------

    def _wait(self, done, timeout: float, failure) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(failure())
                self.changed.wait(left)

    def _check_ticket(self, connection: ServerConnection, request) -> Any:
        ticket = parse_qs(urlsplit(request.path).query).get("ticket", [""])[0]
        with self.changed:
            if ticket not in self._tickets:
                return connection.respond(401, "invalid or used ticket\n")
            self._tickets.discard(ticket)
        return None

    def _session(self, websocket: ServerConnection) -> None:
        with self.changed:
            connection = Connection(next(self._numbers), websocket)
            self.connections.append(connection)
            self.connections_opened += 1
            count = len(self.connections)
            self.changed.notify_all()
        try:
            if not self._opened(connection, count):
                websocket.close()
                return
            for raw in websocket:
                self._received(raw)
        except ConnectionClosed:
            pass
        finally:
            with self.changed:
                self.connections.remove(connection)
                self.changed.notify_all()
