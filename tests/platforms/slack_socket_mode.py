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

import json
import time
import uuid
from dataclasses import dataclass

from .gateway import Connection, TicketedGateway

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


class SocketModeEndpoint(TicketedGateway):
    """The WebSocket side of one fake Slack app. ``changed`` is the fake's condition (its lock and waits)."""

    kind = "Socket Mode"

    def __init__(self, changed, app_id: str, *, ack_timeout_s: float = 3.0, max_retries: int = 3) -> None:
        super().__init__(changed, app_id)
        self.ack_timeout_s = ack_timeout_s
        self.max_retries = max_retries
        self.envelopes: dict[str, Envelope] = {}

    def issue_url(self) -> str:
        """What ``apps.connections.open`` answers: a URL with a fresh one-time ticket."""
        ticket, port = self.new_ticket()
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
        self.close_later(leaving, close_after_s)

    # -- the protocol ----------------------------------------------------------------

    def _sent(self) -> dict[str, Envelope]:
        return self.envelopes

    def _opened(self, connection: Connection, count: int) -> bool:
        if count > MAX_CONNECTIONS:
            self._say(connection, {"type": "disconnect", "reason": "too_many_websockets",
                                   "debug_info": {"host": "applink-fake"}})
            return False
        debug_info = {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060}
        self._say(connection, {"type": "hello", "num_connections": count,
                               "connection_info": {"app_id": self.app_id}, "debug_info": debug_info})
        return True

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
        with self.changed:
            connection = self._next_connection(timeout)
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
