"""Calls to chat platforms' HTTP APIs: timeouts, bounded retries, and no secret in any error.

Every adapter sends its requests through one ``OutboundHttp`` so that the
rules are the same everywhere:

* every request has a connect and a read timeout;
* timeouts, connection errors and 5xx answers are retried with exponential
  backoff (plus jitter), a bounded number of times, except for calls that
  deliver a message (``delivers=True``): chat APIs have no idempotency key,
  so those are resent only when the request provably never reached the
  platform (no connection), or the platform answered that it did not act
  (429, 5xx). A timeout or a connection lost after sending raises
  ``MaybeDelivered``: resending could show the message twice;
* a rate limit (HTTP 429, or a platform's own signal such as Telegram's
  ``parameters.retry_after`` or WeCom's errcode 45009) waits as long as the
  platform asks, when that is short; a longer wait is handed back to the
  caller (``OutboundError.retry_after_s``) so the queue can schedule it;
* after the last try, ``OutboundError`` names the call (``telegram
  sendMessage``), never its URL: Telegram puts the bot token in the URL path
  and WeCom the access token in the query, and the messages of ``requests``'
  exceptions quote URLs in full.

Platforms answer errors in their own shapes (Slack: HTTP 200 with
``ok: false``), so each call takes a ``check``: it reads a response and
returns what the caller wants, or raises ``RateLimited``, ``TryAgain`` or
``Rejected``. ``check_status`` is the plain-HTTP default adapters build on.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable

import requests
import urllib3

log = logging.getLogger(__name__)


class RateLimited(Exception):
    """Raised by a check: the platform asked us to slow down (``after_s`` None: use backoff)."""

    def __init__(self, after_s: float | None = None, reason: str = "rate limited") -> None:
        super().__init__(reason)
        self.after_s = after_s
        self.reason = reason


class TryAgain(Exception):
    """Raised by a check: a transient failure (5xx, "system busy") worth retrying."""


class Rejected(Exception):
    """Raised by a check: the platform refused the call; retrying the same call will not help."""


class TooLarge(Exception):
    """A download grew past its byte limit; it was abandoned without reading the rest."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body over {limit} bytes")
        self.limit = limit


class OutboundError(Exception):
    """A call that did not succeed. ``retryable``: a later attempt may succeed.

    The message is safe to log: the call's name and what went wrong, never a URL.
    """

    def __init__(self, call: str, reason: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(f"{call}: {reason}")
        self.call = call
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class MaybeDelivered(OutboundError):
    """A message-delivering call whose request left but whose answer never came: it may have been shown."""

    def __init__(self, call: str, reason: str) -> None:
        super().__init__(call, f"{reason}; it may have been delivered, so it is not sent again", retryable=False)


Check = Callable[[requests.Response], Any]


def raise_for_transient(response: requests.Response) -> None:
    """429 is a rate limit (``Retry-After`` honoured), 5xx a transient failure; anything else passes."""
    status = response.status_code
    if status == 429:
        raise RateLimited(_retry_after_header(response), "HTTP 429")
    if status >= 500:
        raise TryAgain(f"HTTP {status}")


def check_status(response: requests.Response) -> requests.Response:
    """The plain HTTP reading: 2xx is success, 429 and 5xx are retried, other 4xx are final."""
    raise_for_transient(response)
    if response.status_code >= 400:
        raise Rejected(f"HTTP {response.status_code}")
    return response


class OutboundHttp:
    """One HTTP client for all platforms (a pooled ``requests.Session``)."""

    def __init__(
        self,
        *,
        secrets: list[str] | tuple[str, ...] = (),
        attempts: int = 4,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.secrets = sorted((s for s in secrets if s), key=len, reverse=True)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.session = session or requests.Session()
        self.sleep = sleep

    def call(
        self,
        method: str,
        url: str,
        *,
        call: str,
        check: Check = check_status,
        delivers: bool = False,
        read_timeout_s: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Send a request and return ``check(response)``, retrying what is worth retrying.

        ``delivers``: the call puts a message in front of people (see the module docstring).
        ``read_timeout_s``: for a call the platform answers late on purpose (a long poll).
        """
        timeout = self.timeout if read_timeout_s is None else (self.timeout[0], read_timeout_s)

        def send() -> Any:
            response = self.session.request(method, url, timeout=timeout, **kwargs)
            with response:
                return check(response)

        return self._with_retries(call, send, delivers)

    def download(
        self, url: str, *, call: str, max_bytes: int, check: Check = check_status, **kwargs: Any
    ) -> bytes:
        """GET a file, reading at most ``max_bytes`` (``TooLarge`` beyond), with the same retries."""

        def fetch() -> bytes:
            response = self.session.get(url, timeout=self.timeout, stream=True, **kwargs)
            with response:
                check(response)
                return _read_limited(response, max_bytes)

        return self._with_retries(call, fetch)

    def _with_retries(self, call: str, attempt: Callable[[], Any], delivers: bool = False) -> Any:
        for number in range(1, self.attempts + 1):
            last = number == self.attempts
            try:
                return attempt()
            except Rejected as error:
                raise OutboundError(call, self._safe(str(error)), retryable=False) from None
            except RateLimited as error:
                wait = error.after_s if error.after_s is not None else self._backoff(number)
                if last or wait > self.max_wait_s:
                    raise OutboundError(
                        call, self._safe(f"{error.reason}, retry after {wait:.0f} s"), retryable=True, retry_after_s=wait
                    ) from None
                reason = f"{error.reason} (asked to wait {wait:g} s)"
            except TryAgain as error:
                if last:
                    raise OutboundError(call, self._safe(f"{error} after {number} tries"), retryable=True) from None
                wait, reason = self._backoff(number), str(error)
            except requests.RequestException as error:
                # The exception's own text quotes the URL (tokens included): keep only its kind.
                if delivers and not _never_sent(error):
                    raise MaybeDelivered(call, type(error).__name__) from None
                if last:
                    raise OutboundError(call, f"{type(error).__name__} after {number} tries", retryable=True) from None
                wait, reason = self._backoff(number), type(error).__name__
            log.warning("%s: %s; retrying in %.1f s (try %d of %d)", call, self._safe(reason), wait, number, self.attempts)
            self.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, number: int) -> float:
        return self.backoff_s * 2 ** (number - 1) * random.uniform(1.0, 1.25)

    def _safe(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return text


def _never_sent(error: requests.RequestException) -> bool:
    """True when no connection was made, so the platform cannot have seen the request."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = error.args[0] if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(
        getattr(reason, "reason", reason), urllib3.exceptions.NewConnectionError
    )


def _retry_after_header(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to backoff


def _read_limited(response: requests.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(max_bytes)
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)
