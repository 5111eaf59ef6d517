"""A loopback Feishu/Lark Open API and long-connection endpoint, and genuine encrypted, signed events.

The fake answers on ``/open-apis/...`` as open.feishu.cn does for one app
bot: ``auth/v3/tenant_access_token/internal`` (tokens live ``token_ttl``
seconds), the message resource download, ``messages`` (send to a chat),
``messages/{id}/reply``, ``messages/{id}/reactions``, ``PATCH messages/{id}``
(interactive cards with ``update_multi`` only) and ``images`` (uploads).
Every answer is ``{"code": 0, "msg": "success", "data": ...}``; failures
carry a non-zero ``code``: 99991663 for an invalid or expired tenant token
(HTTP 400), 99991400 with HTTP 429 and ``x-ogw-ratelimit-reset`` for a
rate limit. Texts are kept as people would read them in ``sent_messages``.

Events are built as Feishu sends them with an Encrypt Key: the JSON payload
(schema 2.0) sealed with AES-256-CBC (key SHA-256 of the Encrypt Key, a
random IV in front, PKCS7; pycryptodome here, an implementation apart from
the adapter's), and ``X-Lark-Signature`` = SHA-256 of timestamp, nonce,
Encrypt Key and body.

The long connection (``long_connection``): ``POST /callback/ws/endpoint``
with ``AppID``/``AppSecret`` answers a ``ws://127.0.0.1`` URL (with
``device_id`` and ``service_id``) and a ``ClientConfig`` (reconnect at once,
in tests); the WebSocket speaks lark-oapi's protobuf ``pbbp2.Frame``s (the
SDK's own generated classes): data frames (method 1) with headers ``type``
``event``, ``message_id``, ``trace_id``, ``sum``, ``seq`` carry events;
the client echoes each frame with the payload ``{"code": 200}`` (or 500) as
its acknowledgement and sends ``ping`` control frames (method 0), answered
``pong``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve
from werkzeug.wrappers import Request, Response

from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response

DEFAULT_APP_ID = "cli_a1b2c3d4e5f60001"
DEFAULT_APP_SECRET = "FakeLoopbackAppSecret0123456789abcd"
DEFAULT_VERIFICATION_TOKEN = "FakeVerificationToken0123456789ab"
DEFAULT_ENCRYPT_KEY = "FakeEncryptKey0123456789abcdefgh"
DEFAULT_CHAT_ID = "oc_5ad11d72b830411d72b836c20f0e0001"
DEFAULT_OPEN_ID = "ou_7d8a6e6df7621556ce0d21922b676701"
TOKEN_INVALID = 99991663
RATE_LIMITED = 99991400
MAX_CARD_BYTES = 30 * 1024
MAX_POST_BYTES = 30 * 1024
_MESSAGE_PATH = re.compile(r"^/open-apis/im/v1/messages/(?P<id>[^/]+)(?:/(?P<what>reply|reactions|resources)"
                           r"(?:/(?P<key>[^/]+))?)?$")


class FeishuError(Exception):
    """Raised inside handlers; becomes ``{"code": code, "msg": msg}`` with ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


def message_id() -> str:
    return "om_" + secrets.token_hex(16)


class FakeFeishu(FakePlatformServer):
    """One app bot of one tenant. ``token_ttl``: the ``expire`` of tenant tokens (7200 s in production)."""

    REAL_BASE_URLS = ("https://open.feishu.cn/", "https://open.larksuite.com/")

    def __init__(self, app_id: str = DEFAULT_APP_ID, app_secret: str = DEFAULT_APP_SECRET, *,
                 token_ttl: int = 7200) -> None:
        super().__init__()
        self.app_id, self.app_secret, self.token_ttl = app_id, app_secret, token_ttl
        self.resources: dict[tuple[str, str], bytes] = {}  # (message_id, file_key) -> bytes
        self.messages: dict[str, dict] = {}  # message_id -> what was posted (msg_type, content, chat)
        self.reactions: list[dict] = []
        self.patches: list[dict] = []
        self.images: dict[str, bytes] = {}
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.long_connection = LongConnection(self._changed, app_id)

    def start(self) -> FakeFeishu:
        super().start()
        self.long_connection.start()
        return self

    def stop(self) -> None:
        self.long_connection.stop()
        super().stop()

    # -- test set-up and control -----------------------------------------------------

    def add_voice(self, data: bytes, *, message: str | None = None) -> tuple[str, str]:
        """A voice message's audio as the resource API serves it: (message_id, file_key)."""
        key = (message or message_id(), "file_v3_" + secrets.token_hex(12))
        with self._lock:
            self.resources[key] = data
        return key

    def expire_tokens(self) -> None:
        """Every tenant token issued so far stops working (code 99991663 from now on)."""
        with self._lock:
            self._tokens = {token: float("-inf") for token in self._tokens}

    @property
    def token_calls(self) -> int:
        return len(self.calls("tenant_access_token"))

    # -- routing ---------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        path, method = request.path, request.method
        if path == "/open-apis/auth/v3/tenant_access_token/internal" and method == "POST":
            return Route("tenant_access_token", _answer_errors(self._issue_token), "json")
        if path == "/callback/ws/endpoint" and method == "POST":
            return Route("endpoint", self._endpoint, "json")
        if path == "/open-apis/im/v1/messages" and method == "POST":
            return Route("messages", self._authorised(self._send), "json")
        if path == "/open-apis/im/v1/images" and method == "POST":
            return Route("images", self._authorised(self._upload_image))
        match = _MESSAGE_PATH.match(path)
        if match is None:
            return None
        what = match["what"]
        if what is None and method == "PATCH":
            return Route("patch", self._authorised(self._patch), "json")
        if what == "resources" and match["key"] and method == "GET":
            return Route("resources", self._authorised(self._resource), "raw")
        if what == "reply" and method == "POST":
            return Route("reply", self._authorised(self._reply), "json")
        if what == "reactions" and method == "POST":
            return Route("reactions", self._authorised(self._react), "json")
        return None

    def _authorised(self, handler):
        def serve(call: dict) -> Response:
            token = call["headers"].get("Authorization", "").removeprefix("Bearer ")
            if self._tokens.get(token, float("-inf")) <= time.monotonic():
                raise FeishuError(TOKEN_INVALID, "Invalid access token for authorization. Please make a request "
                                                 "with token attached.")
            return handler(call)

        return _answer_errors(serve)

    # -- error shapes --------------------------------------------------------------------

    def render_failure(self, call: dict, status: int) -> Response:
        return json_response({"code": 99991672 if status < 500 else 1500, "msg": f"injected HTTP {status}"},
                             status)

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return json_response({"code": RATE_LIMITED, "msg": "request trigger frequency limit"}, 429,
                             headers={"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(retry_after)})

    # -- the API ------------------------------------------------------------------------

    def _issue_token(self, call: dict) -> dict:
        params = call["params"]
        if (params.get("app_id"), params.get("app_secret")) != (self.app_id, self.app_secret):
            raise FeishuError(10014, "app secret invalid")
        token = "t-" + secrets.token_hex(20)
        self._tokens[token] = time.monotonic() + self.token_ttl
        return {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": self.token_ttl}

    def _endpoint(self, call: dict) -> Response:
        params = call["params"]
        if (params.get("AppID"), params.get("AppSecret")) != (self.app_id, self.app_secret):
            return json_response({"code": 403, "msg": "forbidden: app id or app secret invalid"})
        return json_response({"code": 0, "msg": "ok", "data": {
            "URL": self.long_connection.issue_url(),
            "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                             "PingInterval": 120}}})

    def _resource(self, call: dict) -> Response:
        match = _MESSAGE_PATH.match(call["path"])
        if call["params"].get("type") != "file":
            raise FeishuError(234001, "Invalid request param.")
        data = self.resources.get((match["id"], match["key"]))
        if data is None:
            raise FeishuError(234003, "File not in msg.")
        return Response(data, content_type="application/octet-stream")

    def _send(self, call: dict) -> dict:
        params = call["params"]
        if call["params"].get("receive_id_type") != "chat_id" or not params.get("receive_id"):
            raise FeishuError(230001, "Your request contains an invalid request parameter.")
        return self._deliver(call, params["receive_id"], None)

    def _reply(self, call: dict) -> dict:
        replied_to = _MESSAGE_PATH.match(call["path"])["id"]
        return self._deliver(call, self.messages.get(replied_to, {}).get("chat_id"), replied_to)

    def _deliver(self, call: dict, chat_id: str | None, replied_to: str | None) -> dict:
        params = call["params"]
        kind, content = params.get("msg_type"), json.loads(params.get("content") or "null")
        if kind == "interactive":
            _check_card(content, params["content"])
            text, images = _card_text(content), []
        elif kind == "post":
            if len(params["content"].encode()) > MAX_POST_BYTES:
                raise FeishuError(230025, "The length of the message content reaches its limit.")
            text, images = _post_text(content), [self.images[key] for key in _post_images(content)]
        else:
            raise FeishuError(230001, f"unsupported msg_type in this fake: {kind}")
        sent_id = message_id()
        self.messages[sent_id] = {"msg_type": kind, "content": content, "chat_id": chat_id,
                                  "replied_to": replied_to, "reply_in_thread": params.get("reply_in_thread")}
        self.record_sent(call, text, images)
        return {"code": 0, "msg": "success", "data": {"message_id": sent_id, "chat_id": chat_id,
                                                       "msg_type": kind}}

    def _react(self, call: dict) -> dict:
        emoji = (call["params"].get("reaction_type") or {}).get("emoji_type")
        if not emoji or not emoji.isupper():
            raise FeishuError(231001, "reaction type is invalid.")
        self.reactions.append({"message_id": _MESSAGE_PATH.match(call["path"])["id"], "emoji_type": emoji})
        self.record_sent(call, None)
        return {"code": 0, "msg": "success", "data": {"reaction_id": secrets.token_hex(8)}}

    def _patch(self, call: dict) -> dict:
        target = _MESSAGE_PATH.match(call["path"])["id"]
        posted = self.messages.get(target)
        if posted is None or posted["msg_type"] != "interactive":
            raise FeishuError(230001, "only interactive cards can be updated")
        if not posted["content"].get("config", {}).get("update_multi"):
            raise FeishuError(230099, "the card is not shared (update_multi): it cannot be updated for everyone")
        content = json.loads(call["params"]["content"])
        _check_card(content, call["params"]["content"])
        posted["content"] = content
        self.patches.append({"message_id": target, "card": content, "text": _card_text(content)})
        return {"code": 0, "msg": "success", "data": {}}

    def _upload_image(self, call: dict) -> dict:
        image = call["files"].get("image")
        if call["params"].get("image_type") != "message" or image is None:
            raise FeishuError(234001, "Invalid request param.")
        key = "img_v3_" + secrets.token_hex(12)
        self.images[key] = image["data"]
        self.uploaded_images.append(image["data"])
        return {"code": 0, "msg": "success", "data": {"image_key": key}}


fake_feishu = fake_fixture(FakeFeishu, "fake_feishu")


def _answer_errors(handler):
    def answered(call: dict) -> Response:
        try:
            result = handler(call)
        except FeishuError as error:
            return json_response({"code": error.code, "msg": error.msg}, error.status)
        return result if isinstance(result, Response) else json_response(result)

    return answered


def _check_card(card: Any, raw: str) -> None:
    if len(raw.encode()) > MAX_CARD_BYTES:
        raise FeishuError(230025, "The length of the message content reaches its limit.")
    if not isinstance(card, dict) or not isinstance(card.get("elements"), list):
        raise FeishuError(230001, "invalid card content")


def _card_text(card: dict) -> str:
    lines = [card.get("header", {}).get("title", {}).get("content", "")]
    for element in card["elements"]:
        if element.get("tag") == "div":
            lines.append(element["text"]["content"])
    return "\n".join(lines)


def _post_text(post: dict) -> str:
    [body] = post.values()
    return "\n".join("".join(item["text"] for item in paragraph if item["tag"] == "text")
                     for paragraph in body["content"] if any(item["tag"] == "text" for item in paragraph))


def _post_images(post: dict) -> list[str]:
    [body] = post.values()
    return [item["image_key"] for paragraph in body["content"] for item in paragraph if item["tag"] == "img"]


def card_buttons(card: dict) -> list[dict]:
    """The buttons of a card as posted (value buttons, and the link button)."""
    return [button for element in card["elements"] if element.get("tag") == "action" for button in element["actions"]]


# -- events as Feishu sends them ---------------------------------------------------------


def seal(payload: dict, encrypt_key: str = DEFAULT_ENCRYPT_KEY) -> bytes:
    """``{"encrypt": ...}``: the payload sealed with the Encrypt Key (AES-256-CBC, random IV in front)."""
    iv = secrets.token_bytes(16)
    cipher = AES.new(hashlib.sha256(encrypt_key.encode()).digest(), AES.MODE_CBC, iv)
    sealed = iv + cipher.encrypt(pad(json.dumps(payload, ensure_ascii=False).encode(), AES.block_size))
    return json.dumps({"encrypt": base64.b64encode(sealed).decode()}).encode()


def event_request(payload: dict, *, encrypt_key: str = DEFAULT_ENCRYPT_KEY, timestamp: int | None = None,
                  signed_with: str | None = None, signed: bool = True) -> InboundRequest:
    """The POST Feishu makes: the sealed payload and its ``X-Lark-*`` headers (``signed_with``: another key)."""
    body = seal(payload, encrypt_key)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signed:
        stamp, nonce = str(int(time.time()) if timestamp is None else timestamp), secrets.token_hex(8)
        signature = hashlib.sha256((stamp + nonce + (signed_with or encrypt_key)).encode() + body).hexdigest()
        headers.update({"X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
                        "X-Lark-Signature": signature})
    return InboundRequest("POST", headers, body)


def envelope(event_type: str, event: dict, *, token: str = DEFAULT_VERIFICATION_TOKEN,
             event_id: str | None = None, app_id: str = DEFAULT_APP_ID) -> dict:
    """An event subscription v2 payload (schema 2.0)."""
    return {"schema": "2.0", "header": {
        "event_id": event_id or secrets.token_hex(16), "event_type": event_type,
        "create_time": str(int(time.time() * 1000)), "token": token, "app_id": app_id,
        "tenant_key": "2ca1d211f64f6438"}, "event": event}


def message_event(message_type: str, content: dict, *, message: str | None = None, chat_id: str = DEFAULT_CHAT_ID,
                  sender_type: str = "user", root_id: str | None = None, open_id: str = DEFAULT_OPEN_ID,
                  **fields) -> dict:
    """``im.message.receive_v1`` for one message in a group chat, sent by ``open_id``."""
    event = {
        "sender": {"sender_id": {"open_id": open_id, "union_id": "on_" + "1" * 32, "user_id": "7g1b2c3d"},
                   "sender_type": sender_type, "tenant_key": "2ca1d211f64f6438"},
        "message": {"message_id": message or message_id(), "root_id": root_id, "parent_id": root_id,
                    "create_time": str(int(time.time() * 1000)), "chat_id": chat_id, "chat_type": "group",
                    "message_type": message_type, "content": json.dumps(content, ensure_ascii=False),
                    "mentions": []},
    }
    return envelope("im.message.receive_v1", event, **fields)


def voice_event(voice: tuple[str, str], *, duration_ms: int = 3000, **fields) -> dict:
    """A voice message (``audio``) whose audio the fake holds (``FakeFeishu.add_voice``)."""
    message, file_key = voice
    return message_event("audio", {"file_key": file_key, "duration": duration_ms}, message=message, **fields)


def recall_event(message: str, *, chat_id: str = DEFAULT_CHAT_ID, recall_type: str = "message_owner",
                 **fields) -> dict:
    """``im.message.recalled_v1``: the message ``message`` was recalled (撤回); the event names no sender."""
    return envelope("im.message.recalled_v1", {"message_id": message, "chat_id": chat_id,
                                               "recall_time": str(int(time.time() * 1000)),
                                               "recall_type": recall_type}, **fields)


def url_verification_request(challenge: str = "ajls384kdjx98XX", *, token: str = DEFAULT_VERIFICATION_TOKEN,
                             encrypt_key: str = DEFAULT_ENCRYPT_KEY) -> InboundRequest:
    """The URL check made when the Request URL is saved: sealed, unsigned."""
    return event_request({"challenge": challenge, "token": token, "type": "url_verification"},
                         encrypt_key=encrypt_key, signed=False)


def card_press(fake: FakeFeishu, card_message: str, value: str, *, open_id: str = DEFAULT_OPEN_ID,
               event_id: str | None = None) -> dict:
    """``card.action.trigger``: someone presses the button ``value`` on the card ``card_message``."""
    posted = fake.messages[card_message]
    [button] = [b for b in card_buttons(posted["content"]) if (b.get("value") or {}).get("bot_bridge_case") == value]
    return envelope("card.action.trigger", {
        "operator": {"tenant_key": "2ca1d211f64f6438", "open_id": open_id, "union_id": "on_" + "2" * 32},
        "token": "c-" + secrets.token_hex(16),
        "action": {"value": button["value"], "tag": "button"},
        "host": "im_message",
        "context": {"open_message_id": card_message, "open_chat_id": posted["chat_id"]},
    }, event_id=event_id)


# -- the long connection -----------------------------------------------------------------


def long_connection_environment(fake: FakeFeishu) -> dict[str, str]:
    """App ID and Secret alone: the long connection, no public URL."""
    return {"FEISHU_APP_ID": fake.app_id, "FEISHU_APP_SECRET": fake.app_secret, "FEISHU_API_BASE": fake.base_url}


def new_frame(**fields):
    """A ``pbbp2.Frame``, lark-oapi's own generated class (imported on first use: the SDK takes seconds to
    import, which tests that never open a long connection need not pay)."""
    from lark_oapi.ws.pb.pbbp2_pb2 import Frame

    return Frame(**fields)


@dataclass
class Delivery:
    """One event frame sent over the long connection, and the client's acknowledgement of it."""

    message_id: str
    payload: dict
    sent_at: float
    ack_code: int | None = None
    acked_at: float | None = None


class LongConnection:
    """The WebSocket side of the fake: ``send_event`` gives a payload to one open connection (Feishu's
    "cluster mode": no broadcast); acknowledgements and pings are recorded; ``drop_connections`` cuts them."""

    def __init__(self, changed: threading.Condition, app_id: str) -> None:
        self.changed = changed
        self.app_id = app_id
        self.deliveries: dict[str, Delivery] = {}
        self.connections: list[ServerConnection] = []
        self.connections_opened = 0
        self.pings = 0
        self.protocol_errors: list[str] = []
        self._devices: set[str] = set()
        self._turn = itertools.count()
        self._server: Server | None = None

    def start(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0, process_request=self._check_device, compression=None)
        threading.Thread(target=self._server.serve_forever, name="FakeFeishu-long-connection", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def issue_url(self) -> str:
        device = secrets.token_hex(8)
        self._devices.add(device)
        port = self._server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/v2?fpid=493&aid=552564&device_id={device}&service_id=33554678"

    def send_event(self, payload: dict, timeout: float = 10.0) -> str:
        """Hand an event to one open connection (waiting for one); the frame's message id."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no long connection to send an event to within {timeout} s")
                self.changed.wait(left)
            connection = self.connections[next(self._turn) % len(self.connections)]
            delivery = Delivery("msg_" + secrets.token_hex(8), payload, time.monotonic())
            self.deliveries[delivery.message_id] = delivery
        frame = new_frame(SeqID=1, LogID=1, service=33554678, method=1,
                      payload=json.dumps(payload, ensure_ascii=False).encode())
        for key, value in (("type", "event"), ("message_id", delivery.message_id), ("sum", "1"), ("seq", "0"),
                           ("trace_id", secrets.token_hex(8))):
            header = frame.headers.add()
            header.key, header.value = key, value
        with contextlib.suppress(ConnectionClosed, OSError):
            connection.send(frame.SerializeToString())
        return delivery.message_id

    def wait_for_ack(self, delivery_id: str, timeout: float = 10.0) -> Delivery:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.deliveries[delivery_id].acked_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"event frame {delivery_id} not acknowledged within {timeout} s")
                self.changed.wait(left)
            return self.deliveries[delivery_id]

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.connections) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.connections)} long connection(s) after {timeout} s, not {count}")
                self.changed.wait(left)

    def drop_connections(self) -> None:
        """Cut every open connection without a close frame, as a dead network does; none is open after it."""
        with self.changed:
            dropped, self.connections = self.connections, []
        for connection in dropped:
            with contextlib.suppress(OSError):
                connection.socket.shutdown(socket.SHUT_RDWR)
            connection.socket.close()

    def _check_device(self, connection: ServerConnection, request) -> Any:
        device = dict(part.split("=", 1) for part in request.path.split("?", 1)[-1].split("&")).get("device_id")
        with self.changed:
            if device not in self._devices:
                return connection.respond(403, "unknown device_id\n")
            self._devices.discard(device)
        return None

    def _session(self, websocket: ServerConnection) -> None:
        with self.changed:
            self.connections.append(websocket)
            self.connections_opened += 1
            self.changed.notify_all()
        try:
            for data in websocket:
                self._received(websocket, data)
        except ConnectionClosed:
            pass
        finally:
            with self.changed:
                if websocket in self.connections:  # not already dropped
                    self.connections.remove(websocket)
                self.changed.notify_all()

    def _received(self, websocket: ServerConnection, data: bytes | str) -> None:
        frame = new_frame()
        try:
            frame.ParseFromString(data if isinstance(data, bytes) else data.encode())
            headers = {header.key: header.value for header in frame.headers}
        except Exception as error:  # noqa: BLE001 - anything unreadable is a protocol error
            with self.changed:
                self.protocol_errors.append(f"unreadable frame ({error}): {data!r}")
            return
        if frame.method == 0 and headers.get("type") == "ping":
            with self.changed:
                self.pings += 1
            pong = new_frame(SeqID=0, LogID=0, service=frame.service, method=0)
            header = pong.headers.add()
            header.key, header.value = "type", "pong"
            with contextlib.suppress(ConnectionClosed, OSError):
                websocket.send(pong.SerializeToString())
            return
        with self.changed:
            delivery = self.deliveries.get(headers.get("message_id", ""))
            if frame.method != 1 or delivery is None:
                self.protocol_errors.append(f"not an acknowledgement of a known event: {headers}")
            elif delivery.acked_at is not None:
                self.protocol_errors.append(f"event frame {delivery.message_id} acknowledged twice")
            else:
                delivery.ack_code = json.loads(frame.payload).get("code")
                delivery.acked_at = time.monotonic()
            self.changed.notify_all()
