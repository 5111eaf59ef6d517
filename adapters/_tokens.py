"""An access token fetched with an app's credentials, kept until shortly before it expires.

Why a shared helper: several platforms (Feishu's ``tenant_access_token``,
WeCom's ``access_token``) hand out a token that lasts about two hours and
throttle the call that issues it. Each adapter keeps one ``CachedToken``:
it fetches on first use, renews ``margin_s`` before the platform's expiry
(so no call races the deadline), and ``forget`` drops a token the platform
said was invalid so the next use fetches a fresh one. Not an adapter
module: the leading underscore keeps it out of the platform discovery.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from bot_bridge.chat.outbound import OutboundError

Value = TypeVar("Value")


class TokenRejected(Exception):
    """An API call said the access token expired or is invalid (raised by an adapter's check)."""


class CachedToken:
    """``fetch()`` returns ``(token, seconds it is valid)``; ``run(call)`` calls ``call(token)``, once more with a
    fresh token when the first is rejected (``TokenRejected``)."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], *, name: str, margin_s: float = 300.0) -> None:
        self._fetch = fetch
        self.name = name
        self.margin_s = margin_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def run(self, call: Callable[[str], Value]) -> Value:
        token = self.get()
        try:
            return call(token)
        except TokenRejected:
            self.forget(token)
        try:
            return call(self.get())
        except TokenRejected as error:
            raise OutboundError(self.name, f"a fresh access token was rejected too ({error})", retryable=True) from None

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                token, lifetime_s = self._fetch()
                self._token = token
                self._renew_at = time.monotonic() + max(0.0, lifetime_s - self.margin_s)
            return self._token

    def forget(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None
