"""A loopback WhatsApp Business Cloud API (graph.facebook.com), and builders of its signed webhooks.

The fake answers like the Graph API on ``/{version}/...``:

* ``GET /{media-id}``: the media's metadata, with a URL on the fake
  (``/media-files/<id>``, standing in for lookaside.fbsbx.com) that also
  wants the bearer token, as Meta's does;
* ``POST /{phone-number-id}/media``: an upload, answered with its id;
* ``POST /{phone-number-id}/messages``: text, image and reaction messages.
  Free-form messages to a person who has not written within 24 hours are
  refused with error 131047, as WhatsApp does (``customer_wrote`` records
  when each person last wrote; a webhook built here records it).

Errors are Graph's ``{"error": {"message", "type", "code", "fbtrace_id"}}``;
a rate limit is HTTP 400 with code 130429 (throughput reached), which
carries no Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response, looks_like_image

DEFAULT_ACCESS_TOKEN = "EAAfakeLoopbackWhatsAppSystemUserToken0123456789abcdefABCDEF"
DEFAULT_APP_SECRET = "fakeloopbackwhatsappappsecret0123"
DEFAULT_VERIFY_TOKEN = "fake-loopback-verify-token-42"
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_CUSTOMER = "8613800138000"
VERSION = "v21.0"
WINDOW_S = 24 * 3600
SIGNATURE_HEADER = "X-Hub-Signature-256"


class FakeWhatsApp(FakePlatformServer):
    REAL_BASE_URLS = ("https://graph.facebook.com/",)

    def __init__(self, access_token: str = DEFAULT_ACCESS_TOKEN,
                 phone_number_id: str = DEFAULT_PHONE_NUMBER_ID) -> None:
        super().__init__()
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.media: dict[str, tuple[bytes, str]] = {}
        self.uploads: dict[str, bytes] = {}
        self.last_written: dict[str, float] = {}
        self._ids = itertools.count(1)

    # -- what tests arrange ------------------------------------------------------

    def add_media(self, data: bytes, mime_type: str = "audio/ogg; codecs=opus") -> str:
        with self._lock:
            media_id = str(900000000000000 + next(self._ids))
            self.media[media_id] = (data, mime_type)
            return media_id

    def customer_wrote(self, wa_id: str, at: float | None = None) -> None:
        with self._lock:
            self.last_written[wa_id] = time.time() if at is None else at

    # -- routing -----------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        parts = request.path.strip("/").split("/")
        if parts[0] == "media-files" and len(parts) == 2:
            return Route("media download", lambda call: self._download(call, parts[1]), body="raw")
        if len(parts) < 2 or parts[0] != VERSION:
            return None
        if len(parts) == 2 and request.method == "GET":
            return Route("media lookup", lambda call: self._lookup(call, parts[1]))
        if len(parts) == 3 and parts[1] == self.phone_number_id and request.method == "POST":
            if parts[2] == "messages":
                return Route("messages", self._messages, body="json")
            if parts[2] == "media":
                return Route("media upload", self._upload)
        return None

    def render_failure(self, call: dict, status: int) -> Response:
        return _error(status, 2 if status >= 500 else 100, "Service temporarily unavailable"
                      if status >= 500 else "Invalid parameter")

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return _error(400, 130429, "(#130429) Rate limit hit")

    # -- handlers ------------------------------------------------------------------

    def _authorized(self, call: dict) -> bool:
        return call["headers"].get("Authorization") == f"Bearer {self.access_token}"

    def _lookup(self, call: dict, media_id: str) -> Response:
        if not self._authorized(call):
            return _error(401, 190, "Invalid OAuth access token")
        if media_id not in self.media:
            return _error(400, 100, "Unsupported get request")
        data, mime_type = self.media[media_id]
        return json_response({"messaging_product": "whatsapp", "id": media_id, "mime_type": mime_type,
                              "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
                              "url": f"{self.base_url}/media-files/{media_id}"})

    def _download(self, call: dict, media_id: str) -> Response:
        if not self._authorized(call):
            return Response("", status=401)
        if media_id not in self.media:
            return Response("", status=404)
        data, mime_type = self.media[media_id]
        return Response(data, content_type=mime_type)

    def _upload(self, call: dict) -> Response:
        upload = call["files"].get("file")
        if not self._authorized(call) or upload is None or not looks_like_image(upload["data"]):
            return _error(400, 100, "Invalid parameter")
        media_id = str(800000000000000 + next(self._ids))
        self.uploads[media_id] = upload["data"]
        return json_response({"id": media_id})

    def _messages(self, call: dict) -> Response:
        message = call["params"]
        if not self._authorized(call):
            return _error(401, 190, "Invalid OAuth access token")
        to, kind = str(message.get("to")), message.get("type")
        if message.get("messaging_product") != "whatsapp" or kind not in ("text", "image", "reaction"):
            return _error(400, 100, "Invalid parameter")
        if time.time() - self.last_written.get(to, float("-inf")) > WINDOW_S:
            return _error(400, 131047, "Re-engagement message")
        if kind == "text":
            text, images = message["text"]["body"], []
        elif kind == "image":
            text, images = message["image"].get("caption"), [self.uploads[message["image"]["id"]]]
        else:
            text, images = message["reaction"]["emoji"], []
        self.record_sent(call, text, images)
        return json_response({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                              "messages": [{"id": f"wamid.out{next(self._ids)}"}]})


def _error(status: int, code: int, message: str) -> Response:
    return json_response({"error": {"message": message, "type": "OAuthException", "code": code,
                                    "fbtrace_id": "AfakeLoopbackTrace"}}, status)


fake_whatsapp = fake_fixture(FakeWhatsApp, name="fake_whatsapp")


# -- webhooks as Meta delivers them ------------------------------------------------------


def voice_message(media_id: str, *, sender: str = DEFAULT_CUSTOMER, voice: bool = True,
                  sent_at: float | None = None, message_id: str | None = None) -> dict:
    """One ``messages[]`` entry: a voice note (or, with ``voice`` false, an audio file)."""
    return {"from": sender, "id": message_id or f"wamid.in{media_id}", "timestamp": str(int(sent_at or time.time())),
            "type": "audio", "audio": {"id": media_id, "mime_type": "audio/ogg; codecs=opus", "voice": voice}}


def text_message(body: str, *, sender: str = DEFAULT_CUSTOMER, message_id: str = "wamid.text1") -> dict:
    return {"from": sender, "id": message_id, "timestamp": str(int(time.time())), "type": "text",
            "text": {"body": body}}


def webhook_request(*messages: dict, fake: FakeWhatsApp | None = None, app_secret: str = DEFAULT_APP_SECRET,
                    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID, name: str = "王小明") -> InboundRequest:
    """The signed POST that carries ``messages`` (each person who wrote opens their window at ``fake``)."""
    for message in messages:
        if fake is not None:
            fake.customer_wrote(message["from"], float(message["timestamp"]))
    contacts = [{"profile": {"name": name}, "wa_id": sender} for sender in dict.fromkeys(m["from"] for m in messages)]
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001234", "phone_number_id": phone_number_id},
             "contacts": contacts, "messages": list(messages)}
    payload = {"object": "whatsapp_business_account",
               "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}
    return signed(json.dumps(payload, ensure_ascii=False).encode(), app_secret)


def signed(body: bytes, app_secret: str = DEFAULT_APP_SECRET) -> InboundRequest:
    """``body`` with Meta's signature, computed here on its own so the test does not trust the adapter's."""
    signature = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return InboundRequest("POST", {"Content-Type": "application/json", SIGNATURE_HEADER: signature}, body)


def subscription_check(verify_token: str = DEFAULT_VERIFY_TOKEN, challenge: str = "1158201444") -> InboundRequest:
    return InboundRequest("GET", {}, query={"hub.mode": "subscribe", "hub.verify_token": verify_token,
                                            "hub.challenge": challenge})


def environment(fake: FakeWhatsApp) -> dict[str, Any]:
    """The variables an operator sets, pointed at the fake."""
    return {"WHATSAPP_ACCESS_TOKEN": fake.access_token, "WHATSAPP_APP_SECRET": DEFAULT_APP_SECRET,
            "WHATSAPP_VERIFY_TOKEN": DEFAULT_VERIFY_TOKEN, "WHATSAPP_PHONE_NUMBER_ID": fake.phone_number_id,
            "WHATSAPP_API_VERSION": VERSION, "WHATSAPP_API_BASE": fake.base_url}
