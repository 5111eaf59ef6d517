"""How big a request body may be, and how long it may take to arrive, decided before the app reads it.

The HTTP server (``bot_bridge/http_worker.py``) buffers each request body
before the Flask app sees it. These limits wrap that buffering:

* a body larger than its route allows is refused with 413 ``too_large``
  from its ``Content-Length`` alone, before a byte of it is read, and a
  chunked body is cut off when it passes the limit. Chat webhooks carry a
  few kilobytes of JSON or XML, so ``/webhooks/`` allows
  ``server.webhook_max_bytes`` (1 MB): anyone on the internet can post there
  before the signature is checked, and a 25 MB body held in memory per
  request is how memory ran out. Other routes allow an upload of
  ``audio.max_bytes`` plus its multipart framing.
* a body must be complete within ``server.body_timeout_s`` of its headers,
  else 408 ``request_timeout``.

Either refusal says ``Connection: close``: the rest of the body may still be
on its way, so the connection cannot carry another request.
"""

from __future__ import annotations

import asyncio
import json
import logging

from hypercorn.app_wrappers import WSGIWrapper

from ..config import Settings
from ..errors import BotBridgeError
from ..metrics import count_error

log = logging.getLogger(__name__)

# multipart framing adds a little to the file itself; the audio layer enforces the file's own limit
MULTIPART_MARGIN = 1_000_000
WEBHOOK_PREFIX = "/webhooks/"


def upload_limit(settings: Settings) -> int:
    """The largest body of a route other than a webhook: one upload of ``audio.max_bytes``, with its framing."""
    return settings.audio.max_bytes + MULTIPART_MARGIN


class _Refused(Exception):
    def __init__(self, error: BotBridgeError) -> None:
        super().__init__(error.detail)
        self.error = error


class RequestLimits:
    """hypercorn's WSGI adapter for ``app``, with the size and time limits of its settings."""

    def __init__(self, app, settings: Settings) -> None:
        self.settings = settings
        self.wsgi = WSGIWrapper(app, self.largest_body(app))

    @classmethod
    def around(cls, app) -> RequestLimits:
        return cls(app, _settings_of(app))

    @staticmethod
    def largest_body(app) -> int:
        settings = _settings_of(app)
        return max(upload_limit(settings), settings.server.webhook_max_bytes)

    async def __call__(self, scope, receive, send, sync_spawn, call_soon) -> None:
        if scope["type"] != "http":
            await self.wsgi(scope, receive, send, sync_spawn, call_soon)
            return
        limit = self._limit(scope["path"])
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise _Refused(_too_large(limit, f"Content-Length {declared}"))
            await self.wsgi(scope, self._bounded(receive, limit), send, sync_spawn, call_soon)
        except _Refused as refused:
            await _refuse(scope, send, refused.error)

    def _limit(self, path: str) -> int:
        return self.settings.server.webhook_max_bytes if path.startswith(WEBHOOK_PREFIX) else upload_limit(self.settings)

    def _bounded(self, receive, limit: int):
        """``receive`` that counts the body against ``limit`` and gives up at the body deadline."""
        timeout_s = self.settings.server.body_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout_s
        received = 0

        async def bounded_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                raise _Refused(BotBridgeError("request_timeout", f"body not complete after {timeout_s} s")) from None
            received += len(message.get("body", b""))
            if received > limit:
                raise _Refused(_too_large(limit, f"a chunked body passed {limit} bytes"))
            return message

        return bounded_receive


def _settings_of(app) -> Settings:
    return app.extensions["bot_bridge"].settings


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value)  # hypercorn (h11, h2) has refused a request whose length is not a number
    return None


def _too_large(limit: int, detail: str) -> BotBridgeError:
    return BotBridgeError("too_large", detail, limit_mb=max(1, round(limit / 1e6)))


async def _refuse(scope, send, error: BotBridgeError) -> None:
    count_error(error.code, "http")
    log.warning("%s %s -> %d %s: %s", scope["method"], scope["path"], error.http_status, error.code, error.detail)
    body = json.dumps(error.to_dict(), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": error.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
