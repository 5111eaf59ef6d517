"""WeChat Customer Service (微信客服): customers' voice notes heard, escalated and digested, silent by default.

Why silent: the people on the other side are a business's customers, on
WeChat, not its colleagues; a customer must never read what the bot heard in
their voice (``speaks_to_customers``). Their notes reach the support team's
chats as cases and in the digest.

* The callback is WeCom's own (the same signature, AES and CorpID checks,
  through ``WeComCallbackApp``), at ``/webhooks/wecom_kf``. Its
  ``kf_msg_or_event`` carries no message, only a ``Token`` (valid 10 minutes)
  that lets ``kf/sync_msg`` be called often. So this adapter pulls
  (``PULL``): one process of the deployment holds the lease and calls
  ``kf/sync_msg`` from the stored cursor; the cursor advances only after
  the batch is recorded (``acting/listeners.py``), so nothing is missed or
  heard twice across restarts, and one puller means no two syncs race. A
  callback wakes the puller at once when it reaches the same process, and
  hands it its token; otherwise the puller syncs every ``SYNC_INTERVAL_S``
  without one (WeCom then applies a stricter rate limit).
* Messages: only ``origin`` 3 (the customer) is heard; voice is AMR, fetched
  with ``media/get``; ``删除我的数据`` / ``forget`` deletes the customer's data.
  A customer who recalls (撤回) a message sends the event ``user_recall_msg``
  (``msgtype`` event, ``origin`` 4; ``open_kfid``, ``external_userid`` and
  ``recall_msgid`` inside ``event``): the note made from that msgid goes,
  silently, named by the event's own ``msgid`` as any delivery is. Other
  events (``enter_session``, ``msg_send_fail``, session changes, a
  servicer's recall), the business's own messages (origin 5) and other types
  are skipped. The chat is the customer service account (``open_kfid``), the
  sender the customer (``external_userid``), so rules can differ per account
  and a case is one customer of one account.
* Which messages the API sees: ``kf/sync_msg`` returns every message of
  accounts handed to the API (微信客服 → API), in every session state: 智能
  助手接待 (1), 待接入池 (2) and 人工接待 (3, a person answering in the WeCom
  client) alike, so notes are heard even while a person serves the customer.
  Sending (``kf/send_msg``) is allowed only in states 0 and 1, within 48
  hours of the customer's last message, at most 5 messages per customer
  message; a reply refused for these reasons ends as a failure that says so.
* Alerts and digests go to the team's own chats; a 微信客服 target is one
  person who writes to the account (``open_kfid:external_userid``, an
  on-call lead on WeChat), reached under the same sending rules.
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone

from bot_bridge.chat.messages import ChatMessage, InboundRequest, Media, ParsedWebhook, Pulled, WebhookResponse
from bot_bridge.chat.outbound import OutboundError

from .base import PULL, deleted_on_platform, text_request
from ._wecom_app import WeComCallbackApp

#: How often the puller syncs when no callback wakes it.
SYNC_INTERVAL_S = 5.0
#: How long a callback's Token lets ``kf/sync_msg`` be called (WeCom: 10 minutes), less a margin.
SYNC_TOKEN_LIFETIME_S = 9 * 60
#: The most messages one ``kf/sync_msg`` returns.
SYNC_LIMIT = 1000
CUSTOMER = 3
FORGET = "forget"
#: The event a customer's recall (撤回) of one of their messages comes as.
USER_RECALL = "user_recall_msg"
#: ``kf/send_msg`` refusals that are WeCom's sending rules, not faults: said plainly.
SEND_RULES = ("微信客服 refused the message: a reply is allowed only while the session is with the API (not with a "
              "person or in the queue), within 48 hours of the customer's last message, and 5 times per "
              "customer message")


class WeComKfAdapter(WeComCallbackApp):
    name = "wecom_kf"
    webhook_path = "wecom_kf"
    environment = {
        "corp_id": "WECOM_KF_CORP_ID",
        "corp_secret": "WECOM_KF_SECRET",
        "token": "WECOM_KF_TOKEN",
        "encoding_aes_key": "WECOM_KF_ENCODING_AES_KEY",
        "api_base": "WECOM_KF_API_BASE",
    }
    required = ("corp_id", "corp_secret", "token", "encoding_aes_key")
    speaks_to_customers = True
    wakes_by_webhook = True

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        self._wake = threading.Event()
        self._sync_token: tuple[str, float] | None = None  # the latest callback's Token, and when it came

    @property
    def receives(self) -> str:
        return PULL

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        if request.method == "RECEIVED":
            return ParsedWebhook(messages=tuple(filter(None, [self._note(json.loads(request.body))])))
        plaintext = self._decrypt(request)
        if request.method == "GET":
            return ParsedWebhook(WebhookResponse(body=plaintext))
        event = ElementTree.fromstring(plaintext)
        if event.findtext("Event") == "kf_msg_or_event" and event.findtext("Token"):
            self._sync_token = (event.findtext("Token"), time.monotonic())
            self._wake.set()
        return ParsedWebhook()  # what it announces is pulled and recorded by the puller

    def pull(self, cursor: str | None) -> Pulled:
        """``kf/sync_msg`` from ``cursor``; with nothing new, waits for a callback (or ``SYNC_INTERVAL_S``)."""
        self._wake.clear()  # a callback during the call below wakes the next wait
        query = {"limit": SYNC_LIMIT, "voice_format": 0}
        if cursor:
            query["cursor"] = cursor
        token = self._fresh_sync_token()
        if token:
            query["token"] = token
        answer = self._api("kf/sync_msg", json=query)
        messages = answer.get("msg_list") or []
        if not messages and not answer.get("has_more"):
            self._wake.wait(SYNC_INTERVAL_S)
        received = tuple(InboundRequest.carrying(json.dumps(message).encode(), "kf/sync_msg") for message in messages)
        return Pulled(received, answer.get("next_cursor") or cursor)

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        """Only where ``reply.modes`` names 微信客服: text to the customer (a chart is not sent to customers)."""
        return self._kf_send(message.chat_id, message.sender_id, "text", {"content": text})

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        """To one person who writes to the account (``open_kfid:external_userid``: an on-call lead on WeChat),
        under the same sending rules as any reply; a chart follows as an image."""
        open_kfid, _, person = chat_id.partition(":")
        if not (open_kfid and person):
            raise OutboundError("wecom_kf", f"a target is open_kfid:external_userid, not {chat_id!r}",
                                retryable=False)
        sent = self._kf_send(open_kfid, person, "text", {"content": text})
        if image is not None:
            self._kf_send(open_kfid, person, "image", {"media_id": self._upload_image(image)})
        return sent

    def _kf_send(self, open_kfid: str, person: str, msg_type: str, content: dict) -> str:
        try:
            sent = self._api("kf/send_msg", delivers=True, json={
                "touser": person, "open_kfid": open_kfid, "msgtype": msg_type, msg_type: content})
        except OutboundError as error:
            if error.reason.startswith("WeCom errcode 95"):
                raise OutboundError(error.call, f"{SEND_RULES} ({error.reason})", retryable=False) from None
            raise
        return str(sent.get("msgid", ""))

    def _note(self, message: dict) -> ChatMessage | None:
        if message.get("msgtype") == "event":
            return self._recall(message)
        if message.get("origin") != CUSTOMER:
            return None  # the business's own messages
        if message.get("msgtype") == "voice":
            kind, media = "voice", Media(ref=message["voice"]["media_id"], mime_type="audio/amr",
                                         file_name="voice.amr")
        elif message.get("msgtype") == "text" and text_request((message.get("text") or {}).get("content")) == FORGET:
            kind, media = FORGET, None  # a customer may ask for their data to be deleted; help is for colleagues
        else:
            return None  # pictures, other text
        return ChatMessage(
            platform=self.name,
            delivery_id=str(message["msgid"]),
            kind=kind,
            chat_id=str(message["open_kfid"]),
            sender_id=str(message["external_userid"]),
            message_id=str(message["msgid"]),
            media=media,
            received_at=datetime.fromtimestamp(int(message.get("send_time") or time.time()), timezone.utc),
        )

    def _recall(self, message: dict) -> ChatMessage | None:
        """A ``user_recall_msg`` event: the note made from the recalled message (``recall_msgid``) goes."""
        event = message.get("event") or {}
        if event.get("event_type") != USER_RECALL or not event.get("recall_msgid"):
            return None  # entering a session, failed sends, session changes, a servicer's recall
        return deleted_on_platform(self.name, str(message["msgid"]), str(event.get("open_kfid") or ""),
                                   str(event["recall_msgid"]))

    def _fresh_sync_token(self) -> str | None:
        latest = self._sync_token
        if latest is None or time.monotonic() - latest[1] > SYNC_TOKEN_LIFETIME_S:
            return None
        return latest[0]
