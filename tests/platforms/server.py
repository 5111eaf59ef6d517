"""Loopback HTTP plumbing shared by the fake Telegram, Slack and WeCom APIs.

Why a real server rather than mocks: the adapters reach the platforms through
real client libraries (python-telegram-bot over httpx, slack_sdk over urllib,
wechatpy over requests). Patching those libraries would only test the patches;
a socket on 127.0.0.1 tests the bytes the bot really puts on the wire, its
timeouts and its retries.

Everything generic lives here so each platform file only holds that platform's
protocol:

* ``FakePlatformServer`` runs a WSGI app on an ephemeral port in a daemon
  thread, parses every request (query, JSON, form, multipart), records it,
  applies injected faults, and lets tests wait for what the bot sent.
* ``InboundRequest`` is a webhook request as the platform would deliver it,
  independent of any web framework.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = [
    "FakePlatformServer",
    "InboundRequest",
    "Route",
    "fake_fixture",
    "json_response",
    "looks_like_image",
]

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


def looks_like_image(data: bytes) -> bool:
    """Sniff PNG, JPEG, GIF or WebP by magic bytes (what platforms accept as images)."""
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the ``application/json; charset=utf-8`` type all three APIs use."""
    body = json.dumps(payload, ensure_ascii=False)
    return Response(body, status=status, headers=headers, content_type="application/json; charset=utf-8")


class Route(NamedTuple):
    """How one request is served: the platform's method name and its handler.

    ``body`` says how to read the request body: ``"auto"`` by its Content-Type
    (JSON, form or multipart), ``"json"`` as JSON whatever the Content-Type
    (WeCom reads JSON sent with none), ``"raw"`` not at all (upload bytes that
    a client labelled as a form must not be parsed as one).
    """

    method: str
    handler: Callable[[dict], Response]
    body: str = "auto"


@dataclass
class _Fault:
    kind: str  # "delay" | "fail" | "rate_limit"
    target: str
    remaining: int
    status: int = 500
    body: Any = None
    seconds: float = 0.0
    retry_after: int = 0

    def matches(self, call: dict) -> bool:
        return self.target in ("*", call["method"], call["path"])


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler minus the per-request access log line (errors still print)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _RedirectToLoopback(HTTPAdapter):
    """A requests transport that sends ``https://real.host/...`` to the fake instead.

    This is requests' own extension point (``Session.mount``), so code that
    hard-codes the real host (wechatpy's ``gettoken``) can be pointed at the
    fake without monkeypatching.
    """

    def __init__(self, real_prefix: str, fake_prefix: str) -> None:
        super().__init__()
        self._real_prefix = real_prefix
        self._fake_prefix = fake_prefix

    def send(self, request, *args, **kwargs):  # type: ignore[override]
        request.url = self._fake_prefix + request.url[len(self._real_prefix):]
        return super().send(request, *args, **kwargs)


class FakePlatformServer:
    """Base class of the fakes: a real HTTP server on 127.0.0.1 with recording and faults.

    Subclasses implement ``route`` (request -> ``Route``) and the ``render_*``
    hooks that give each platform its own error shapes. Handlers run while
    holding ``self._lock``, so platform state needs no locking of its own.

    Every request becomes a plain dict, appended to ``requests``::

        {"method": "sendMessage",      # the platform's method name (None if unrouted)
         "http_method": "POST",
         "path": "/bot123:ABC/sendMessage",
         "params": {...},             # query + JSON/form body, decoded by the platform
         "files": {"photo": {"filename": "c.png", "content_type": "image/png", "data": b"..."}},
         "headers": {...}, "body": b"...",
         "received_at": 12.5,         # time.monotonic() on arrival (to measure waits between calls)
         "answered_at": 42.5,         # time.monotonic() once answered (a long poll's wait)
         "status": 200,               # set once answered
         "response": {...}}           # the JSON answered, None for binary bodies

    Accepted outbound messages also go to ``sent_messages`` with two more keys:
    ``"text"`` (what the user reads) and ``"images"`` (list of bytes attached).
    """

    #: Real origins this fake stands in for, e.g. ``("https://slack.com/",)``.
    REAL_BASE_URLS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._faults: list[_Fault] = []
        self._server = None
        self._thread: threading.Thread | None = None
        self.requests: list[dict] = []
        self.sent_messages: list[dict] = []
        self.uploaded_images: list[bytes] = []
        self.server_errors: list[str] = []

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> FakePlatformServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi_app, threaded=True, request_handler=_QuietRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"{type(self).__name__}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; pending injected delays end at once."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        if exc_type is None and self.server_errors:
            raise AssertionError(f"{type(self).__name__} crashed while serving:\n" + "\n".join(self.server_errors))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        if self._server is None:
            raise RuntimeError("the fake server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_port}"

    def route_session(self, session: requests.Session) -> requests.Session:
        """Send this session's calls to the platform's real hosts to the fake instead."""
        for real in self.REAL_BASE_URLS:
            session.mount(real, _RedirectToLoopback(real, self.base_url + "/"))
        return session

    # -- fault injection -----------------------------------------------------

    def fail_next(self, target: str, status: int = 500, times: int = 1, body: Any = None) -> None:
        """Answer the next ``times`` calls to ``target`` with an error.

        ``target`` is a method name (``"sendMessage"``, ``"chat.postMessage"``,
        ``"message/send"``), an exact path, or ``"*"``. Without ``body`` the
        platform renders its usual error for ``status``; a dict ``body`` is sent
        as JSON, bytes or str verbatim.
        """
        self._add_fault(_Fault("fail", target, times, status=status, body=body))

    def rate_limit_next(self, target: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls to ``target`` the way the platform rate-limits."""
        self._add_fault(_Fault("rate_limit", target, times, retry_after=retry_after))

    def delay_next(self, target: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` calls to ``target`` for ``seconds`` before serving them.

        The call is still served after the delay even if the client gave up, as
        on the real platform: a client timeout means "maybe sent". A delay
        combines with a queued failure (the call is slow *and* fails).
        """
        self._add_fault(_Fault("delay", target, times, seconds=seconds))

    def clear_faults(self) -> None:
        """Forget every injected fault not used up yet (calls already held keep their delay)."""
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, call: dict, kinds: Iterable[str]) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(call):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- observation -----------------------------------------------------------

    def calls(self, method: str) -> list[dict]:
        """Every recorded request to ``method`` (or to that exact path), in arrival order."""
        with self._lock:
            return [c for c in self.requests if method in (c["method"], c["path"])]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Block until ``predicate()`` is truthy (checked under the lock) and return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c["method"] or c["path"], c.get("status")) for c in self.requests]
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; requests seen: {seen}")
                self._changed.wait(left)

    def wait_for_messages(self, n: int = 1, timeout: float = 5.0) -> list[dict]:
        """Wait until at least ``n`` messages were accepted; return a copy of ``sent_messages``."""
        return self.wait_until(
            lambda: list(self.sent_messages) if len(self.sent_messages) >= n else None,
            timeout,
            f"{n} sent message(s)",
        )

    def record_sent(self, call: dict, text: str | None, images: list[bytes] | None = None) -> None:
        """Mark ``call`` as a message delivered to users (handlers call this, under the lock)."""
        call["text"] = text
        call["images"] = list(images or [])
        self.sent_messages.append(call)

    # -- hooks for subclasses ----------------------------------------------------

    def route(self, request: Request) -> Route | None:
        raise NotImplementedError

    def decode_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Turn form/query strings into the types the platform reads them as."""
        return params

    def render_failure(self, call: dict, status: int) -> Response:
        return Response(f"{status} injected failure", status=status, content_type="text/plain")

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return Response("rate limited", status=429, headers={"Retry-After": str(retry_after)})

    def render_not_found(self, call: dict) -> Response:
        return Response("not found", status=404, content_type="text/plain")

    def render_malformed(self, call: dict) -> Response:
        return Response("malformed request body", status=400, content_type="text/plain")

    # -- WSGI -------------------------------------------------------------------

    def _wsgi_app(self, environ, start_response):
        response = self._serve(Request(environ))
        return response(environ, start_response)

    def _serve(self, request: Request) -> Response:
        route = self.route(request)
        call = self._parse(request, route)
        with self._changed:
            self.requests.append(call)
            self._changed.notify_all()  # a test may be waiting for a call that is about to be delayed
        delay = self._take_fault(call, ("delay",))
        if delay is not None:
            self._closing.wait(delay.seconds)
        fault = self._take_fault(call, ("fail", "rate_limit"))
        with self._changed:
            try:
                if route is None:
                    response = self.render_not_found(call)
                elif fault is not None:
                    response = self._render_fault(call, fault)
                elif call.get("malformed"):
                    response = self.render_malformed(call)
                else:
                    response = route.handler(call)
            except Exception:
                self.server_errors.append(traceback.format_exc())
                response = Response("fake server crashed; see server_errors", status=500)
            call["status"] = response.status_code
            call["response"] = _json_or_none(response)
            call["answered_at"] = time.monotonic()
            self._changed.notify_all()
        return response

    def _render_fault(self, call: dict, fault: _Fault) -> Response:
        if fault.kind == "rate_limit":
            return self.render_rate_limited(call, fault.retry_after)
        if fault.body is None:
            return self.render_failure(call, fault.status)
        if isinstance(fault.body, (bytes, str)):
            return Response(fault.body, status=fault.status, content_type="text/plain; charset=utf-8")
        return json_response(fault.body, fault.status)

    def _parse(self, request: Request, route: Route | None) -> dict:
        body = request.get_data(cache=True)
        params: dict[str, Any] = request.args.to_dict()
        files: dict[str, dict] = {}
        malformed = None
        mode = route.body if route is not None else "raw"
        if body and mode != "raw":
            if mode == "json" or request.mimetype == "application/json":
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                if isinstance(decoded, dict):
                    params.update(decoded)
                else:
                    malformed = "body is not a JSON object"
            elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                params.update(request.form.to_dict())
                for name, storage in request.files.items():
                    files[name] = {
                        "filename": storage.filename,
                        "content_type": storage.mimetype,
                        "data": storage.read(),
                    }
        try:
            params = self.decode_params(params)
        except ValueError as error:
            malformed = str(error)
        return {
            "method": route.method if route else None,
            "http_method": request.method,
            "path": request.path,
            "params": params,
            "files": files,
            "headers": dict(request.headers),
            "body": body,
            "malformed": malformed,
            "received_at": time.monotonic(),
            "answered_at": None,
            "status": None,
            "response": None,
        }


def _json_or_none(response: Response) -> Any:
    if response.mimetype != "application/json":
        return None
    try:
        return json.loads(response.get_data())
    except ValueError:
        return None


def fake_fixture(factory: Callable[[], FakePlatformServer], name: str):
    """Build a pytest fixture that yields a running fake and stops it afterwards."""
    import pytest

    @pytest.fixture(name=name)
    def _running_fake():
        with factory() as fake:
            yield fake

    return _running_fake


@dataclass(frozen=True)
class InboundRequest:
    """A webhook request exactly as the platform sends it, for any web framework.

    Feed it to Flask/werkzeug with ``client.open(path, **req.werkzeug_kwargs())``
    or to a live server with ``req.send(url)``. Tamper with ``with_body`` /
    ``with_headers`` (the signature is left as it was, which is the point).
    """

    method: str
    headers: dict[str, str]
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def query_string(self) -> str:
        """The query percent-encoded as the platform puts it on the URL."""
        return urlencode(self.query)

    def json(self) -> Any:
        return json.loads(self.body)

    def with_body(self, body: bytes) -> InboundRequest:
        return replace(self, body=body)

    def with_headers(self, **headers: str) -> InboundRequest:
        """Override headers; underscores in names become dashes (X_Slack_Retry_Num)."""
        merged = dict(self.headers)
        merged.update({name.replace("_", "-"): value for name, value in headers.items()})
        return replace(self, headers=merged)

    def werkzeug_kwargs(self) -> dict[str, Any]:
        """Arguments for ``werkzeug.test.Client.open`` / Flask's ``test_client().open``."""
        return {
            "method": self.method,
            "headers": self.headers,
            "data": self.body,
            "query_string": self.query_string,
        }

    def as_chat_request(self, path: str):
        """The core's ``bot_bridge.chat.messages.InboundRequest``, as the web layer hands it to adapters."""
        from bot_bridge.chat.messages import CaseInsensitiveDict
        from bot_bridge.chat.messages import InboundRequest as ChatRequest

        return ChatRequest(self.method, path, dict(self.query), CaseInsensitiveDict(self.headers), self.body)

    def send(self, url: str, timeout: float = 10.0, session: requests.Session | None = None) -> requests.Response:
        """Deliver the request to a running server, as the platform would."""
        sender = session or requests
        target = f"{url}?{self.query_string}" if self.query else url
        return sender.request(self.method, target, headers=self.headers, data=self.body, timeout=timeout)
