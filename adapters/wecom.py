"""WeCom (企业微信) self-built app: encrypted callbacks in, app messages to the sender out.

* Verification, the access token and ``media/get`` are those of every WeCom
  corp app (``_wecom_app.py``): a sealed, signed callback at most 5 minutes
  old. GET is the URL check made when the callback is saved: the answer is
  the decrypted ``echostr``, bare.
* Voice: ``MsgType voice`` (AMR, 8 kHz), fetched with ``media/get``. Text
  ``help``/``帮助`` gets the help message, ``forget``/``删除我的数据`` deletes
  the sender's data (docs/retention-and-deletion.md). Deliveries are deduplicated on
  ``MsgId``.
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

import logging
import xml.etree.ElementTree as ElementTree
from datetime import timedelta

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, WebhookResponse
from bot_bridge.chat.outbound import OutboundError

from ._wecom_app import WeComCallbackApp
from .base import PostedCard, text_request

log = logging.getLogger(__name__)

#: What a template card's fields hold (WeCom's documented lengths, in characters).
CARD_TITLE_CHARS = 26
CARD_TEXT_CHARS = 112
CARD_BUTTON_CHARS = 10


class WeComAdapter(WeComCallbackApp):
    name = "wecom"
    webhook_path = "wecom"
    environment = {
        "corp_id": "WECOM_CORP_ID",
        "corp_secret": "WECOM_CORP_SECRET",
        "agent_id": "WECOM_AGENT_ID",
        "token": "WECOM_TOKEN",
        "encoding_aes_key": "WECOM_ENCODING_AES_KEY",
        "api_base": "WECOM_API_BASE",
    }
    required = ("corp_id", "corp_secret", "agent_id", "token", "encoding_aes_key")
    edits_cases = True
    edit_token_lifetime = timedelta(hours=72)  # a response_code: 72 h, once

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
