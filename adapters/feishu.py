"""Feishu (飞书) and Lark: an app bot's events in, replies to the voice message out.

* One adapter for both: ``platforms.feishu.domain`` (``FEISHU_DOMAIN``) is
  ``feishu`` (``https://open.feishu.cn``) or ``lark``
  (``https://open.larksuite.com``); the paths are the same.
* Two ways in (``platforms.feishu.mode``, ``FEISHU_MODE``): ``events``
  (event subscription v2: Feishu posts to bot-bridge's public HTTPS URL,
  ``/webhooks/feishu``) or ``connection`` (the long connection of the
  official SDK, ``lark_oapi.ws.Client``: bot-bridge connects out, no public
  URL, no Encrypt Key needed). Without a setting the mode is ``connection``
  when neither an Encrypt Key nor a Verification Token is set.
* Verification (events mode), before anything is stored or downloaded:
  ``X-Lark-Signature`` is SHA-256 (plain, not HMAC) over
  ``X-Lark-Request-Timestamp + X-Lark-Request-Nonce + Encrypt Key + body``,
  compared in constant time; the timestamp must be within 5 minutes (the
  SDK does not check it; a captured event replayed later is refused); the
  body must decrypt (AES-256-CBC, key SHA-256 of the Encrypt Key, the IV
  the first 16 bytes) and carry our Verification Token. An Encrypt Key is
  required in this mode: without one Feishu signs nothing and the token in
  the clear body is the only proof. Feishu leaves its URL check
  (``url_verification``) unsigned; it is answered with its ``challenge``
  only when it decrypts and carries the token, and stores nothing.
* Voice: ``im.message.receive_v1`` with ``message_type: audio`` (Opus;
  ``file_key`` and ``duration`` in ms in ``content``), and ``file``
  messages whose name says audio. Fetched with
  ``GET /open-apis/im/v1/messages/{message_id}/resources/{file_key}?type=file``;
  the URL is built on the configured API origin, so the tenant token goes
  nowhere else. Deliveries are deduplicated on the message id (``om_...``):
  a re-push carries it with its ``event_id``. Messages from apps (this bot's
  own replies included) are ignored; ``help``/``帮助`` gets the help text.
* Recalls (撤回): ``im.message.recalled_v1`` names the recalled message
  (``message_id``, ``chat_id``, ``recall_time``, ``recall_type``: its sender,
  a group owner or manager, or a tenant admin), never who sent it. Whoever
  recalled it, the message is gone from the chat, so the note made from it
  goes too, silently; the delivery is named by its ``event_id``, which a
  re-push keeps. Over the long connection it arrives like every other event
  (``_Recorder`` takes them all), so nothing is registered with the SDK.
* ``tenant_access_token`` (``/open-apis/auth/v3/tenant_access_token/internal``)
  is cached for its ``expire`` less 5 minutes and fetched again when a call
  answers an invalid or expired token (codes 99991663, 99991668, 99991677).
* Replies: ``POST /open-apis/im/v1/messages/{message_id}/reply``, quoting
  the voice message (in its thread when it is in one). Every text goes as a
  ``post`` whose ``text`` elements Feishu shows literally, so nothing needs
  escaping; a chart is uploaded (``/open-apis/im/v1/images``) and joins the
  text in the same post: one message. Rate limits (HTTP 429, code 99991400)
  wait for ``x-ogw-ratelimit-reset`` through the outbound client's rules.
* Reactions (``reply.mode: reaction``):
  ``POST /open-apis/im/v1/messages/{message_id}/reactions`` with Feishu's
  ``emoji_type`` for the emotion (``REACTION_TYPES``).
* Alerts and digests: ``POST /open-apis/im/v1/messages?receive_id_type=chat_id``
  to the target's ``oc_...`` chat. Cases: an interactive card (``update_multi``,
  so an edit shows to everyone) with one button per action, edited with
  ``PATCH /open-apis/im/v1/messages/{message_id}``. Presses come as
  ``card.action.trigger`` callbacks (to the same URL, verified as events are,
  or over the long connection), answered ``{}`` at once, well within 3 s;
  the press's ``event_id`` names it. A press that changed nothing gets a
  reply under the card saying why.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
from typing import Callable
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, WebhookResponse
from bot_bridge.chat.outbound import RateLimited, Rejected, TryAgain, check_status

from ._tokens import CachedToken, TokenRejected
from .base import (CONNECTION, WEBHOOK, ChatAdapter, PostedCard, Refused, TextLimit, check_fresh,
                   deleted_on_platform, text_request)

log = logging.getLogger(__name__)

DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}
MODES = ("events", "connection")
MESSAGE_RECEIVED, MESSAGE_RECALLED = "im.message.receive_v1", "im.message.recalled_v1"
CARD_ACTION = "card.action.trigger"
TOKEN_ERRORS = frozenset({99991663, 99991668, 99991677})  # invalid tenant token, invalid token, token expired
RATE_LIMITED = 99991400  # request trigger frequency limit
#: File names a ``file`` message may have and still be a recording to listen to.
AUDIO_EXTENSIONS = (".opus", ".ogg", ".oga", ".m4a", ".mp3", ".wav", ".amr", ".aac", ".flac", ".webm", ".silk")
#: The key under which a case button's value travels in the card (Feishu hands the object back on a press).
CASE_VALUE_KEY = "bot_bridge_case"
BUTTON_TYPES = {"primary": "primary", "danger": "danger", None: "default"}
#: Feishu's emoji_type for each emotion (its "emojis-introduce" list), for message reactions.
REACTION_TYPES = {
    "angry": "ANGRY",
    "disgusted": "PUKE",
    "fearful": "TERROR",
    "happy": "SMILE",
    "neutral": "DULL",
    "other": "THINKING",
    "sad": "SOB",
    "surprised": "SHOCKED",
    "unknown": "WHAT",
}
#: The most of a case's text a card shows (a card's JSON must stay under 30 KB); its page in the console has it all.
CARD_TEXT_CHARS = 4000
#: How long ``listen`` waits for the SDK's event loop to close its connection when stopping.
SHUTDOWN_WAIT_S = 5.0


class FeishuAdapter(ChatAdapter):
    name = "feishu"
    webhook_path = "feishu"
    environment = {
        "app_id": "FEISHU_APP_ID",
        "app_secret": "FEISHU_APP_SECRET",
        "verification_token": "FEISHU_VERIFICATION_TOKEN",
        "encrypt_key": "FEISHU_ENCRYPT_KEY",
        "domain": "FEISHU_DOMAIN",
        "mode": "FEISHU_MODE",
        "api_base": "FEISHU_API_BASE",
    }
    default_api_base = DOMAINS["feishu"]
    # A post's JSON must stay under 30 KB; 10,000 UTF-8 bytes of text leaves room for its JSON escaping.
    alert_text_limit = TextLimit(10_000, "bytes")
    max_download_bytes = 100 * 1024 * 1024  # the resource API's limit
    can_react = True
    edits_cases = True

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        domain = settings.get("domain") or "feishu"
        if domain not in DOMAINS:
            raise ValueError(f"FEISHU_DOMAIN (platforms.feishu.domain) must be feishu or lark, not {domain!r}")
        self.api_base = (settings.get("api_base") or DOMAINS[domain]).rstrip("/")
        self._mode = _mode(settings)
        self._token = CachedToken(self._fetch_token, name="feishu tenant_access_token")

    @classmethod
    def missing_settings(cls, settings: dict) -> list[str]:
        needed = ("app_id", "app_secret")
        if _mode(settings) == "events":
            needed += ("verification_token", "encrypt_key")
        return [key for key in needed if not settings.get(key)]

    @property
    def receives(self) -> str:
        return WEBHOOK if self._mode == "events" else CONNECTION

    def verify(self, request: InboundRequest) -> None:
        signature = request.headers.get("X-Lark-Signature")
        if signature is None:
            payload = self._open(request.body)
            if payload.get("type") != "url_verification":
                raise Refused(401, "X-Lark-Signature missing")
        else:
            timestamp = request.headers.get("X-Lark-Request-Timestamp")
            check_fresh(timestamp, self.clock())
            nonce = request.headers.get("X-Lark-Request-Nonce") or ""
            signed = (timestamp + nonce + self.settings["encrypt_key"]).encode() + request.body
            if not hmac.compare_digest(hashlib.sha256(signed).hexdigest(), signature):
                raise Refused(401, "X-Lark-Signature does not match the body")
            payload = self._open(request.body)
        token = payload.get("token") or (payload.get("header") or {}).get("token") or ""
        if not hmac.compare_digest(token.encode(), self.settings["verification_token"].encode()):
            raise Refused(403, "the Verification Token does not match")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        body = json.loads(request.body)
        payload = json.loads(open_sealed(self.settings["encrypt_key"], body["encrypt"])) if "encrypt" in body else body
        if payload.get("type") == "url_verification":
            return ParsedWebhook(_json_answer({"challenge": payload["challenge"]}))
        header, event = payload.get("header") or {}, payload.get("event") or {}
        if header.get("event_type") == CARD_ACTION:
            return ParsedWebhook(_json_answer({}), actions=tuple(self._presses(header, event)))
        if header.get("event_type") == MESSAGE_RECALLED:
            return ParsedWebhook(messages=tuple(self._recalls(header, event)))
        message, sender = event.get("message") or {}, event.get("sender") or {}
        if header.get("event_type") != MESSAGE_RECEIVED or sender.get("sender_type") != "user":
            return ParsedWebhook()  # other events, and apps' messages (our own replies among them)
        content = json.loads(message.get("content") or "{}")
        where = {
            "platform": self.name,
            "delivery_id": message["message_id"],
            "chat_id": message["chat_id"],
            "sender_id": (sender.get("sender_id") or {}).get("open_id"),
            "message_id": message["message_id"],
            "thread_id": message.get("root_id") or message["message_id"],
        }
        media = _media(message.get("message_type"), content)
        if media is not None:
            return ParsedWebhook(messages=(ChatMessage(kind="voice", media=media, **where),))
        asked = text_request(content.get("text")) if message.get("message_type") == "text" else None
        if asked:
            return ParsedWebhook(messages=(ChatMessage(kind=asked, **where),))
        return ParsedWebhook()

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        # Quoted whole: a file_key cannot leave the resource path, let alone the configured origin.
        url = (f"{self.api_base}/open-apis/im/v1/messages/{quote(message.message_id, safe='')}"
               f"/resources/{quote(message.media.ref, safe='')}")
        return self._token.run(lambda token: self.http.download(
            url, params={"type": "file"}, call="feishu message resource", max_bytes=max_bytes,
            check=_check_download, headers=_bearer(token)))

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        body = {**self._post(text, image), "reply_in_thread": message.thread_id != message.message_id}
        return self._api("POST", f"messages/{quote(message.message_id, safe='')}/reply", "reply", delivers=True,
                         json=body)["data"]["message_id"]

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        return self._send(chat_id, self._post(text, image))

    def send_case(self, chat_id: str, card: CaseCard) -> PostedCard:
        return PostedCard(self._send(chat_id, {"msg_type": "interactive", "content": _dumps(_card(card))}))

    def update_case(self, chat_id: str, posted: PostedCard, card: CaseCard) -> str | None:
        self._api("PATCH", f"messages/{quote(posted.ref, safe='')}", "card update",
                  json={"content": _dumps(_card(card))})
        return None

    def answer_press(self, action: CaseAction, text: str, *, refused: bool = False) -> None:
        """A press that changed nothing: a reply under the card says why."""
        if refused and action.answer_ref:
            self._api("POST", f"messages/{quote(action.answer_ref, safe='')}/reply", "reply", delivers=True,
                      json=self._post(text, None))

    def send_reaction(self, message: ChatMessage, emotion: str) -> str:
        emoji = REACTION_TYPES[emotion]
        self._api("POST", f"messages/{quote(message.message_id, safe='')}/reactions", "reaction", delivers=True,
                  json={"reaction_type": {"emoji_type": emoji}})
        return emoji

    def listen(self, receive: Callable[[InboundRequest], None], stopping: threading.Event) -> None:
        """The SDK's long connection until ``stopping``: it asks ``/callback/ws/endpoint`` for a WebSocket URL,
        connects, pings, reconnects; each event frame is recorded (``receive``) before the SDK acknowledges it,
        and one that could not be recorded is answered 500, so Feishu pushes it again."""
        # Imported here: the SDK takes seconds to import, paid only by the process that holds the connection.
        from lark_oapi.core.enum import LogLevel
        from lark_oapi.ws import client as ws

        _route_sdk_log_through_ours()
        # The SDK runs on one event loop per process, made when it was imported; its client's helpers look
        # for the current thread's loop, which must be that one.
        asyncio.set_event_loop(ws.loop)
        sdk = ws.Client(self.settings["app_id"], self.settings["app_secret"], log_level=LogLevel.WARNING,
                        event_handler=_Recorder(receive), domain=self.api_base)
        ended = threading.Event()
        threading.Thread(target=_stop_when, args=(stopping, ended, sdk, ws.loop), name="feishu-connection-stop",
                         daemon=True).start()
        log.info("feishu: opening the long connection; the SDK holds it and reconnects")
        try:
            sdk.start()  # blocks: raises if the connection is refused, else runs until _stop_when stops its loop
        except RuntimeError:
            if not stopping.is_set():
                raise
        finally:
            ended.set()
            _finish_pending_tasks(ws.loop)

    def _presses(self, header: dict, event: dict):
        """A ``card.action.trigger`` on one of our buttons, named by its event id."""
        value = (event.get("action") or {}).get("value")
        if not isinstance(value, dict) or CASE_VALUE_KEY not in value:
            return
        operator, context = event.get("operator") or {}, event.get("context") or {}
        yield CaseAction(
            platform=self.name,
            delivery_id=header.get("event_id") or f"{operator.get('open_id')}:{event.get('token')}",
            value=str(value[CASE_VALUE_KEY]),
            actor_id=str(operator.get("open_id")),
            actor_name=operator.get("open_id"),
            chat_id=context.get("open_chat_id"),
            message_ref=context.get("open_message_id"),
            answer_ref=context.get("open_message_id"),
        )

    def _recalls(self, header: dict, event: dict):
        """An ``im.message.recalled_v1``: the note made from the recalled message (its ``message_id``) goes."""
        if event.get("message_id"):
            yield deleted_on_platform(self.name, header["event_id"], event.get("chat_id") or "", event["message_id"])

    def _send(self, chat_id: str, message: dict) -> str:
        sent = self._api("POST", "messages", "send", params={"receive_id_type": "chat_id"}, delivers=True,
                         json={"receive_id": chat_id, **message})
        return sent["data"]["message_id"]

    def _post(self, text: str, image: bytes | None) -> dict:
        """A ``post`` message: one paragraph of literal text per line, then the chart (uploaded first)."""
        paragraphs = [[{"tag": "text", "text": line}] for line in text.split("\n")]
        if image is not None:
            uploaded = self._api("POST", "images", "image upload", data={"image_type": "message"},
                                 files={"image": ("timeline.png", image, "image/png")})
            paragraphs.append([{"tag": "img", "image_key": uploaded["data"]["image_key"]}])
        return {"msg_type": "post", "content": _dumps({"zh_cn": {"title": "", "content": paragraphs}})}

    def _api(self, method: str, path: str, what: str, **kwargs) -> dict:
        """A call to the messenger API (``/open-apis/im/v1/<path>``) with the tenant token; ``what`` names it in
        logs and errors (``feishu reply``)."""
        url = f"{self.api_base}/open-apis/im/v1/{path}"
        return self._token.run(lambda token: self.http.call(
            method, url, call=f"feishu {what}", check=check_answer, headers=_bearer(token), **kwargs))

    def _fetch_token(self) -> tuple[str, float]:
        answer = self.http.call(
            "POST", f"{self.api_base}/open-apis/auth/v3/tenant_access_token/internal",
            call="feishu tenant_access_token", check=check_answer,
            json={"app_id": self.settings["app_id"], "app_secret": self.settings["app_secret"]})
        return answer["tenant_access_token"], float(answer.get("expire", 7200))

    def _open(self, body: bytes) -> dict:
        """A webhook's decrypted payload, or ``Refused`` when it is not sealed with our Encrypt Key."""
        try:
            return json.loads(open_sealed(self.settings["encrypt_key"], json.loads(body)["encrypt"]))
        except Exception as error:  # noqa: BLE001 - anything undecryptable is refused, whatever broke
            raise Refused(401, f"undecryptable event ({type(error).__name__})") from None


def open_sealed(encrypt_key: str, sealed: str) -> bytes:
    """What Feishu sealed with the Encrypt Key: base64 of a 16-byte IV then AES-256-CBC (key SHA-256 of the
    Encrypt Key), PKCS7-padded. Raises on anything else."""
    raw = base64.b64decode(sealed, validate=True)
    decryptor = Cipher(algorithms.AES(hashlib.sha256(encrypt_key.encode()).digest()), modes.CBC(raw[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    return unpadder.update(padded) + unpadder.finalize()


class _Recorder:
    """Stands in for the SDK's ``EventDispatcherHandler``: the raw event, as Feishu sent it, goes to
    ``receive`` (parsed by ``FeishuAdapter.parse`` like a webhook's) instead of the SDK's typed handlers."""

    def __init__(self, receive: Callable[[InboundRequest], None]) -> None:
        self.receive = receive

    def _do_without_validation(self, payload: bytes) -> None:  # the one method ws.Client calls
        self.receive(InboundRequest.carrying(payload, "feishu long connection"))


def _stop_when(stopping: threading.Event, ended: threading.Event, sdk, loop: asyncio.AbstractEventLoop) -> None:
    """Once ``stopping`` is set (unless ``listen`` ended first): close the SDK's connection and stop its loop,
    which makes ``start()`` return."""
    while not stopping.wait(0.2):
        if ended.is_set():
            return

    async def close() -> None:
        if ended.is_set():
            return  # that listen is over: this runs on the loop of a later one, which is not ours to stop
        await sdk._disconnect()  # noqa: SLF001 - the pinned SDK's only way to close its connection
        loop.stop()

    asyncio.run_coroutine_threadsafe(close(), loop)


def _finish_pending_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the SDK left on its loop (its ping and receive loops), so the next ``listen`` starts clean."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending and not loop.is_running():
        loop.run_until_complete(asyncio.wait(pending, timeout=SHUTDOWN_WAIT_S))
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the SDK's loops end in errors of their own when cut short


def _route_sdk_log_through_ours() -> None:
    """The SDK's logger prints to stdout with its own handler, past bot-bridge's secret masking: it goes
    through the root logger's handlers instead (only warnings and errors: its debug lines quote events)."""
    sdk_log = logging.getLogger("Lark")
    for handler in list(sdk_log.handlers):
        sdk_log.removeHandler(handler)
    sdk_log.propagate = True


def check_answer(response) -> dict:
    """Feishu answers ``{"code": 0, ...}``; a rate limit is HTTP 429 or code 99991400, whose wait is in
    ``x-ogw-ratelimit-reset``. Codes are compared, never messages."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    if response.status_code == 429 or code == RATE_LIMITED:
        raise RateLimited(_reset_after(response), f"HTTP {response.status_code}, code {code}")
    if response.status_code >= 500:
        raise TryAgain(f"HTTP {response.status_code}")
    if code is None:
        raise TryAgain(f"HTTP {response.status_code} without a Feishu answer")
    if code == 0:
        return body
    if code in TOKEN_ERRORS:
        raise TokenRejected(f"code {code}")
    raise Rejected(f"Feishu code {code} ({str(body.get('msg', ''))[:120]})")


def _check_download(response) -> None:
    """The resource API answers the file itself, or a JSON error."""
    if response.headers.get("Content-Type", "").startswith("application/json"):
        check_answer(response)
        raise Rejected("the resource API answered JSON without the file")
    check_status(response)


def _reset_after(response) -> float | None:
    value = response.headers.get("x-ogw-ratelimit-reset", "")
    return float(value) if value.isdigit() else None


def _media(message_type: str | None, content: dict) -> Media | None:
    """An ``audio`` message (Opus, duration in ms), or a ``file`` whose name says it is audio."""
    file_key = content.get("file_key")
    if not file_key:
        return None
    if message_type == "audio":
        duration_ms = content.get("duration")
        return Media(ref=file_key, mime_type="audio/opus", file_name="voice.opus",
                     duration_s=duration_ms / 1000 if isinstance(duration_ms, (int, float)) else None)
    name = content.get("file_name") or ""
    if message_type == "file" and name.lower().endswith(AUDIO_EXTENSIONS):
        return Media(ref=file_key, file_name=name)
    return None


def _card(card: CaseCard) -> dict:
    """An interactive card: the title, the text (plain: shown literally), a button per action, and the link to
    the case's page; ``update_multi`` so that an edit shows to everyone in the chat."""
    text = card.text if len(card.text) <= CARD_TEXT_CHARS else card.text[: CARD_TEXT_CHARS - 1] + "…"
    elements: list[dict] = [{"tag": "div", "text": {"tag": "plain_text", "content": text}}]
    buttons = [{"tag": "button", "text": {"tag": "plain_text", "content": button.label},
                "type": BUTTON_TYPES.get(button.style, "default"), "value": {CASE_VALUE_KEY: button.value}}
               for button in card.buttons]
    if card.link:
        buttons.append({"tag": "button", "text": {"tag": "plain_text", "content": card.link_label},
                        "type": "default", "url": card.link})
    if buttons:
        elements.append({"tag": "action", "actions": buttons})
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "header": {"title": {"tag": "plain_text", "content": card.title},
                   "template": "red" if card.buttons else "grey"},
        "elements": elements,
    }


def _mode(settings: dict) -> str:
    """``events`` or ``connection``, as set; without a setting, ``connection`` when neither an Encrypt Key nor
    a Verification Token is set."""
    default = "events" if settings.get("encrypt_key") or settings.get("verification_token") else "connection"
    mode = settings.get("mode") or default
    if mode not in MODES:
        raise ValueError(f"FEISHU_MODE (platforms.feishu.mode) must be events or connection, not {mode!r}")
    return mode


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _dumps(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_answer(value: dict) -> WebhookResponse:
    return WebhookResponse(body=_dumps(value), content_type="application/json; charset=utf-8")
