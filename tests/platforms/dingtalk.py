"""A loopback DingTalk (钉钉): its v1.0 API, its old API (oapi), its Stream gateway, and signed robot callbacks.

The fake answers like api.dingtalk.com on ``/v1.0/...``: ``oauth2/accessToken``,
``gateway/connections/open`` (which hands out a ``ws://127.0.0.1`` endpoint
and a one-time ticket of the Stream gateway, ``StreamGateway``),
``robot/messageFiles/download`` (a download code becomes a URL on the fake,
``/files/<id>``, fetched without a token as DingTalk's signed URLs are),
``robot/oToMessages/batchSend`` and ``robot/groupMessages/send``. The v1.0
API answers errors with an HTTP status and ``{"code", "message",
"requestid"}``: an invalid or expired token is 401 ``InvalidAuthentication``,
a rate limit 403 ``Forbidden.AccessDenied.QpsLimitForApi``.

Like oapi.dingtalk.com it answers ``/robot/sendBySession?session=...`` (the
session webhook a message carries, valid 90 minutes; the errcode DingTalk
gives for an expired one is not documented, the fake answers 300001),
``/robot/send`` (a group custom robot: ``access_token``, ``timestamp`` and
``sign`` checked, 20 messages a minute and then errcode 130101) and
``/media/upload``, all HTTP 200 with ``errcode``.

``callback_request`` builds the HTTP callback a robot's message arrives as
(headers ``timestamp`` and ``sign``, the body unsigned, as DingTalk sends it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from .gateway import Connection, TicketedGateway
from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response

DEFAULT_CLIENT_ID = "dingq0fakeloopbackapp"
DEFAULT_CLIENT_SECRET = "FakeLoopbackDingTalkAppSecret-0123456789abcdefABCDEFGHIJ"
DEFAULT_ROBOT_TOKEN = "a3c9f1e0b7d24c68a1f5e9b3c7d2a6f4e8b1c5d9a3f7e2b6c0d4a8f3e7b1c5d9"
DEFAULT_ROBOT_SECRET = "SEC0fakeloopback1robot2signing3secret4abcdef567890abcdef12345678"
DEFAULT_STAFF_ID = "manager4220"
DEFAULT_GROUP = "cidFakeLoopbackGroup0000000000=="
CALLBACK_TOPIC = "/v1.0/im/bot/messages/get"
SESSION_LIFETIME_MS = 90 * 60 * 1000
MSG_PARAM_LIMIT_BYTES = 15000
ROBOT_MESSAGES_PER_MINUTE = 20
SESSION_EXPIRED = 300001
MESSAGE_KEYS = ("sampleText", "sampleMarkdown", "sampleImageMsg", "sampleLink", "sampleActionCard")


class _ApiError(Exception):
    """Raised in a v1.0 handler: becomes ``status`` with ``{"code", "message", "requestid"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


class _OapiError(Exception):
    """Raised in an oapi handler: becomes HTTP 200 with ``{"errcode", "errmsg"}``."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode)
        self.errcode, self.errmsg = errcode, errmsg


def signature(secret: str, timestamp: str) -> str:
    """DingTalk's sign, computed here on its own so the test does not trust the adapter's."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class FakeDingTalk(FakePlatformServer):
    """One enterprise internal app with its robot (robotCode = Client ID), and one group custom robot.

    ``known_staff`` makes batchSend list other user ids as invalid; ``token_ttl`` is ``expireIn`` (7200 s).
    """

    REAL_BASE_URLS = ("https://api.dingtalk.com/", "https://oapi.dingtalk.com/")

    def __init__(self, client_id: str = DEFAULT_CLIENT_ID, client_secret: str = DEFAULT_CLIENT_SECRET, *,
                 robot_token: str = DEFAULT_ROBOT_TOKEN, robot_secret: str = DEFAULT_ROBOT_SECRET,
                 token_ttl: int = 7200, known_staff: set[str] | None = None,
                 robot_rate_limit: int | None = ROBOT_MESSAGES_PER_MINUTE) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.robot_code = client_id
        self.robot_token = robot_token
        self.robot_secret = robot_secret
        self.token_ttl = token_ttl
        self.known_staff = known_staff
        self.robot_rate_limit = robot_rate_limit
        self.files: dict[str, bytes] = {}  # file id -> bytes, behind /files/<id>
        self.download_codes: dict[str, str] = {}  # download code -> file id
        self.media: dict[str, bytes] = {}  # uploaded media id -> bytes
        self.sessions: dict[str, dict] = {}  # session -> {"expires_ms", "conversation"}
        self.stream = StreamGateway(self._changed, client_id)
        self._token_expiry: dict[str, float] = {}
        self._robot_sends: deque[float] = deque()

    def start(self) -> FakeDingTalk:
        super().start()
        self.stream.start()
        return self

    def stop(self) -> None:
        self.stream.stop()
        super().stop()

    # -- test set-up ---------------------------------------------------------------

    def add_file(self, data: bytes) -> str:
        """A file a robot received (a voice message's audio); returns its ``downloadCode``."""
        file_id, code = secrets.token_hex(16), "mIofN681YE3f/" + secrets.token_urlsafe(48)
        with self._lock:
            self.files[file_id] = data
            self.download_codes[code] = file_id
        return code

    def session_webhook(self, conversation: str, *, expires_in_ms: int = SESSION_LIFETIME_MS) -> tuple[str, int]:
        """A message's ``sessionWebhook`` and its ``sessionWebhookExpiredTime`` (ms)."""
        session = secrets.token_hex(16)
        expires_ms = int(time.time() * 1000) + expires_in_ms
        with self._lock:
            self.sessions[session] = {"expires_ms": expires_ms, "conversation": conversation}
        return f"{self.base_url}/robot/sendBySession?session={session}", expires_ms

    def expire_tokens(self) -> None:
        with self._lock:
            self._token_expiry = {token: float("-inf") for token in self._token_expiry}

    @property
    def token_calls(self) -> int:
        return len(self.calls("oauth2/accessToken"))

    # -- routing ---------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path = request.path
        if path.startswith("/files/"):
            return Route("download", self._download, "raw")
        v1 = {
            "/v1.0/oauth2/accessToken": self._access_token,
            "/v1.0/gateway/connections/open": self._open_connection,
            "/v1.0/robot/messageFiles/download": self._with_token(self._message_file),
            "/v1.0/robot/oToMessages/batchSend": self._with_token(self._batch_send),
            "/v1.0/robot/groupMessages/send": self._with_token(self._group_send),
        }
        if path in v1:
            return Route(path[len("/v1.0/"):], _answer_api_errors(v1[path]), "json")
        oapi = {"/robot/sendBySession": self._send_by_session, "/robot/send": self._robot_send,
                "/media/upload": self._media_upload}
        if path in oapi:
            return Route(path.lstrip("/"), _answer_oapi_errors(oapi[path]), "auto")
        return None

    def render_failure(self, call: dict, status: int) -> Response:
        return json_response({"code": "ServiceUnavailable", "message": "injected failure",
                              "requestid": secrets.token_hex(8)}, status)

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        if call["path"].startswith("/v1.0/"):
            return json_response({"code": "Forbidden.AccessDenied.QpsLimitForApi",
                                  "message": "调用频率超过限制 (QPS limit)", "requestid": secrets.token_hex(8)}, 403)
        return json_response({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})

    def _with_token(self, handler):
        def checked(call: dict) -> Response:
            token = call["headers"].get("X-Acs-Dingtalk-Access-Token", "")
            if self._token_expiry.get(token, float("-inf")) <= time.monotonic():
                raise _ApiError(401, "InvalidAuthentication", "不合法的access_token")
            return handler(call)

        return checked

    # -- v1.0 ---------------------------------------------------------------------------

    def _access_token(self, call: dict) -> Response:
        params = call["params"]
        if (params.get("appKey"), params.get("appSecret")) != (self.client_id, self.client_secret):
            raise _ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = secrets.token_hex(16)
        self._token_expiry[token] = time.monotonic() + self.token_ttl
        return json_response({"accessToken": token, "expireIn": self.token_ttl})

    def _open_connection(self, call: dict) -> Response:
        params = call["params"]
        if (params.get("clientId"), params.get("clientSecret")) != (self.client_id, self.client_secret):
            raise _ApiError(401, "Unauthorized", "clientId or clientSecret invalid")
        topics = [(s.get("type"), s.get("topic")) for s in params.get("subscriptions") or []]
        if ("CALLBACK", CALLBACK_TOPIC) not in topics:
            raise _ApiError(400, "invalidParameter", "subscriptions lack the robot message topic")
        return json_response(self.stream.issue())

    def _message_file(self, call: dict) -> Response:
        params = call["params"]
        if params.get("robotCode") != self.robot_code:
            raise _ApiError(400, "invalidParameter.robotCode", "robotCode invalid")
        file_id = self.download_codes.get(params.get("downloadCode", ""))
        if file_id is None:
            raise _ApiError(400, "invalidParameter.downloadCode", "downloadCode invalid")
        return json_response({"downloadUrl": f"{self.base_url}/files/{file_id}?Expires=1893456000&Signature=x"})

    def _download(self, call: dict) -> Response:
        data = self.files.get(call["path"][len("/files/"):])
        if data is None:
            return Response("NoSuchKey", status=404, content_type="application/xml")
        return Response(data, content_type="application/octet-stream")

    def _batch_send(self, call: dict) -> Response:
        params = call["params"]
        text, images = self._robot_message(params)
        users = params.get("userIds") or []
        if not users:
            raise _ApiError(400, "invalidParameter.userIds", "userIds empty")
        invalid = [u for u in users if self.known_staff is not None and u not in self.known_staff]
        if len(invalid) < len(users):
            self.record_sent(call, text, images)
        return json_response({"processQueryKey": secrets.token_urlsafe(24), "invalidStaffIdList": invalid,
                              "flowControlledStaffIdList": []})

    def _group_send(self, call: dict) -> Response:
        params = call["params"]
        text, images = self._robot_message(params)
        if not str(params.get("openConversationId", "")).startswith("cid"):
            raise _ApiError(400, "invalidParameter.openConversationId", "openConversationId invalid")
        self.record_sent(call, text, images)
        return json_response({"processQueryKey": secrets.token_urlsafe(24)})

    def _robot_message(self, params: dict) -> tuple[str | None, list[bytes]]:
        if params.get("robotCode") != self.robot_code:
            raise _ApiError(400, "invalidParameter.robotCode", "robotCode invalid")
        if params.get("msgKey") not in MESSAGE_KEYS:
            raise _ApiError(400, "invalidParameter.msgKey", "msgKey invalid")
        raw = params.get("msgParam")
        if not isinstance(raw, str) or len(raw.encode()) > MSG_PARAM_LIMIT_BYTES:
            raise _ApiError(400, "invalidParameter.msgParam", "msgParam missing or over 15000 bytes")
        param = json.loads(raw)
        if params["msgKey"] == "sampleImageMsg":
            data = self.media.get(param.get("photoURL", ""))
            if data is None:
                raise _ApiError(400, "invalidParameter.photoURL", "photoURL invalid")
            return None, [data]
        return param.get("content") or param.get("text"), []

    # -- oapi -------------------------------------------------------------------------------

    def _send_by_session(self, call: dict) -> Response:
        session = self.sessions.get(call["params"].get("session", ""))
        if session is None:
            raise _OapiError(300001, "session invalid")
        if session["expires_ms"] <= time.time() * 1000:
            raise _OapiError(SESSION_EXPIRED, "session expired")
        self.record_sent(call, _oapi_text(call["params"]))
        return json_response({"errcode": 0, "errmsg": "ok"})

    def _robot_send(self, call: dict) -> Response:
        params = call["params"]
        if params.get("access_token") != self.robot_token:
            raise _OapiError(300001, "token is not exist")
        timestamp, sign = str(params.get("timestamp", "")), params.get("sign", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
            raise _OapiError(310000, "sign not match, more: [timestamp invalid]")
        if not hmac.compare_digest(sign, signature(self.robot_secret, timestamp)):
            raise _OapiError(310000, "sign not match")
        text = _oapi_text(params)
        if self.robot_rate_limit is not None:
            now = time.monotonic()
            while self._robot_sends and now - self._robot_sends[0] >= 60:
                self._robot_sends.popleft()
            if len(self._robot_sends) >= self.robot_rate_limit:
                raise _OapiError(130101, "send too fast, exceed 20 times per minute")
            self._robot_sends.append(now)
        self.record_sent(call, text)
        return json_response({"errcode": 0, "errmsg": "ok"})

    def _media_upload(self, call: dict) -> Response:
        if self._token_expiry.get(call["params"].get("access_token", ""), float("-inf")) <= time.monotonic():
            raise _OapiError(40014, "不合法的access_token")
        upload = call["files"].get("media")
        if call["params"].get("type") != "image" or upload is None or not upload["data"].startswith(b"\x89PNG"):
            raise _OapiError(40005, "不支持的文件格式")
        media_id = "@lA" + secrets.token_urlsafe(24)
        self.media[media_id] = upload["data"]
        self.uploaded_images.append(upload["data"])
        return json_response({"errcode": 0, "errmsg": "ok", "type": "image", "media_id": media_id,
                              "created_at": int(time.time() * 1000)})


fake_dingtalk = fake_fixture(FakeDingTalk, name="fake_dingtalk")


def _oapi_text(params: dict) -> str:
    msgtype = params.get("msgtype")
    content = (params.get(msgtype) or {}) if isinstance(msgtype, str) else {}
    text = content.get("content") if msgtype == "text" else content.get("text")
    if msgtype not in ("text", "markdown") or not text:
        raise _OapiError(40035, "缺少参数 content")
    if len(json.dumps(params, ensure_ascii=False).encode()) > 20000:
        raise _OapiError(460101, "message too long, exceed 20000 bytes")
    return text


def _answer_api_errors(handler):
    def serve_call(call: dict) -> Response:
        try:
            return handler(call)
        except _ApiError as error:
            return json_response({"code": error.code, "message": error.message,
                                  "requestid": secrets.token_hex(8)}, error.status)

    return serve_call


def _answer_oapi_errors(handler):
    def serve_call(call: dict) -> Response:
        try:
            return handler(call)
        except _OapiError as error:
            return json_response({"errcode": error.errcode, "errmsg": error.errmsg})

    return serve_call


# -- Stream mode ----------------------------------------------------------------------------


@dataclass
class Frame:
    """A frame the gateway sent, and the acknowledgement it got (``ack``: the client's JSON)."""

    message_id: str
    kind: str
    topic: str
    connection: int
    sent_at: float
    ack: dict | None = None
    acked_at: float | None = None

    @property
    def ack_delay_s(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


class StreamGateway(TicketedGateway):
    """DingTalk's Stream gateway on a real WebSocket server on 127.0.0.1 (developerpedia, Stream protocol).

    ``issue()`` answers connections/open: ``{endpoint, ticket}``; a ticket opens one connection
    (``?ticket=``), others get HTTP 401 before the upgrade. Frames are ``{specVersion, type, headers{appId,
    connectionId, contentType, messageId, time, topic}, data}`` with ``data`` a JSON string; every one must be
    acknowledged with ``{code, headers{messageId, contentType}, message, data}``, a ``ping`` with its
    ``opaque`` echoed in ``data``. ``send_callback`` gives a robot message to ONE open connection (DingTalk
    picks one at random; here round robin) and never sends it again, as DingTalk does for robot messages.
    ``disconnect()`` sends the ``disconnect`` system frame and closes the connection a little later;
    ``drop_connections()`` cuts them without a close frame. Anything a client sends that is no acknowledgement of
    a frame sent is in ``protocol_errors``.
    """

    kind = "Stream"

    def __init__(self, changed: threading.Condition, app_id: str) -> None:
        super().__init__(changed, app_id)
        self.frames: dict[str, Frame] = {}

    def issue(self) -> dict:
        ticket, port = self.new_ticket()
        return {"endpoint": f"ws://127.0.0.1:{port}/connect", "ticket": ticket}

    # -- what tests do ------------------------------------------------------------------

    def send_callback(self, message: dict, timeout: float = 10.0) -> str:
        """A robot message (the callback body) to one open connection; the frame's messageId."""
        return self._send("CALLBACK", CALLBACK_TOPIC, message, timeout)

    def ping(self, timeout: float = 10.0) -> str:
        return self._send("SYSTEM", "ping", {"opaque": str(uuid.uuid4())}, timeout)

    def disconnect(self, close_after_s: float = 1.0) -> None:
        """The ``disconnect`` system frame to every connection, closed ``close_after_s`` later (DingTalk: 10 s)."""
        with self.changed:
            leaving = list(self.connections)
        for connection in leaving:
            with self.changed:
                message_id, frame = self._frame("SYSTEM", "disconnect", {"reason": "refresh"}, connection)
                self.frames[message_id] = Frame(message_id, "SYSTEM", "disconnect", connection.number, time.monotonic())
            self._say(connection, frame)
        self.close_later(leaving, close_after_s)

    # -- the protocol -------------------------------------------------------------------------

    def _sent(self) -> dict[str, Frame]:
        return self.frames

    def _received(self, raw: str | bytes) -> None:
        with self.changed:
            try:
                ack = json.loads(raw)
                frame = self.frames[ack["headers"]["messageId"]]
                json.loads(ack["data"])  # data is a JSON string
                int(ack["code"])
            except (ValueError, KeyError, TypeError):
                self.protocol_errors.append(f"not an acknowledgement of a frame sent: {raw!r}")
                return
            if frame.ack is not None:
                self.protocol_errors.append(f"frame {frame.message_id} acknowledged twice")
            else:
                frame.ack, frame.acked_at = ack, time.monotonic()
            self.changed.notify_all()

    def _send(self, kind: str, topic: str, data: dict, timeout: float) -> str:
        with self.changed:
            connection = self._next_connection(timeout)
            message_id, frame = self._frame(kind, topic, data, connection)
            self.frames[message_id] = Frame(message_id, kind, topic, connection.number, time.monotonic())
        self._say(connection, frame)  # one gone meanwhile: DingTalk does not send a robot message again
        return message_id

    def _frame(self, kind: str, topic: str, data: dict, connection: Connection) -> tuple[str, dict]:
        message_id = f"{uuid.uuid4().hex[:8]}_{uuid.uuid4().hex[:12]}"
        return message_id, {"specVersion": "1.0", "type": kind, "headers": {
            "appId": self.app_id, "connectionId": f"conn-{connection.number}", "contentType": "application/json",
            "messageId": message_id, "time": str(int(time.time() * 1000)), "topic": topic,
        }, "data": json.dumps(data, ensure_ascii=False)}


# -- inbound messages ---------------------------------------------------------------------------


def robot_message(msgtype: str, body: dict, *, fake: FakeDingTalk | None = None, conversation_type: str = "1",
                  conversation_id: str | None = None, sender_staff_id: str = DEFAULT_STAFF_ID,
                  msg_id: str | None = None, session: tuple[str, int] | None = None,
                  robot_code: str = DEFAULT_CLIENT_ID) -> dict:
    """A robot message as DingTalk delivers it (HTTP body, or a Stream frame's data); with ``fake``, it carries a
    session webhook of the fake (or ``session``)."""
    conversation_id = conversation_id or (DEFAULT_GROUP if conversation_type == "2" else
                                          "cidOneToOne" + secrets.token_urlsafe(16))
    message = {
        "conversationId": conversation_id,
        "chatbotCorpId": "dingfakecorp",
        "chatbotUserId": "$:LWCP_v1:$fakebot",
        "msgId": msg_id or "msg" + secrets.token_urlsafe(16),
        "senderNick": "张三",
        "isAdmin": False,
        "senderStaffId": sender_staff_id,
        "createAt": int(time.time() * 1000),
        "conversationType": conversation_type,
        "senderId": "$:LWCP_v1:$" + secrets.token_urlsafe(12),
        "senderCorpId": "dingfakecorp",
        "robotCode": robot_code,
        "msgtype": msgtype,
        **body,
    }
    if conversation_type == "2":
        message.update(conversationTitle="客服群 Support", isInAtList=True, atUsers=[{"dingtalkId": "$:LWCP"}])
    if session is None and fake is not None:
        session = fake.session_webhook(conversation_id)
    if session is not None:
        message.update(sessionWebhook=session[0], sessionWebhookExpiredTime=session[1])
    return message


def voice_message(download_code: str, *, duration_ms: int | None = 3000, **options: Any) -> dict:
    """``msgtype: audio``: the download code, the duration in ms, and DingTalk's own recognition of it."""
    content = {"downloadCode": download_code, "recognition": "你好"}
    if duration_ms is not None:
        content["duration"] = duration_ms
    return robot_message("audio", {"content": content}, **options)


def text_message(text: str, **options: Any) -> dict:
    return robot_message("text", {"text": {"content": text}}, **options)


def callback_request(message: dict, *, secret: str = DEFAULT_CLIENT_SECRET, timestamp_ms: int | None = None,
                     forged: bool = False) -> InboundRequest:
    """The POST of a robot's HTTP mode: the message as JSON, ``timestamp`` and ``sign`` headers (``forged``: signed
    with another secret)."""
    stamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    sign = signature("SECforged" if forged else secret, stamp)
    body = json.dumps(message, ensure_ascii=False).encode()
    return InboundRequest("POST", {"Content-Type": "application/json; charset=utf-8", "timestamp": stamp,
                                   "sign": sign}, body)
