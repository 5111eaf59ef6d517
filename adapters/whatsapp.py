"""WhatsApp Business Cloud API: signed webhooks in, replies quoting the voice note out, silent by default.

Why silent: the people who write to a WhatsApp Business number are a
business's customers, and a customer must never read what the bot heard in
their voice (``speaks_to_customers``). Their notes are analysed, escalated
and digested as usual; ``reply.modes: {"whatsapp:*": message}`` (or a
single number) makes the bot answer there, ``reaction`` puts the emoji on
the note.

* Verification: the subscription check is a GET with ``hub.mode=subscribe``,
  ``hub.verify_token`` (compared in constant time) and ``hub.challenge``,
  answered bare. Every POST carries ``X-Hub-Signature-256: sha256=<hex>``,
  the HMAC-SHA256 of the raw body with the app secret, compared in constant
  time before anything is read. Meta sends no timestamp header and retries
  a delivery for up to 7 days: a delivery whose newest message is older
  than that is refused as a replay (the signature covers the messages'
  own timestamps), and a replay within those days is absorbed by the
  message id (``wamid``).
* Voice: ``messages[].type == "audio"`` (``audio.voice`` true for a voice
  note, Ogg/Opus; false for an audio file). ``GET /{version}/{media-id}``
  names a short-lived URL, downloaded with the same bearer token; the token
  goes only to Meta's hosts or the configured API origin.
* Replies: ``POST /{version}/{phone-number-id}/messages`` quoting the note
  (``context.message_id``); a chart is uploaded (``/media``) and sent as an
  image with the reply as its caption. Reactions: ``type: reaction`` with
  the emotion's own emoji (WhatsApp takes any emoji).
* The 24-hour customer-service window: free-form messages may reach a person
  only within 24 hours of their last message to the business. A reply to a
  note older than that is not attempted, and an alert to a number whose
  window is closed comes back as error 131047; both end as a failure that
  says so, in the log and on the note in the console. Reaching someone
  outside the window needs an approved template, which bot-bridge does not
  send.
* Errors: Graph's ``{"error": {"code", "message"}}``; throughput and rate
  limits (4, 80007, 130429, 131056) wait and retry, 5xx too, through the
  shared outbound client.

``pywa`` was read and not used: its client sends through its own httpx
session, outside the shared rules for retries and for messages that may have
been delivered, and the rest of it is a web framework bot-bridge already has.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

from bot_bridge.chat.messages import ChatMessage, InboundRequest, Media, ParsedWebhook, WebhookResponse
from bot_bridge.chat.outbound import OutboundError, RateLimited, Rejected, raise_for_transient
from bot_bridge.emotions import BY_KEY
from bot_bridge.errors import AudioError

from .base import ChatAdapter, Refused, TextLimit, goes_only_to, text_request

SIGNATURE_HEADER = "X-Hub-Signature-256"
DEFAULT_API_VERSION = "v21.0"
#: Where a media URL may lead with the bearer token: Meta's own hosts.
MEDIA_DOMAINS = ("facebook.com", "fbsbx.com", "whatsapp.net")
#: The largest audio the Cloud API accepts (16 MB).
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
#: How old a delivery may be: Meta retries one for up to 7 days (an hour's margin for clocks).
MAX_DELIVERY_AGE_S = (7 * 24 + 1) * 3600
#: Graph error codes that mean "slow down": app, account and pair rate limits.
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131056})
#: "Re-engagement message": more than 24 hours since the person last wrote.
WINDOW_CLOSED_CODE = 131047
OUTSIDE_WINDOW = ("outside WhatsApp's 24-hour customer-service window (the person last wrote more than 24 hours "
                  "ago): only an approved template may reach them now, and bot-bridge sends none")


class WhatsAppAdapter(ChatAdapter):
    name = "whatsapp"
    webhook_path = "whatsapp"
    webhook_methods = ("GET", "POST")
    environment = {
        "access_token": "WHATSAPP_ACCESS_TOKEN",
        "app_secret": "WHATSAPP_APP_SECRET",
        "verify_token": "WHATSAPP_VERIFY_TOKEN",
        "phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
        "api_version": "WHATSAPP_API_VERSION",
        "api_base": "WHATSAPP_API_BASE",
    }
    required = ("access_token", "app_secret", "verify_token", "phone_number_id")
    default_api_base = "https://graph.facebook.com"
    alert_text_limit = TextLimit(4096, "characters")  # a text message's body
    caption_limit = TextLimit(1024, "characters")  # an image's caption: a reply with its chart
    max_download_bytes = MAX_DOWNLOAD_BYTES
    can_react = True
    speaks_to_customers = True

    def verify(self, request: InboundRequest) -> None:
        if request.method == "GET":
            supplied = request.query.get("hub.verify_token", "")
            if request.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
                    supplied.encode(), self.settings["verify_token"].encode()):
                raise Refused(403, "subscription check without hub.mode=subscribe and the right hub.verify_token")
            return
        supplied = request.headers.get(SIGNATURE_HEADER, "")
        expected = "sha256=" + hmac.new(self.settings["app_secret"].encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise Refused(401, f"missing or wrong {SIGNATURE_HEADER}")
        newest = _newest_timestamp(request.body)
        if newest is not None and self.clock() - newest > MAX_DELIVERY_AGE_S:
            raise Refused(403, f"stale delivery: its newest message is {(self.clock() - newest) / 86400:.0f} days "
                               "old, past Meta's 7 days of retries")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        if request.method == "GET":
            return ParsedWebhook(WebhookResponse(body=request.query.get("hub.challenge", "")))
        notes = []
        for change in _message_changes(json.loads(request.body)):
            value = change["value"]
            if str((value.get("metadata") or {}).get("phone_number_id")) != str(self.settings["phone_number_id"]):
                continue  # another number of the same app
            names = {contact.get("wa_id"): (contact.get("profile") or {}).get("name")
                     for contact in value.get("contacts") or ()}
            notes += [note for message in value.get("messages") or () if (note := self._note(message, names))]
        return ParsedWebhook(messages=tuple(notes))

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        media = self._graph("GET", message.media.ref, call="media lookup")
        size = media.get("file_size")
        if size is not None and int(size) > MAX_DOWNLOAD_BYTES:
            raise AudioError("too_large_to_fetch", f"WhatsApp media of {size} bytes",
                             limit_mb=MAX_DOWNLOAD_BYTES // 2**20)
        url = str(media.get("url") or "")
        if not goes_only_to(url, MEDIA_DOMAINS, (self.api_base,)):
            raise OutboundError("whatsapp media lookup", "the media URL leads off Meta's hosts", retryable=False)
        return self.http.download(url, call="whatsapp media download", max_bytes=max_bytes,
                                  headers=self._authorization())

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        if datetime.now(timezone.utc) - message.received_at > CUSTOMER_SERVICE_WINDOW:
            raise OutboundError("whatsapp messages", OUTSIDE_WINDOW, retryable=False)
        return self._send(message.chat_id, text, image, {"context": {"message_id": message.message_id}})

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        return self._send(chat_id, text, image, {})

    def send_reaction(self, message: ChatMessage, emotion: str) -> str:
        emoji = BY_KEY[emotion].emoji
        self._message(message.chat_id, {"type": "reaction",
                                        "reaction": {"message_id": message.message_id, "emoji": emoji}})
        return emoji

    def _note(self, message: dict, names: dict) -> ChatMessage | None:
        audio = message.get("audio") if message.get("type") == "audio" else None
        text = (message.get("text") or {}).get("body") if message.get("type") == "text" else None
        asked = None if audio is not None else text_request(text)
        if audio is None and asked is None:
            return None  # pictures, stickers, chatter, reactions: nothing to answer
        sender = str(message["from"])
        media = None if audio is None else Media(
            ref=str(audio["id"]), mime_type=audio.get("mime_type"),
            file_name="voice.ogg" if audio.get("voice") else "audio")
        return ChatMessage(
            platform=self.name,
            delivery_id=str(message["id"]),
            kind=asked or "voice",
            chat_id=sender,
            chat_name=names.get(sender),
            sender_id=sender,
            sender_name=names.get(sender),
            message_id=str(message["id"]),
            media=media,
            received_at=datetime.fromtimestamp(int(message["timestamp"]), timezone.utc),
        )

    def _send(self, to: str, text: str, image: bytes | None, extra: dict) -> str:
        if image is None:
            return self._message(to, {"type": "text", "text": {"body": text, "preview_url": False}, **extra})
        uploaded = self._graph("POST", f"{self.settings['phone_number_id']}/media", call="media upload",
                               data={"messaging_product": "whatsapp", "type": "image/png"},
                               files={"file": ("timeline.png", image, "image/png")})
        return self._message(to, {"type": "image", "image": {"id": uploaded["id"], "caption": text}, **extra})

    def _message(self, to: str, content: dict) -> str:
        sent = self._graph("POST", f"{self.settings['phone_number_id']}/messages", call="messages", delivers=True,
                           json={"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
                                 **content})
        return str(sent["messages"][0]["id"])

    def _graph(self, method: str, path: str, *, call: str, **kwargs) -> dict:
        version = self.settings.get("api_version") or DEFAULT_API_VERSION
        return self.http.call(method, f"{self.api_base}/{version}/{path}", call=f"whatsapp {call}", check=_check,
                              headers=self._authorization(), **kwargs)

    def _authorization(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings['access_token']}"}


def _message_changes(payload: dict) -> list[dict]:
    """The ``messages`` changes of a ``whatsapp_business_account`` delivery (statuses ride in them too)."""
    if payload.get("object") != "whatsapp_business_account":
        return []
    return [change for entry in payload.get("entry") or () for change in entry.get("changes") or ()
            if change.get("field") == "messages" and isinstance(change.get("value"), dict)]


def _newest_timestamp(body: bytes) -> int | None:
    """The newest ``timestamp`` of the delivery's messages and statuses (None: none, or not JSON)."""
    try:
        changes = _message_changes(json.loads(body))
    except (ValueError, AttributeError):
        return None
    stamps = [int(item["timestamp"]) for change in changes for kind in ("messages", "statuses")
              for item in change["value"].get(kind) or () if str(item.get("timestamp", "")).isdigit()]
    return max(stamps, default=None)


def _check(response) -> dict:
    """Graph's answer: JSON, or ``{"error": {"code", "message"}}`` with a 4xx or 5xx status."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.ok and "error" not in body:
        return body
    error = body.get("error") or {}
    code = error.get("code")
    if code in RATE_LIMIT_CODES:
        raise RateLimited(None, f"WhatsApp rate limit (code {code})")
    if code == WINDOW_CLOSED_CODE:
        raise Rejected(OUTSIDE_WINDOW)
    raise_for_transient(response)
    raise Rejected(f"WhatsApp error {code}: {error.get('message') or f'HTTP {response.status_code}'}")
