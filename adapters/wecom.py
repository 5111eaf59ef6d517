"""WeCom (企业微信) self-built app: encrypted callbacks in, app messages to the sender out.

* Verification, with wechatpy's ``WeChatCrypto`` (AES-256-CBC, the scheme
  WeCom documents, checked in the tests against wechatpy's published
  vectors): ``msg_signature`` is SHA-1 over the token, timestamp, nonce and
  ciphertext; decryption must succeed and name our CorpID. The timestamp
  must be within 5 minutes, so a captured callback cannot be replayed later.
  GET is the URL check made when the callback is saved: the answer is the
  decrypted ``echostr``, bare.
* Voice: ``MsgType voice`` (AMR, 8 kHz), fetched with ``media/get``. Text
  ``help``/``帮助`` gets the help message, ``forget``/``删除我的数据`` deletes
  the sender's data (docs/retention-and-deletion.md). Deliveries are deduplicated on
  ``MsgId``.
* The access token is cached per app for its ``expires_in`` (7200 s; WeCom
  throttles ``gettoken``) and fetched again when an API call says it expired
  or is invalid (errcodes 40014, 42001, 40001).
* Replies are ``message/send`` to the sender. WeCom cannot put text and an
  image in one message, so the chart, uploaded first, follows the text as a
  second message; if only that second message fails it is logged, not resent
  with the text.
* Cases: a template card (``template_card``, ``button_interaction``) whose
  buttons' keys are the buttons' values. A press arrives through the same
  encrypted callback as a ``template_card_event`` (no MsgId: it is named by
  TaskId, FromUserName, EventKey and CreateTime). WeCom lets a card be
  changed with ``update_template_card`` and a ``response_code`` that is
  valid for 72 hours and works once: the send's, then each press's. Without
  one left, bot-bridge says what changed in a message instead. A press that
  changed nothing is answered with a text message to whoever pressed.
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ElementTree
from datetime import timedelta

from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, WebhookResponse
from bot_bridge.chat.outbound import OutboundError, RateLimited, Rejected, TryAgain, check_status, raise_for_transient

from ._tokens import CachedToken, TokenRejected
from .base import ChatAdapter, PostedCard, Refused, TextLimit, check_fresh, text_request

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
RATE_LIMITED = 45009  # api freq out of limit
SYSTEM_BUSY = -1
#: What a template card's fields hold (WeCom's documented lengths, in characters).
CARD_TITLE_CHARS = 26
CARD_TEXT_CHARS = 112
CARD_BUTTON_CHARS = 10


class WeComAdapter(ChatAdapter):
    name = "wecom"
    webhook_path = "wecom"
    webhook_methods = ("GET", "POST")
    environment = {
        "corp_id": "WECOM_CORP_ID",
        "corp_secret": "WECOM_CORP_SECRET",
        "agent_id": "WECOM_AGENT_ID",
        "token": "WECOM_TOKEN",
        "encoding_aes_key": "WECOM_ENCODING_AES_KEY",
        "api_base": "WECOM_API_BASE",
    }
    required = ("corp_id", "corp_secret", "agent_id", "token", "encoding_aes_key")
    default_api_base = "https://qyapi.weixin.qq.com"
    alert_text_limit = TextLimit(2048, "bytes")  # message/send cuts longer text
    edits_cases = True
    edit_token_lifetime = timedelta(hours=72)  # a response_code: 72 h, once

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        key = settings["encoding_aes_key"]
        if len(key) != 43:
            raise ValueError(f"WECOM_ENCODING_AES_KEY must be the 43 characters WeCom shows, not {len(key)}")
        self._crypto = WeChatCrypto(settings["token"], key, settings["corp_id"])
        self._token = CachedToken(self._fetch_token, name="wecom")

    def verify(self, request: InboundRequest) -> None:
        check_fresh(request.query.get("timestamp"), self.clock())
        try:
            self._decrypt(request)
        except InvalidSignatureException:
            raise Refused(401, "msg_signature does not match") from None
        except InvalidCorpIdException:
            raise Refused(403, "the message was sealed for another CorpID") from None
        except Exception as error:  # noqa: BLE001 - anything undecryptable is refused, whatever broke
            raise Refused(401, f"undecryptable callback ({type(error).__name__})") from None

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        plaintext = self._decrypt(request)
        if request.method == "GET":
            return ParsedWebhook(WebhookResponse(body=plaintext))
        message = ElementTree.fromstring(plaintext)
        msg_type, msg_id, user = (message.findtext(tag) for tag in ("MsgType", "MsgId", "FromUserName"))
        if msg_type == "event" and message.findtext("Event") == "template_card_event":
            return ParsedWebhook(actions=(self._press(message),))
        asked = text_request(message.findtext("Content")) if msg_type == "text" else None
        if msg_type == "voice":
            media = Media(ref=message.findtext("MediaId"), mime_type="audio/amr", file_name="voice.amr")
        elif asked is not None:
            media = None
        else:
            return ParsedWebhook()  # events, images, other text: nothing to answer
        note = ChatMessage(
            platform=self.name,
            delivery_id=msg_id,
            kind=asked or "voice",
            chat_id=user,
            sender_id=user,
            message_id=msg_id,
            media=media,
        )
        return ParsedWebhook(messages=(note,))

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        def download(token: str) -> bytes:
            return self.http.download(
                f"{self.api_base}/cgi-bin/media/get",
                params={"access_token": token, "media_id": message.media.ref},
                call="wecom media/get",
                max_bytes=max_bytes,
                check=_check_media,
            )

        return self._token.run(download)

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        return self.send_alert(message.chat_id, text, image)

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        media_id = None if image is None else self._upload_image(image)
        sent = self._send(chat_id, "text", {"content": text})
        if media_id is not None:
            try:
                self._send(chat_id, "image", {"media_id": media_id})
            except OutboundError as error:
                log.warning("wecom: the chart after message %s was not delivered: %s", sent["msgid"], error)
        return sent["msgid"]

    def send_case(self, chat_id: str, card: CaseCard) -> PostedCard:
        sent = self._send(chat_id, "template_card", _template_card(card))
        return PostedCard(card.key, sent.get("response_code"))

    def update_case(self, chat_id: str, posted: PostedCard, card: CaseCard) -> str | None:
        """``update_template_card`` with the card's response_code, which this spends; a card with nothing left
        to press keeps its buttons greyed out, renamed to say how the case ended."""
        change = {"template_card": _template_card(card)} if card.buttons else \
            {"button": {"replace_name": card.status[:CARD_BUTTON_CHARS]}}
        self._api("message/update_template_card", json={
            "userids": chat_id.split("|"), "agentid": int(self.settings["agent_id"]),
            "response_code": posted.edit_token, **change,
        })
        return None

    def answer_press(self, action: CaseAction, text: str, *, refused: bool = False) -> None:
        """A press that changed nothing: a text message to whoever pressed says why."""
        if refused:
            self._send(action.answer_ref, "text", {"content": text})

    def _press(self, event: ElementTree.Element) -> CaseAction:
        """A ``template_card_event``: named by its task, user, key and time, with a fresh response_code."""
        task, user, key, created = (event.findtext(tag) or "" for tag in ("TaskId", "FromUserName", "EventKey",
                                                                          "CreateTime"))
        return CaseAction(platform=self.name, delivery_id=f"{task}:{user}:{key}:{created}", value=key, actor_id=user,
                          actor_name=user, chat_id=user, message_ref=task, answer_ref=user,
                          edit_token=event.findtext("ResponseCode") or None)

    def _send(self, user: str, msg_type: str, content: dict) -> dict:
        body = {"touser": user, "msgtype": msg_type, "agentid": int(self.settings["agent_id"]), msg_type: content}
        # Not WeCom's enable_duplicate_check: it would also drop a second, different note's identical reply.
        return self._api("message/send", delivers=True, json=body)

    def _upload_image(self, image: bytes) -> str:
        uploaded = self._api("media/upload", query={"type": "image"}, files={"media": ("timeline.png", image, "image/png")})
        return uploaded["media_id"]

    def _api(self, path: str, *, query: dict | None = None, **kwargs) -> dict:
        def call(token: str) -> dict:
            return self.http.call(
                "POST",
                f"{self.api_base}/cgi-bin/{path}",
                params={"access_token": token, **(query or {})},
                call=f"wecom {path}",
                check=check_answer,
                **kwargs,
            )

        return self._token.run(call)

    def _fetch_token(self) -> tuple[str, float]:
        answer = self.http.call(
            "GET",
            f"{self.api_base}/cgi-bin/gettoken",
            params={"corpid": self.settings["corp_id"], "corpsecret": self.settings["corp_secret"]},
            call="wecom gettoken",
            check=functools.partial(check_answer, token_errors=frozenset()),
        )
        return answer["access_token"], float(answer.get("expires_in", 7200))

    def _decrypt(self, request: InboundRequest) -> str:
        query = request.query
        signature, timestamp, nonce = query["msg_signature"], query["timestamp"], query["nonce"]
        if request.method == "GET":
            return self._crypto.check_signature(signature, timestamp, nonce, query["echostr"])
        return self._crypto.decrypt_message(request.body, signature, timestamp, nonce)


def _template_card(card: CaseCard) -> dict:
    """A ``button_interaction`` card: the title with where the case stands under it, the text cut to what a
    card shows (the case's page has the rest), a tap on the card opens that page, and one button per action."""
    text = card.text if len(card.text) <= CARD_TEXT_CHARS else card.text[: CARD_TEXT_CHARS - 1] + "…"
    template = {
        "card_type": "button_interaction",
        "main_title": {"title": card.title[:CARD_TITLE_CHARS], "desc": card.status[:CARD_TITLE_CHARS]},
        "sub_title_text": text,
        "task_id": card.key,
        "button_list": [{"text": button.label[:CARD_BUTTON_CHARS], "style": 1, "key": button.value}
                        for button in card.buttons],
    }
    if card.link:
        template["card_action"] = {"type": 1, "url": card.link}
    return template


def check_answer(response, token_errors: frozenset[int] = TOKEN_ERRORS) -> dict:
    """WeCom answers HTTP 200 with ``errcode``; 0 is success. Codes are compared, never messages."""
    raise_for_transient(response)
    try:
        body = response.json()
    except ValueError:
        raise TryAgain(f"HTTP {response.status_code} without a JSON body") from None
    code = body.get("errcode", 0)
    if code == 0:
        return body
    if code in token_errors:
        raise TokenRejected(f"errcode {code}")
    if code == RATE_LIMITED:
        raise RateLimited(None, "WeCom errcode 45009 (api freq out of limit)")
    if code == SYSTEM_BUSY:
        raise TryAgain("WeCom errcode -1 (system busy)")
    # errmsg continues with a hint and the caller's IP: keep its first clause.
    raise Rejected(f"WeCom errcode {code} ({str(body.get('errmsg', '')).split(',')[0]})")


def _check_media(response) -> None:
    """media/get answers the file itself, or a JSON error with HTTP 200."""
    check_status(response)
    if response.headers.get("Content-Type", "").startswith(("application/json", "text/plain")):
        check_answer(response)
        raise Rejected("media/get answered JSON without the file")
