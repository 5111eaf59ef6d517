"""DingTalk (钉钉) enterprise internal robot: Stream mode or HTTP callbacks in, session webhook or robot API out.

* Two ways in (``platforms.dingtalk.mode``, ``DINGTALK_MODE``): ``stream``
  (the default: bot-bridge opens a WebSocket to DingTalk with the app's
  Client ID and Client Secret, no public URL) or ``http`` (DingTalk posts
  each message to ``/webhooks/dingtalk``). Stream mode runs on the official
  ``dingtalk-stream`` SDK's client: it answers DingTalk's pings, follows its
  ``disconnect`` to a fresh connection and acknowledges each frame with what
  our handler returns. Two things of it are replaced: the connection is
  opened through bot-bridge's HTTP client (its timeouts and retries, the
  secret in no error; a wrong secret stops the first try and is named in the
  log, later failures are tried again by the SDK after 10 s), and the SDK's
  endless loop is ended from outside when the process stops. A message is
  acknowledged once recorded; DingTalk does not send robot messages again
  (developerpedia, Stream protocol), so one that could not be recorded is
  logged and lost, which the acknowledgement's code tells DingTalk. Each
  push goes to one connection of the app, so every background process may
  hold one; the msgId makes a note of a message delivered twice a no-op.
* Verification (HTTP mode): the headers ``timestamp`` (ms) and ``sign`` =
  base64(HMAC-SHA256(app secret, ``timestamp + "\\n" + app secret``)),
  compared in constant time, the timestamp within DingTalk's one hour. The
  body is not signed, so a captured request could be replayed within that
  hour: its msgId makes it a no-op, its ``robotCode`` must be ours, its
  audio is fetched only through DingTalk's API with our robot code, and its
  ``sessionWebhook`` is used only on DingTalk's hosts.
* Voice: ``msgtype: audio`` (``content.downloadCode``, ``content.duration``
  in ms) and ``msgtype: file`` whose name is an audio file; DingTalk
  delivers both only in one-to-one chats with the robot. The download code
  becomes a URL through ``robot/messageFiles/download`` (the access token in
  ``x-acs-dingtalk-access-token``, to the API only); that URL is signed by
  itself and fetched with no token. Text ``help``/``帮助`` gets the help message.
* The access token (``oauth2/accessToken``, 7200 s) is cached until 5
  minutes before it expires, and fetched again when the API answers 401 or
  ``InvalidAuthentication``.
* Replies: the message's ``sessionWebhook`` while it is valid (90 minutes
  after the message; not used in its last minute), else the robot API:
  ``robot/oToMessages/batchSend`` to the sender of a one-to-one message,
  ``robot/groupMessages/send`` in a group. Texts are ``text`` messages
  (``sampleText``), which DingTalk shows as written: nothing to escape. A
  chart is uploaded (``media/upload``) and follows as an image message
  through the robot API (a session webhook carries no image).
* Rate limits: HTTP 429, a ``QpsLimit`` code, or a recipient in
  ``flowControlledStaffIdList`` wait as ``bot_bridge.chat.outbound`` does.
* Reactions: DingTalk documents no API for a robot to put an emoji on a
  message (``robot/emotion/reply`` exists in its SDK, undocumented, with
  text stickers only): ``reaction`` chats are answered as ``silent``.
* Alerts go to a group the robot is in (its ``openConversationId``, the
  ``cid...`` a message from that group carries) or to one person
  (``user:<staffId>``). Case buttons would need DingTalk's interactive cards
  and their callback: not built, a case's message links to the console.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import threading
import time
from typing import Callable

from dingtalk_stream import AckMessage, CallbackHandler, ChatbotMessage, Credential, DingTalkStreamClient

from bot_bridge.chat.messages import ChatMessage, InboundRequest, Media, ParsedWebhook
from bot_bridge.chat.outbound import OutboundError, RateLimited, Rejected, TryAgain, raise_for_transient

from .base import CONNECTION, WEBHOOK, ChatAdapter, Refused, TextLimit, goes_only_to, text_request

log = logging.getLogger(__name__)

MODES = ("stream", "http")
DEFAULT_OAPI_BASE = "https://oapi.dingtalk.com"
DINGTALK_DOMAINS = ("dingtalk.com",)
#: How far a callback's timestamp may be from now: DingTalk's rule is one hour.
FRESHNESS_WINDOW_MS = 3600 * 1000
#: A cached token is renewed this long before DingTalk's expiry, so no call races the deadline.
TOKEN_MARGIN_S = 300
#: A session webhook this close to its expiry is not used: the robot API is.
SESSION_MARGIN_MS = 60 * 1000
#: The API's answers to an expired or invalid access token (HTTP 401 too).
TOKEN_CODES = frozenset({"InvalidAuthentication"})
#: The old API's (oapi: session webhooks, custom robots, media/upload) errcodes.
OAPI_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
OAPI_RATE_LIMITED = 130101  # send too fast
OAPI_SYSTEM_BUSY = -1
#: A chat id that names one person rather than a group: ``user:<staffId>``.
USER_PREFIX = "user:"
#: What fits ``thread_id`` (the stored column): the reply route with its session webhook, or without it.
THREAD_ID_CHARS = 191
AUDIO_EXTENSIONS = (".amr", ".mp3", ".m4a", ".aac", ".wav", ".ogg", ".opus", ".oga", ".silk", ".flac", ".wma",
                    ".webm", ".3gp")
#: How often the Stream loop looks whether the process is stopping.
STOP_POLL_S = 0.2


class _TokenRejected(Exception):
    """An API call said the access token expired or is invalid."""


class DingTalkAdapter(ChatAdapter):
    name = "dingtalk"
    webhook_path = "dingtalk"
    environment = {
        "client_id": "DINGTALK_CLIENT_ID",
        "client_secret": "DINGTALK_CLIENT_SECRET",
        "robot_code": "DINGTALK_ROBOT_CODE",
        "mode": "DINGTALK_MODE",
        "api_base": "DINGTALK_API_BASE",
        "oapi_base": "DINGTALK_OAPI_BASE",
    }
    required = ("client_id", "client_secret")
    default_api_base = "https://api.dingtalk.com"
    # msgParam may hold 15,000 bytes; a text of 6,000 bytes stays within it even where JSON doubles it (\n, ").
    alert_text_limit = TextLimit(6000, "bytes")

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        self.mode = _mode(settings)
        self.robot_code = settings.get("robot_code") or settings["client_id"]
        self.oapi_base = (settings.get("oapi_base") or DEFAULT_OAPI_BASE).rstrip("/")
        self._token = _AccessToken(self._fetch_token)

    @property
    def receives(self) -> str:
        return CONNECTION if self.mode == "stream" else WEBHOOK

    def verify(self, request: InboundRequest) -> None:
        timestamp, sign = request.headers.get("timestamp"), request.headers.get("sign")
        if not timestamp or not timestamp.isdigit() or not sign:
            raise Refused(401, "missing or malformed timestamp or sign header")
        drift_ms = self.clock() * 1000 - int(timestamp)
        if abs(drift_ms) > FRESHNESS_WINDOW_MS:
            raise Refused(403, f"stale request: timestamp {drift_ms / 1000:.0f} s away from now")
        if not hmac.compare_digest(sign.encode(), signature(self.settings["client_secret"], timestamp).encode()):
            raise Refused(401, "sign does not match the timestamp and the app secret")
        payload = _payload(request.body)
        if payload is None:
            raise Refused(403, "signed, but the body is no JSON object")
        if payload.get("robotCode", self.robot_code) != self.robot_code:
            raise Refused(403, "a message for another robot (robotCode)")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        payload = _payload(request.body) or {}
        msgtype, content = payload.get("msgtype"), payload.get("content")
        content = content if isinstance(content, dict) else {}
        if msgtype == "audio" and content.get("downloadCode"):
            media = Media(ref=content["downloadCode"], duration_s=_seconds(content.get("duration")),
                          file_name="voice")
        elif msgtype == "file" and content.get("downloadCode") and _is_audio_name(content.get("fileName")):
            media = Media(ref=content["downloadCode"], file_name=content["fileName"])
        elif msgtype == "text" and (asked := text_request((payload.get("text") or {}).get("content"))):
            media = None
            if asked == "help" and payload.get("conversationType") == "2":  # how an operator finds a group's id
                log.info("dingtalk: help asked in group %s (its openConversationId)", payload.get("conversationId"))
        else:
            return ParsedWebhook()  # pictures, rich text, other text: nothing to answer
        if not payload.get("msgId") or not payload.get("conversationId"):
            return ParsedWebhook()
        note = ChatMessage(
            platform=self.name,
            delivery_id=payload["msgId"],
            kind="voice" if media is not None else asked,
            chat_id=payload["conversationId"],
            sender_id=payload.get("senderStaffId") or payload.get("senderId"),
            message_id=payload["msgId"],
            thread_id=_reply_route(payload),
            media=media,
            chat_name=payload.get("conversationTitle"),
            sender_name=payload.get("senderNick"),
        )
        return ParsedWebhook(messages=(note,))

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        answer = self._api("robot/messageFiles/download", {"downloadCode": message.media.ref,
                                                           "robotCode": self.robot_code})
        url = str(answer.get("downloadUrl") or "")
        if not url.startswith(("https://", "http://")):
            raise OutboundError("dingtalk robot/messageFiles/download", "no download URL in the answer",
                                retryable=False)
        # A URL signed by itself (object storage): no token goes with it.
        return self.http.download(url, call="dingtalk file download", max_bytes=max_bytes)

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        conversation_type, expires_ms, webhook = _read_route(message.thread_id)
        chat = message.chat_id if conversation_type == "2" else USER_PREFIX + (message.sender_id or "")
        if webhook and self.clock() * 1000 < expires_ms - SESSION_MARGIN_MS and self._may_post_to(webhook):
            self.http.call("POST", webhook, call="dingtalk session webhook", delivers=True,
                           check=functools.partial(check_oapi, token_rejections=False),
                           json={"msgtype": "text", "text": {"content": text}})
            sent = ""  # a session webhook names no message
        else:
            sent = self._send(chat, "sampleText", {"content": text})
        if image is not None:
            self._send_chart(chat, image)
        return sent

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        sent = self._send(chat_id, "sampleText", {"content": text})
        if image is not None:
            self._send_chart(chat_id, image)
        return sent

    def listen(self, receive: Callable[[InboundRequest], None], stopping: threading.Event) -> None:
        """Stream mode until ``stopping``: the SDK's client holds the connection and hands us each message."""
        client = _StreamClient(self._open_connection, first=self._open_connection())
        client.register_callback_handler(ChatbotMessage.TOPIC, _RecordThenAcknowledge(receive))
        log.info("dingtalk: Stream mode started; the dingtalk-stream client holds the connection and reconnects")
        asyncio.run(_run_until_stopped(client.start(), stopping))

    def _open_connection(self) -> dict:
        """A Stream endpoint and its one-time ticket (``gateway/connections/open``, with the app's credentials)."""
        return self.http.call(
            "POST", f"{self.api_base}/v1.0/gateway/connections/open", call="dingtalk gateway/connections/open",
            check=functools.partial(check_api, token_rejections=False),
            json={"clientId": self.settings["client_id"], "clientSecret": self.settings["client_secret"],
                  "subscriptions": [{"type": "CALLBACK", "topic": ChatbotMessage.TOPIC}],
                  "ua": "bot-bridge (dingtalk-stream)"},
        )

    def _send(self, chat_id: str, msg_key: str, param: dict) -> str:
        """A robot message to a group (its openConversationId) or to one person (``user:<staffId>``)."""
        body = {"robotCode": self.robot_code, "msgKey": msg_key,
                "msgParam": json.dumps(param, ensure_ascii=False)}
        if chat_id.startswith(USER_PREFIX):
            staff_id = chat_id[len(USER_PREFIX):]
            if not staff_id:
                raise OutboundError("dingtalk robot/oToMessages/batchSend", "the sender has no staff id to write to",
                                    retryable=False)
            answer = self._api("robot/oToMessages/batchSend", {**body, "userIds": [staff_id]}, delivers=True,
                               check=_check_batch_send)
        else:
            answer = self._api("robot/groupMessages/send", {**body, "openConversationId": chat_id}, delivers=True)
        return str(answer.get("processQueryKey") or "")

    def _send_chart(self, chat_id: str, image: bytes) -> None:
        """The chart after its text, as an image message; one that fails is logged, the text is not sent again."""
        try:
            media_id = self._token.run(lambda token: self.http.call(
                "POST", f"{self.oapi_base}/media/upload", call="dingtalk media/upload", check=check_oapi,
                params={"access_token": token, "type": "image"},
                files={"media": ("timeline.png", image, "image/png")}))["media_id"]
            self._send(chat_id, "sampleImageMsg", {"photoURL": media_id})
        except OutboundError as error:
            log.warning("dingtalk: the chart after a message was not delivered: %s", error)

    def _api(self, path: str, body: dict, *, delivers: bool = False, check=None) -> dict:
        def call(token: str) -> dict:
            return self.http.call("POST", f"{self.api_base}/v1.0/{path}", call=f"dingtalk {path}",
                                  check=check or check_api, delivers=delivers, json=body,
                                  headers={"x-acs-dingtalk-access-token": token})

        return self._token.run(call)

    def _fetch_token(self) -> tuple[str, float]:
        answer = self.http.call(
            "POST", f"{self.api_base}/v1.0/oauth2/accessToken", call="dingtalk oauth2/accessToken",
            check=functools.partial(check_api, token_rejections=False),
            json={"appKey": self.settings["client_id"], "appSecret": self.settings["client_secret"]},
        )
        return answer["accessToken"], float(answer.get("expireIn", 7200))

    def _may_post_to(self, webhook: str) -> bool:
        """A session webhook from a message's body is used only on DingTalk's hosts (or the configured oapi)."""
        if goes_only_to(webhook, DINGTALK_DOMAINS, (self.oapi_base,)):
            return True
        log.warning("dingtalk: a message's session webhook is not on a DingTalk host; replying through the API")
        return False


def signature(secret: str, timestamp: str) -> str:
    """DingTalk's ``sign``: base64(HMAC-SHA256(secret, ``timestamp + "\\n" + secret``)), for callbacks (the app
    secret) and custom robots (the robot's ``SEC...`` secret) alike."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def check_api(response, *, token_rejections: bool = True) -> dict:
    """The v1.0 API (api.dingtalk.com): 2xx with the answer, or an error status with ``{code, message}``.
    Codes are compared, never messages."""
    raise_for_transient(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    if status < 400:
        if not isinstance(body, dict):
            raise TryAgain(f"HTTP {status} without a JSON body")
        return body
    code = str((body or {}).get("code", "")) if isinstance(body, dict) else ""
    if token_rejections and (status == 401 or code in TOKEN_CODES):
        raise _TokenRejected(code or "HTTP 401")
    if "QpsLimit" in code:
        raise RateLimited(None, f"DingTalk {code}")
    raise Rejected(f"DingTalk HTTP {status} {code}".rstrip())


def check_oapi(response, *, token_rejections: bool = True) -> dict:
    """The old API (oapi.dingtalk.com: session webhooks, custom robots, media/upload): ``errcode`` 0 is success."""
    raise_for_transient(response)
    try:
        body = response.json()
    except ValueError:
        raise TryAgain(f"HTTP {response.status_code} without a JSON body") from None
    code = body.get("errcode", 0) if isinstance(body, dict) else None
    if code == 0:
        return body
    if token_rejections and code in OAPI_TOKEN_ERRORS:
        raise _TokenRejected(f"errcode {code}")
    if code == OAPI_RATE_LIMITED:
        raise RateLimited(None, "DingTalk errcode 130101 (sending too fast)")
    if code == OAPI_SYSTEM_BUSY:
        raise TryAgain("DingTalk errcode -1 (system busy)")
    raise Rejected(f"DingTalk errcode {code}")


def _check_batch_send(response) -> dict:
    """batchSend answers 200 even when it sent nothing: the recipient may be flow-controlled or unknown."""
    body = check_api(response)
    if body.get("flowControlledStaffIdList"):
        raise RateLimited(None, "DingTalk flow-controlled the recipient")
    if body.get("invalidStaffIdList"):
        raise Rejected("DingTalk: the recipient is no staff member the robot may write to")
    return body


class _AccessToken:
    """The app's access token: fetched once, cached until ``TOKEN_MARGIN_S`` before it expires, fetched again when
    the API rejects it."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self.fetch = fetch
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def run(self, call):
        """``call(token)``; if DingTalk rejects the token, fetch a new one and call once more."""
        token = self._current()
        try:
            return call(token)
        except _TokenRejected:
            self._forget(token)
        try:
            return call(self._current())
        except _TokenRejected as error:
            raise OutboundError("dingtalk", f"a fresh access token was rejected too ({error})",
                                retryable=True) from None

    def _current(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, expires_in = self.fetch()
                self._renew_at = time.monotonic() + max(0.0, expires_in - TOKEN_MARGIN_S)
            return self._token

    def _forget(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None


class _StreamClient(DingTalkStreamClient):
    """The SDK's Stream client, opening its connections through ``open_connection`` (bot-bridge's HTTP client);
    ``first`` is the connection already opened, used first. The SDK keeps the secret out of its hands: it only
    ever sees the Client ID. Its INFO lines quote the connection's ticket, so its logger shows warnings only."""

    def __init__(self, open_connection: Callable[[], dict], *, first: dict) -> None:
        sdk_log = logging.getLogger("dingtalk_stream.client")
        sdk_log.setLevel(logging.WARNING)
        super().__init__(Credential("", ""), logger=sdk_log)
        self._open = open_connection
        self._first: dict | None = first

    def open_connection(self):
        if self._first is not None:
            connection, self._first = self._first, None
            return connection
        try:
            return self._open()
        except OutboundError as error:
            log.error("dingtalk: cannot open a new Stream connection: %s; the SDK tries again in 10 s", error)
            return None


class _RecordThenAcknowledge(CallbackHandler):
    """A robot message is recorded (in a thread: ``receive`` writes to the database), then acknowledged with 200;
    one that could not be recorded is acknowledged with 500 and logged."""

    def __init__(self, receive: Callable[[InboundRequest], None]) -> None:
        super().__init__()
        self.receive = receive

    async def process(self, message):
        body = json.dumps(message.data, ensure_ascii=False).encode()
        try:
            await asyncio.to_thread(self.receive, InboundRequest.carrying(body, "dingtalk stream callback"))
        except Exception as error:  # noqa: BLE001 - whatever broke, DingTalk must be told it was not taken
            log.error("dingtalk: Stream message %s not recorded (%s: %s); DingTalk does not send robot messages "
                      "again, so it is lost", message.headers.message_id, type(error).__name__, error)
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "not recorded"
        return AckMessage.STATUS_OK, "OK"


async def _run_until_stopped(start, stopping: threading.Event) -> None:
    """Run the SDK's endless ``start()`` until ``stopping``, then cancel it (twice if need be: it catches a
    cancellation once, to sleep before reconnecting)."""
    task = asyncio.ensure_future(start)
    while not stopping.is_set() and not task.done():
        await asyncio.sleep(STOP_POLL_S)
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()


def _mode(settings: dict) -> str:
    mode = settings.get("mode") or "stream"
    if mode not in MODES:
        raise ValueError(f"DINGTALK_MODE (platforms.dingtalk.mode) must be stream or http, not {mode!r}")
    return mode


def _payload(body: bytes) -> dict | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _seconds(duration_ms) -> float | None:
    try:
        return float(duration_ms) / 1000
    except (TypeError, ValueError):
        return None


def _is_audio_name(name) -> bool:
    return isinstance(name, str) and name.lower().endswith(AUDIO_EXTENSIONS)


def _reply_route(payload: dict) -> str:
    """Where a reply goes, kept as the note's thread id: the conversation type (1: one to one, 2: group), then the
    session webhook's expiry (ms) and URL when they fit."""
    route = str(payload.get("conversationType") or "1")
    webhook, expires = payload.get("sessionWebhook"), str(payload.get("sessionWebhookExpiredTime") or "")
    if isinstance(webhook, str) and expires.isdigit() and " " not in webhook:
        with_webhook = f"{route} {expires} {webhook}"
        if len(with_webhook) <= THREAD_ID_CHARS:
            return with_webhook
    return route


def _read_route(thread_id: str | None) -> tuple[str, int, str | None]:
    """``_reply_route`` read back: (conversation type, session webhook expiry in ms or 0, session webhook or None)."""
    parts = (thread_id or "1").split(" ")
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return parts[0], 0, None
