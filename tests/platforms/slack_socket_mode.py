"""Slack's Socket Mode side, on a real WebSocket server on 127.0.0.1 (the ``websockets`` library).

``apps.connections.open`` on the fake Slack hands out
``ws://127.0.0.1:<port>/link/?ticket=...``; each ticket opens one
connection (a reused or unknown one is refused with HTTP 401 before the
upgrade). As Slack does (docs.slack.dev, "Using Socket Mode"):

* a new connection first gets ``hello`` (``num_connections``, ``debug_info``);
* ``send_event(payload)`` wraps an Events API payload in an ``events_api``
  envelope and gives it to ONE open connection (round robin: no fan-out);
  ``send_interaction(payload)`` does the same with a button press
  (``interactive``, which Slack is not known to send again);
* each envelope must be acknowledged with ``{"envelope_id": ...}``; one not
  acknowledged within ``ack_timeout_s`` (3 s) is sent again as a new envelope
  with the same payload (same ``event_id``), ``retry_attempt`` counting up,
  at most ``max_retries`` times;
* ``request_refresh()`` sends ``disconnect`` (``refresh_requested``) and
  closes the connections a moment later; ``drop_connections()`` cuts them
  without a close frame (a dead network); more than ten connections get
  ``disconnect`` ``too_many_websockets``.

Every envelope is in ``envelopes`` with its send and acknowledgement times;
anything a client sends that Slack would not understand is in
``protocol_errors`` (tests assert it stays empty).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

MAX_CONNECTIONS = 10


@dataclass
class Envelope:
    envelope_id: str
    payload: dict
    connection: int
    retry_attempt: int
    sent_at: float
    acked_at: float | None = None

    @property
    def ack_delay_s(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class _Connection:
    number: int
    websocket: ServerConnection
    envelopes: list[str] = field(default_factory=list)


class SocketModeEndpoint:
    """The WebSocket side of one fake Slack app. ``changed`` is the fake's condition (its lock and waits)."""

    def __init__(self, changed: threading.Condition, app_id: str, *, ack_timeout_s: float = 3.0,
                 max_retries: int = 3) -> None:
        self.changed = changed
        self.app_id = app_id
        self.ack_timeout_s = ack_timeout_s
        self.max_retries = max_retries
        self.envelopes: dict[str, Envelope] = {}
        self.connections: list[_Connection] = []
        self.connections_opened = 0
        self.protocol_errors: list[str] = []
        self._tickets: set[str] = set()
        self._numbers = itertools.count(1)
        self._turn = itertools.count()
        self._timers: list[threading.Timer] = []
        self._server: Server | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0, process_request=self._check_ticket, compression=None)
        threading.Thread(target=self._server.serve_forever, name="FakeSlack-socket-mode", daemon=True).start()

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def issue_url(self) -> str:
        """What ``apps.connections.open`` answers: a URL with a fresh one-time ticket."""
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={self.app_id}"

    # -- what tests do -------------------------------------------------------------

    def send_event(self, payload: dict, timeout: float = 10.0) -> str:
        """Hand an Events API payload to one open connection (waiting for one); its envelope id."""
        return self._send(payload, 0, timeout)

    def send_interaction(self, payload: dict, timeout: float = 10.0) -> str:
        """Hand an interactivity payload (``block_actions``) to one open connection; its envelope id."""
        return self._send(payload, 0, timeout, kind="interactive")

    def request_refresh(self, reason: str = "refresh_requested", close_after_s: float = 1.0) -> None:
        """``disconnect`` to every open connection, then close them (Slack warns ~10 s before)."""
        with self.changed:
            leaving = list(self.connections)
        for connection in leaving:
            self._say(connection, {"type": "disconnect", "reason": reason,
                                   "debug_info": {"host": "applink-fake"}})
        self._later(close_after_s, lambda: [c.websocket.close() for c in leaving])

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

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> list[_Connection]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.connections) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.connections)} Socket Mode connection(s) after {timeout} s, "
                                         f"not {count}")
                self.changed.wait(left)
            return list(self.connections)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> Envelope:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.envelopes[envelope_id].acked_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"envelope {envelope_id} not acknowledged within {timeout} s")
                self.changed.wait(left)
            return self.envelopes[envelope_id]

    # -- the protocol ----------------------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request) -> Any:
        ticket = parse_qs(urlsplit(request.path).query).get("ticket", [""])[0]
        with self.changed:
            if ticket not in self._tickets:
                return connection.respond(401, "invalid or used ticket\n")
            self._tickets.discard(ticket)
        return None

    def _session(self, websocket: ServerConnection) -> None:
        with self.changed:
            connection = _Connection(next(self._numbers), websocket)
            self.connections.append(connection)
            self.connections_opened += 1
            count = len(self.connections)
            self.changed.notify_all()
        try:
            if count > MAX_CONNECTIONS:
                self._say(connection, {"type": "disconnect", "reason": "too_many_websockets",
                                       "debug_info": {"host": "applink-fake"}})
                websocket.close()
                return
            debug_info = {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060}
            self._say(connection, {"type": "hello", "num_connections": count,
                                   "connection_info": {"app_id": self.app_id}, "debug_info": debug_info})
            for frame in websocket:
                self._received(frame)
        except ConnectionClosed:
            pass
        finally:
            with self.changed:
                self.connections.remove(connection)
                self.changed.notify_all()

    def _received(self, frame: str | bytes) -> None:
        try:
            answer = json.loads(frame)
            envelope = self.envelopes[answer["envelope_id"]]
        except (ValueError, KeyError, TypeError):
            with self.changed:
                self.protocol_errors.append(f"not an acknowledgement of a known envelope: {frame!r}")
            return
        with self.changed:
            if envelope.acked_at is not None:
                self.protocol_errors.append(f"envelope {envelope.envelope_id} acknowledged twice")
            else:
                envelope.acked_at = time.monotonic()
            self.changed.notify_all()

    def _send(self, payload: dict, retry_attempt: int, timeout: float, kind: str = "events_api") -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no Socket Mode connection to send an event to within {timeout} s")
                self.changed.wait(left)
            connection = self.connections[next(self._turn) % len(self.connections)]
            envelope = Envelope(str(uuid.uuid4()), payload, connection.number, retry_attempt, time.monotonic())
            self.envelopes[envelope.envelope_id] = envelope
        self._say(connection, {"envelope_id": envelope.envelope_id, "type": kind, "payload": payload,
                               "accepts_response_payload": False, "retry_attempt": retry_attempt,
                               "retry_reason": "timeout" if retry_attempt else ""})
        if kind == "events_api" and retry_attempt < self.max_retries:
            self._later(self.ack_timeout_s, lambda: self._retry_unless_acked(envelope))
        return envelope.envelope_id

    def _retry_unless_acked(self, envelope: Envelope) -> None:
        if envelope.acked_at is None:
            self._send(envelope.payload, envelope.retry_attempt + 1, timeout=30.0)

    def _say(self, connection: _Connection, message: dict) -> None:
        try:
            connection.websocket.send(json.dumps(message))
        except (ConnectionClosed, OSError):
            pass  # gone meanwhile: an envelope sent into it is retried like any unacknowledged one

    def _later(self, seconds: float, action) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
