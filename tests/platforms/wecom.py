"""A loopback WeCom (企业微信) server API, and genuine encrypted callbacks built with wechatpy.

The fake answers on ``/cgi-bin/<api>`` like qyapi.weixin.qq.com: gettoken,
media/get, media/upload, message/send, message/update_template_card, and the
group robot's webhook/send.
WeCom reports nearly every failure as HTTP 200 with a non-zero ``errcode``
and an ``errmsg`` followed by a hint, e.g.::

    {"errcode": 42001, "errmsg": "access_token expired, hint: [1704540159_ab12], from ip: 127.0.0.1,
     more info at https://open.work.weixin.qq.com/devtool/query?e=42001"}

so clients must compare codes, never messages. Rate limits are errcode 45009
"api freq out of limit" (HTTP 200); wechatpy raises ``APILimitedException``.

wechatpy hard-codes ``https://qyapi.weixin.qq.com/cgi-bin/gettoken``; point it
at the fake with ``fake.route_session(client._http)`` (a requests transport,
no monkeypatching). Its ``media.download`` uses the module-level
``requests.get`` and cannot be routed that way.

Template cards (``message/send`` with ``msgtype: template_card``) are kept
by ``task_id`` in ``cards`` (unique per app, ``[0-9a-zA-Z_-@]``, 128 bytes;
at most 6 buttons, each key 1024 bytes). A ``button_interaction`` card's
send answers a ``response_code``, and so does each press (``press``, which
builds the ``template_card_event`` callback's XML): each is good for one
``update_template_card`` within 72 hours (``age_response_codes`` moves them
into the past). The errcode WeCom gives for a spent or expired code is not
documented; the fake answers 40058 (invalid parameter) naming it.

Callbacks are encrypted and signed with wechatpy's ``WeChatCrypto``; the
defaults are wechatpy's published test vectors.

微信客服 (``kf/sync_msg``, ``kf/send_msg``): ``add_kf_voice``,
``add_kf_recall`` (a ``user_recall_msg`` event) and ``add_kf_message`` put a
customer's message or event in the account's log and
``kf_callback`` builds the ``kf_msg_or_event`` that announces it, with a
sync token good for 10 minutes. ``kf/sync_msg`` pages through the log from
a cursor (``limit``, ``has_more``, ``next_cursor``); without a token it
answers as WeCom says it does, only under a stricter rate limit, which the
fake does not impose.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections import deque
from typing import Any

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from werkzeug.wrappers import Request, Response

from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response

DEFAULT_CALLBACK_TOKEN = "123456"
DEFAULT_ENCODING_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
DEFAULT_CORP_ID = "wx49f0ab532d5d035a"
DEFAULT_CORP_SECRET = "FakeLoopbackCorpSecret-0123456789abcdefABCD"
DEFAULT_AGENT_ID = 1000002
DEFAULT_ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DEFAULT_USER_ID = "zhangsan"
DEFAULT_ECHO = "5927782489442352469"
DEFAULT_OPEN_KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
DEFAULT_KF_CUSTOMER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
TEXT_LIMIT_BYTES = 2048  # message/send truncates text beyond this; the robot rejects it
ROBOT_MARKDOWN_LIMIT_BYTES = 4096
ROBOT_IMAGE_LIMIT_BYTES = 2 * 1024 * 1024
UPLOAD_LIMITS = {"image": 10 << 20, "voice": 2 << 20, "video": 10 << 20, "file": 20 << 20}
RESPONSE_CODE_TTL_S = 72 * 3600
INTERACTIVE_CARDS = ("button_interaction", "vote_interaction", "multiple_interaction")
MAX_CARD_BUTTONS, MAX_BUTTON_KEY_BYTES, MAX_TASK_ID_BYTES = 6, 1024, 128
_PNG_OR_JPEG = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class WeComError(Exception):
    """Raised inside handlers; becomes HTTP 200 ``{"errcode": code, "errmsg": "... hint ..."}``."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def _error_body(errcode: int, errmsg: str) -> dict:
    hint = f"{int(time.time())}_{secrets.token_hex(8)}"
    return {"errcode": errcode,
            "errmsg": f"{errmsg}, hint: [{hint}], from ip: 127.0.0.1, "
                      f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"}


class FakeWeCom(FakePlatformServer):
    """One self-built app (corp id, secret, agent id) plus one group robot.

    ``token_ttl`` is the ``expires_in`` of access tokens (7200 s in production);
    ``robot_rate_limit`` messages per minute per robot (20 in production, None
    to disable); ``known_users`` makes message/send report unknown recipients.
    """

    REAL_BASE_URLS = ("https://qyapi.weixin.qq.com/",)

    def __init__(self, corp_id: str = DEFAULT_CORP_ID, corp_secret: str = DEFAULT_CORP_SECRET, *,
                 agent_id: int = DEFAULT_AGENT_ID, robot_key: str = DEFAULT_ROBOT_KEY, token_ttl: int = 7200,
                 robot_rate_limit: int | None = 20, known_users: set[str] | None = None) -> None:
        super().__init__()
        self.corp_id = corp_id
        self.corp_secret = corp_secret
        self.agent_id = agent_id
        self.robot_key = robot_key
        self.token_ttl = token_ttl
        self.robot_rate_limit = robot_rate_limit
        self.known_users = known_users
        self.media: dict[str, dict] = {}  # media_id -> {"data", "content_type", "filename"}
        self.cards: dict[str, dict] = {}  # task_id -> the template card as it is now, and to whom it went
        self.card_updates: list[dict] = []  # accepted update_template_card calls' params
        self._response_codes: dict[str, dict] = {}  # code -> {"issued": monotonic time, "used": bool}
        self._token_expiry: dict[str, float] = {}  # issued token -> monotonic expiry
        self._current_token: str | None = None
        self._robot_sends: deque[float] = deque()
        self.kf_log: list[dict] = []  # 微信客服 messages in the order kf/sync_msg hands them out
        self._kf_tokens: dict[str, float] = {}  # callback Token -> monotonic expiry

    # -- test set-up and control ---------------------------------------------------

    def add_media(self, data: bytes, content_type: str = "audio/amr", filename: str | None = None) -> str:
        """Store temporary media (a voice note is AMR) for media/get; returns its ``media_id``."""
        media_id = "1" + secrets.token_urlsafe(48)
        extension = content_type.rsplit("/", 1)[-1]
        with self._lock:
            self.media[media_id] = {"data": data, "content_type": content_type,
                                    "filename": filename or f"{media_id}.{extension}"}
        return media_id

    def expire_token(self) -> None:
        """Expire every issued token now: the next call with one gets errcode 42001."""
        with self._lock:
            self._token_expiry = {token: float("-inf") for token in self._token_expiry}
            self._current_token = None

    def invalidate_token(self) -> None:
        """Revoke every issued token (as after a secret reset): errcode 40014 from now on."""
        with self._lock:
            self._token_expiry.clear()
            self._current_token = None

    def press(self, task_id: str, key: str, *, from_user: str = DEFAULT_USER_ID, create_time: int | None = None,
              corp_id: str = DEFAULT_CORP_ID, agent_id: int = DEFAULT_AGENT_ID) -> str:
        """Someone presses the button ``key`` of the card ``task_id``: the decrypted XML of the
        ``template_card_event`` WeCom sends, with a fresh response_code (for ``callback_request``)."""
        card = self.cards[task_id]["template_card"]
        if key not in [button["key"] for button in card.get("button_list", [])]:
            raise AssertionError(f"card {task_id} has no button {key!r}")
        return template_card_event_xml(task_id, key, self._issue_response_code(), card_type=card["card_type"],
                                       from_user=from_user, create_time=create_time, corp_id=corp_id,
                                       agent_id=agent_id)

    def age_response_codes(self, hours: float) -> None:
        """Every response_code issued so far is ``hours`` older (past 72 h they no longer work)."""
        with self._lock:
            for code in self._response_codes.values():
                code["issued"] -= hours * 3600

    def add_kf_voice(self, data: bytes, *, customer: str = DEFAULT_KF_CUSTOMER,
                     open_kfid: str = DEFAULT_OPEN_KFID) -> str:
        """A customer sends the account a voice note (AMR); returns its msgid."""
        return self.add_kf_message({"origin": 3, "external_userid": customer, "open_kfid": open_kfid,
                                    "msgtype": "voice", "voice": {"media_id": self.add_media(data)}})

    def add_kf_recall(self, recalled: str, *, customer: str = DEFAULT_KF_CUSTOMER,
                      open_kfid: str = DEFAULT_OPEN_KFID) -> str:
        """The customer recalls (撤回) their message ``recalled``: the ``user_recall_msg`` event, a system
        message (origin 4) whose ids are inside ``event``; returns the event's own msgid."""
        return self.add_kf_message({"origin": 4, "msgtype": "event", "event": {
            "event_type": "user_recall_msg", "open_kfid": open_kfid, "external_userid": customer,
            "recall_msgid": recalled}})

    def add_kf_message(self, message: dict) -> str:
        """Append any 微信客服 message or event (``msgid`` and ``send_time`` added); returns its msgid."""
        msgid = secrets.token_hex(16)
        with self._lock:
            self.kf_log.append({"msgid": msgid, "send_time": int(time.time()), **message})
        return msgid

    def kf_callback(self, open_kfid: str = DEFAULT_OPEN_KFID, **options: Any) -> InboundRequest:
        """The ``kf_msg_or_event`` callback announcing new messages, with a fresh sync token."""
        token = "ENC" + secrets.token_urlsafe(24)
        with self._lock:
            self._kf_tokens[token] = time.monotonic() + 600
        xml = (f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName><CreateTime>{int(time.time())}</CreateTime>"
               f"<MsgType>{_cdata('event')}</MsgType><Event>{_cdata('kf_msg_or_event')}</Event>"
               f"<Token>{_cdata(token)}</Token><OpenKfId>{_cdata(open_kfid)}</OpenKfId></xml>")
        return callback_request(xml, corp_id=self.corp_id, **options)

    @property
    def gettoken_calls(self) -> int:
        """How many times gettoken was called (the bot should cache its token)."""
        return len(self.calls("gettoken"))

    # -- routing -------------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        if not request.path.startswith("/cgi-bin/"):
            return None
        name = request.path[len("/cgi-bin/"):]
        # JSON bodies are read as JSON whatever their Content-Type: wechatpy sends none.
        handlers = {
            "gettoken": (self._gettoken, "auto"),
            "media/get": (self._with_token(self._media_get), "auto"),
            "media/upload": (self._with_token(self._media_upload), "auto"),
            "message/send": (self._with_token(self._message_send), "json"),
            "message/update_template_card": (self._with_token(self._update_template_card), "json"),
            "webhook/send": (self._webhook_send, "json"),
            "kf/sync_msg": (self._with_token(self._kf_sync_msg), "json"),
            "kf/send_msg": (self._with_token(self._kf_send_msg), "json"),
        }
        if name not in handlers:
            return None
        handler, body = handlers[name]
        return Route(name, _answer_errors(handler), body)

    def _with_token(self, handler):
        def checked(call: dict) -> Response:
            token = call["params"].get("access_token")
            if not token:
                raise WeComError(41001, "access_token missing")
            expiry = self._token_expiry.get(token)
            if expiry is None:
                raise WeComError(40014, "invalid access_token")
            if expiry <= time.monotonic():
                raise WeComError(42001, "access_token expired")
            return handler(call)

        return checked

    # -- error shapes ---------------------------------------------------------------

    def render_failure(self, call: dict, status: int) -> Response:
        if status == 200:
            return json_response({"errcode": -1, "errmsg": "system busy"})
        page = f"<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
        return Response(page, status=status, content_type="text/html")

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return json_response(_error_body(45009, "api freq out of limit"))

    def render_malformed(self, call: dict) -> Response:
        return json_response(_error_body(47001, "data format error"))

    # -- APIs ---------------------------------------------------------------------------

    def _gettoken(self, call: dict) -> Response:
        params = call["params"]
        if params.get("corpid") != self.corp_id:
            raise WeComError(40013, "invalid corpid")
        if params.get("corpsecret") != self.corp_secret:
            raise WeComError(40001, "invalid credential")
        now = time.monotonic()
        token = self._current_token
        if token is None or self._token_expiry[token] <= now:
            token = secrets.token_urlsafe(96)
            self._token_expiry[token] = now + self.token_ttl
            self._current_token = token
        expires_in = round(self._token_expiry[token] - now)
        return json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in})

    def _media_get(self, call: dict) -> Response:
        stored = self.media.get(call["params"].get("media_id", ""))
        if stored is None:
            raise WeComError(40007, "invalid media_id")
        return Response(stored["data"], content_type=stored["content_type"], headers={
            "Content-disposition": f'attachment; filename="{stored["filename"]}"',
            "Cache-Control": "no-cache, must-revalidate",
        })

    def _media_upload(self, call: dict) -> Response:
        media_type = call["params"].get("type")
        if media_type not in UPLOAD_LIMITS:
            raise WeComError(40004, "invalid media type")
        upload = call["files"].get("media")
        if upload is None:
            raise WeComError(41005, "media data missing")
        data = upload["data"]
        if len(data) < 5 or len(data) > UPLOAD_LIMITS[media_type]:
            raise WeComError(40009 if media_type == "image" else 40006,
                             "invalid image size" if media_type == "image" else "invalid file size")
        if media_type == "image" and not data.startswith(_PNG_OR_JPEG):
            raise WeComError(40005, "invalid file type")
        if media_type == "voice" and not data.startswith(b"#!AMR"):
            raise WeComError(40005, "invalid file type")
        media_id = "3" + secrets.token_urlsafe(48)
        self.media[media_id] = {"data": data, "content_type": upload["content_type"],
                                "filename": upload["filename"] or media_id}
        if media_type == "image":
            self.uploaded_images.append(data)
        return json_response({"errcode": 0, "errmsg": "", "type": media_type, "media_id": media_id,
                              "created_at": str(int(time.time()))})

    def _message_send(self, call: dict) -> Response:
        params = call["params"]
        if str(params.get("agentid", "")) != str(self.agent_id):
            raise WeComError(40056, "invalid agentid")
        recipients = [u for u in str(params.get("touser") or "").split("|") if u]
        if not recipients and not params.get("toparty") and not params.get("totag"):
            raise WeComError(81013, "user & party & tag all invalid")
        invalid = [u for u in recipients if self.known_users is not None and u != "@all"
                   and u not in self.known_users]
        if recipients and len(invalid) == len(recipients) and not params.get("toparty"):
            raise WeComError(81013, "user & party & tag all invalid")
        text, images = self._app_message_content(params)
        answer = {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "invalidparty": "",
                  "invalidtag": "", "unlicenseduser": "", "msgid": secrets.token_urlsafe(32)}
        if params.get("msgtype") == "template_card":
            card = params.get("template_card") or {}
            self.cards[card["task_id"]] = {"template_card": card, "touser": params.get("touser")}
            if card["card_type"] in INTERACTIVE_CARDS:
                answer["response_code"] = self._issue_response_code()
        self.record_sent(call, text, images)
        return json_response(answer)

    def _kf_sync_msg(self, call: dict) -> Response:
        params = call["params"]
        token = params.get("token")
        if token and self._kf_tokens.get(token, float("-inf")) <= time.monotonic():
            raise WeComError(95007, "invalid msg token")
        cursor = params.get("cursor") or "0"
        if not cursor.isdigit() or int(cursor) > len(self.kf_log):
            raise WeComError(95000, "invalid cursor")
        start, limit = int(cursor), min(int(params.get("limit") or 1000), 1000)
        page = self.kf_log[start:start + limit]
        return json_response({"errcode": 0, "errmsg": "ok", "next_cursor": str(start + len(page)),
                              "has_more": int(start + len(page) < len(self.kf_log)), "msg_list": page})

    def _kf_send_msg(self, call: dict) -> Response:
        params = call["params"]
        if params.get("msgtype") not in ("text", "image") or not params.get("touser") or not params.get("open_kfid"):
            raise WeComError(47001, "data format error")
        self.record_sent(call, *self._app_message_content(params))
        return json_response({"errcode": 0, "errmsg": "ok", "msgid": secrets.token_hex(16)})

    def _update_template_card(self, call: dict) -> Response:
        params = call["params"]
        if str(params.get("agentid", "")) != str(self.agent_id):
            raise WeComError(40056, "invalid agentid")
        if not params.get("userids") and not params.get("partyids") and not params.get("tagids") \
                and not params.get("atall"):
            raise WeComError(81013, "user & party & tag all invalid")
        self._spend_response_code(params.get("response_code"))
        card = params.get("template_card")
        if card is not None:
            _check_template_card(card, known_task=True, cards=self.cards)
            self.cards[card["task_id"]]["template_card"] = card
        elif not (params.get("button") or {}).get("replace_name"):
            raise WeComError(40058, "template_card or button.replace_name missing. invalid Request Parameter")
        self.card_updates.append(params)
        return json_response({"errcode": 0, "errmsg": "ok", "invaliduser": []})

    def _issue_response_code(self) -> str:
        code = secrets.token_urlsafe(32)
        self._response_codes[code] = {"issued": time.monotonic(), "used": False}
        return code

    def _spend_response_code(self, code: str | None) -> None:
        """A response_code works once, within 72 hours of being issued."""
        known = self._response_codes.get(code or "")
        if known is None or known["used"] or time.monotonic() - known["issued"] > RESPONSE_CODE_TTL_S:
            raise WeComError(40058, "response_code invalid, used or expired. invalid Request Parameter")
        known["used"] = True

    def _app_message_content(self, params: dict) -> tuple[str | None, list[bytes]]:
        """What the recipient sees; text and markdown beyond 2048 bytes are cut, as WeCom documents."""
        msgtype = params.get("msgtype")
        if msgtype in ("text", "markdown"):
            content = (params.get(msgtype) or {}).get("content") or ""
            if not content:
                raise WeComError(44004, "empty content")
            return _truncate_utf8(content, TEXT_LIMIT_BYTES), []
        if msgtype == "image":
            stored = self.media.get((params.get("image") or {}).get("media_id", ""))
            if stored is None:
                raise WeComError(40007, "invalid media_id")
            return None, [stored["data"]]
        if msgtype == "template_card":
            card = params.get("template_card") or {}
            _check_template_card(card, known_task=False, cards=self.cards)
            title = (card.get("main_title") or {}).get("title", "")
            return "\n".join(part for part in (title, card.get("sub_title_text")) if part), []
        if msgtype in ("voice", "video", "file", "textcard", "news", "mpnews"):
            return None, []
        raise WeComError(40008, "invalid message type")

    def _webhook_send(self, call: dict) -> Response:
        params = call["params"]
        if params.get("key") != self.robot_key:
            raise WeComError(93000, "invalid webhook url")
        msgtype = params.get("msgtype")
        content = (params.get(msgtype) or {}) if isinstance(msgtype, str) else {}
        text, images = None, []
        if msgtype == "text":
            text = _within(content.get("content") or "", TEXT_LIMIT_BYTES, "text.content")
        elif msgtype in ("markdown", "markdown_v2"):
            text = _within(content.get("content") or "", ROBOT_MARKDOWN_LIMIT_BYTES, f"{msgtype}.content")
        elif msgtype == "image":
            images = [_robot_image(content)]
        elif msgtype not in ("news", "file", "voice", "template_card"):
            raise WeComError(40008, "invalid message type")
        self._spend_robot_quota()
        self.record_sent(call, text, images)
        return json_response({"errcode": 0, "errmsg": "ok"})

    def _spend_robot_quota(self) -> None:
        if self.robot_rate_limit is None:
            return
        now = time.monotonic()
        while self._robot_sends and now - self._robot_sends[0] >= 60:
            self._robot_sends.popleft()
        if len(self._robot_sends) >= self.robot_rate_limit:
            raise WeComError(45009, "api freq out of limit")
        self._robot_sends.append(now)


fake_wecom = fake_fixture(FakeWeCom, name="fake_wecom")


def _answer_errors(handler):
    def serve(call: dict) -> Response:
        try:
            return handler(call)
        except WeComError as error:
            return json_response(_error_body(error.errcode, error.errmsg))

    return serve


def _check_template_card(card: dict, *, known_task: bool, cards: dict) -> None:
    """A template card as WeCom takes it: a type, a task_id (new for a send, known for an update), buttons."""
    if card.get("card_type") not in ("text_notice", "news_notice", *INTERACTIVE_CARDS):
        raise WeComError(40058, "template_card.card_type invalid. invalid Request Parameter")
    task_id = card.get("task_id") or ""
    if not re.fullmatch(r"[0-9a-zA-Z_\-@]+", task_id) or len(task_id.encode()) > MAX_TASK_ID_BYTES:
        raise WeComError(40058, "template_card.task_id invalid. invalid Request Parameter")
    if (task_id in cards) != known_task:
        raise WeComError(40058, f"template_card.task_id {'unknown' if known_task else 'duplicated'}. "
                                "invalid Request Parameter")
    buttons = card.get("button_list") or []
    if card["card_type"] == "button_interaction" and not 1 <= len(buttons) <= MAX_CARD_BUTTONS:
        raise WeComError(40058, "template_card.button_list invalid. invalid Request Parameter")
    for button in buttons:
        if not button.get("text") or not 0 < len((button.get("key") or "").encode()) <= MAX_BUTTON_KEY_BYTES:
            raise WeComError(40058, "template_card.button_list.key invalid. invalid Request Parameter")


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _within(content: str, limit: int, field: str) -> str:
    if not content:
        raise WeComError(44004, "empty content")
    if len(content.encode()) > limit:
        raise WeComError(40058, f"{field} exceed max length {limit}. invalid Request Parameter")
    return content


def _robot_image(content: dict) -> bytes:
    """The robot's image message: base64 of a JPG/PNG ≤ 2 MB plus the md5 of the raw bytes."""
    try:
        data = base64.b64decode(content.get("base64") or "", validate=True)
    except ValueError:
        raise WeComError(40058, "image.base64 invalid. invalid Request Parameter") from None
    if not data or len(data) > ROBOT_IMAGE_LIMIT_BYTES:
        raise WeComError(40009, "invalid image size")
    if hashlib.md5(data).hexdigest() != (content.get("md5") or "").lower():
        raise WeComError(40058, "image.md5 invalid. invalid Request Parameter")
    return data


# -- inbound callbacks ---------------------------------------------------------------

FORGERIES = ("signature", "ciphertext", "corp_id", "aes_key")


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def voice_message_xml(media_id: str, *, from_user: str = DEFAULT_USER_ID, corp_id: str = DEFAULT_CORP_ID,
                      agent_id: int = DEFAULT_AGENT_ID, msg_id: int | None = None,
                      create_time: int | None = None, voice_format: str = "amr") -> str:
    """The decrypted XML of a voice message (MsgType voice, MediaId, Format amr)."""
    return _message_xml("voice", from_user, corp_id, agent_id, msg_id, create_time,
                        f"<MediaId>{_cdata(media_id)}</MediaId><Format>{_cdata(voice_format)}</Format>")


def text_message_xml(content: str, *, from_user: str = DEFAULT_USER_ID, corp_id: str = DEFAULT_CORP_ID,
                     agent_id: int = DEFAULT_AGENT_ID, msg_id: int | None = None,
                     create_time: int | None = None) -> str:
    """The decrypted XML of a text message."""
    return _message_xml("text", from_user, corp_id, agent_id, msg_id, create_time,
                        f"<Content>{_cdata(content)}</Content>")


def template_card_event_xml(task_id: str, key: str, response_code: str, *, card_type: str = "button_interaction",
                            from_user: str = DEFAULT_USER_ID, create_time: int | None = None,
                            corp_id: str = DEFAULT_CORP_ID, agent_id: int = DEFAULT_AGENT_ID) -> str:
    """The decrypted XML of a press on a template card's button (``Event template_card_event``, no MsgId)."""
    return (f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName><FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
            f"<Event>{_cdata('template_card_event')}</Event><EventKey>{_cdata(key)}</EventKey>"
            f"<TaskId>{_cdata(task_id)}</TaskId><CardType>{_cdata(card_type)}</CardType>"
            f"<ResponseCode>{_cdata(response_code)}</ResponseCode><AgentID>{agent_id}</AgentID></xml>")


def _message_xml(msg_type: str, from_user: str, corp_id: str, agent_id: int, msg_id: int | None,
                 create_time: int | None, body: str) -> str:
    msg_id = msg_id or secrets.randbits(63)
    create_time = create_time or int(time.time())
    return (f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName><FromUserName>{_cdata(from_user)}</FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType>{_cdata(msg_type)}</MsgType>{body}"
            f"<MsgId>{msg_id}</MsgId><AgentID>{agent_id}</AgentID></xml>")


def _encrypt(plaintext: str, *, token: str, encoding_aes_key: str, corp_id: str, timestamp: str, nonce: str,
             forgery: str | None) -> tuple[str, str]:
    """(Encrypt, msg_signature) as WeCom computes them, optionally forged one of four ways."""
    if forgery is not None and forgery not in FORGERIES:
        raise ValueError(f"forgery must be one of {FORGERIES}")
    if forgery == "corp_id":
        corp_id = "wwforgedcorp0000000"
    if forgery == "aes_key":
        encoding_aes_key = base64.b64encode(secrets.token_bytes(32)).decode()[:43]
    crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
    sealed = xmltodict.parse(crypto.encrypt_message(plaintext, nonce, timestamp))
    encrypt, signature = sealed["xml"]["Encrypt"], sealed["xml"]["MsgSignature"]
    if forgery == "signature":
        signature = hashlib.sha1(signature.encode()).hexdigest()
    if forgery == "ciphertext":
        encrypt = ("A" if encrypt[0] != "A" else "B") + encrypt[1:]
    return encrypt, signature


def verification_request(echo: str = DEFAULT_ECHO, *, token: str = DEFAULT_CALLBACK_TOKEN,
                         encoding_aes_key: str = DEFAULT_ENCODING_AES_KEY, corp_id: str = DEFAULT_CORP_ID,
                         timestamp: int | None = None, nonce: str | None = None,
                         forgery: str | None = None) -> InboundRequest:
    """The GET WeCom sends when the callback URL is saved; the app must answer ``echo`` in plain text."""
    stamp, nonce = str(timestamp or int(time.time())), nonce or str(secrets.randbelow(10**10))
    echostr, signature = _encrypt(echo, token=token, encoding_aes_key=encoding_aes_key, corp_id=corp_id,
                                  timestamp=stamp, nonce=nonce, forgery=forgery)
    query = {"msg_signature": signature, "timestamp": stamp, "nonce": nonce, "echostr": echostr}
    return InboundRequest("GET", {}, b"", query)


def callback_request(message_xml: str, *, token: str = DEFAULT_CALLBACK_TOKEN,
                     encoding_aes_key: str = DEFAULT_ENCODING_AES_KEY, corp_id: str = DEFAULT_CORP_ID,
                     agent_id: int = DEFAULT_AGENT_ID, timestamp: int | None = None, nonce: str | None = None,
                     forgery: str | None = None) -> InboundRequest:
    """The POST WeCom sends for a message: signature in the query, ``<xml><Encrypt>`` in the body.

    ``forgery``: ``"signature"`` (wrong msg_signature), ``"ciphertext"`` (Encrypt
    altered in transit), ``"corp_id"`` (sealed for another corp: signature fine,
    decrypt raises InvalidCorpIdException), ``"aes_key"`` (signed with the right
    token but sealed with another key: decryption yields garbage).
    """
    stamp, nonce = str(timestamp or int(time.time())), nonce or str(secrets.randbelow(10**10))
    encrypt, signature = _encrypt(message_xml, token=token, encoding_aes_key=encoding_aes_key, corp_id=corp_id,
                                  timestamp=stamp, nonce=nonce, forgery=forgery)
    body = (f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName><Encrypt>{_cdata(encrypt)}</Encrypt>"
            f"<AgentID>{_cdata(str(agent_id))}</AgentID></xml>")
    query = {"msg_signature": signature, "timestamp": stamp, "nonce": nonce}
    return InboundRequest("POST", {"Content-Type": "text/xml"}, body.encode(), query)


def _split_options(options: dict[str, Any], message_keys: set[str]) -> tuple[dict, dict]:
    """Split keyword options between the message XML builder and ``callback_request``."""
    envelope = {k: v for k, v in options.items() if k not in message_keys}
    message = {k: v for k, v in options.items() if k in message_keys | {"corp_id", "agent_id"}}
    return message, envelope


def voice_callback(media_id: str, **options: Any) -> InboundRequest:
    """``callback_request(voice_message_xml(media_id))``; options go to whichever takes them."""
    message, envelope = _split_options(options, {"from_user", "msg_id", "create_time", "voice_format"})
    return callback_request(voice_message_xml(media_id, **message), **envelope)


def text_callback(content: str, **options: Any) -> InboundRequest:
    """``callback_request(text_message_xml(content))``; options go to whichever takes them."""
    message, envelope = _split_options(options, {"from_user", "msg_id", "create_time"})
    return callback_request(text_message_xml(content, **message), **envelope)


def kf_environment(fake) -> dict[str, str]:
    """The variables an operator sets for 微信客服, pointed at the fake."""
    return {"WECOM_KF_CORP_ID": fake.corp_id, "WECOM_KF_SECRET": fake.corp_secret,
            "WECOM_KF_TOKEN": DEFAULT_CALLBACK_TOKEN,
            "WECOM_KF_ENCODING_AES_KEY": DEFAULT_ENCODING_AES_KEY, "WECOM_KF_API_BASE": fake.base_url}
