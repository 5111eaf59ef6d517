"""Telegram Bot API: webhook updates in, replies quoting the voice message out.

* Verification: Telegram sends the ``secret_token`` given to ``setWebhook``
  in ``X-Telegram-Bot-Api-Secret-Token``; it is compared in constant time.
  Telegram signs nothing and sends no timestamp, so a replayed update is
  stopped by deduplication on ``update_id`` instead.
* Voice: ``message.voice`` (Ogg/Opus), ``message.audio``,
  ``message.video_note`` (round MP4: its sound track) and documents whose
  type or name says audio. ``getFile`` then the file server; the public Bot
  API refuses files over 20 MB, so those get a reply saying so without a
  download.
* Replies quote the voice message (``reply_parameters``), in its forum topic
  if it has one; a chart goes as a photo with the reply as its caption, so a
  reply is always one message.
* Language: a chat without its own ``reply.languages`` entry follows the
  sender's Telegram app language (``from.language_code``) when it is Chinese
  or English.
"""

from __future__ import annotations

import hmac
import json
from pathlib import PurePosixPath

from bot_bridge.chat.messages import ChatMessage, InboundRequest, Media, ParsedWebhook
from bot_bridge.chat.outbound import OutboundError, RateLimited, Rejected, raise_for_transient
from bot_bridge.errors import AudioError

from .base import ChatAdapter, Refused, TextLimit, is_help_request

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
AUDIO_FILE_SUFFIXES = frozenset({".amr", ".m4a", ".mp3", ".oga", ".ogg", ".opus", ".wav", ".flac", ".aac", ".webm"})
# The media a message can carry that we analyse, with the file name to store when it has none.
MEDIA_FIELDS = {"voice": "voice.ogg", "audio": "audio", "video_note": "video_note.mp4", "document": "document"}


class TelegramAdapter(ChatAdapter):
    name = "telegram"
    webhook_path = "telegram"
    environment = {
        "bot_token": "TELEGRAM_BOT_TOKEN",
        "webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
        "api_base": "TELEGRAM_API_BASE",
    }
    required = ("bot_token", "webhook_secret")
    default_api_base = "https://api.telegram.org"
    alert_text_limit = TextLimit(4096, "utf-16 units")  # sendMessage text
    caption_limit = TextLimit(1024, "utf-16 units")  # sendPhoto caption: a reply with its chart
    max_download_bytes = MAX_DOWNLOAD_BYTES

    def verify(self, request: InboundRequest) -> None:
        supplied = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(supplied.encode(), self.settings["webhook_secret"].encode()):
            raise Refused(401, f"missing or wrong {SECRET_HEADER}")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        update = json.loads(request.body)
        message = update.get("message")
        if not message:
            return ParsedWebhook()  # edits, channel posts, member updates: nothing to answer
        media = _media(message)
        if media is None and not is_help_request(message.get("text")):
            return ParsedWebhook()
        chat, sender = message["chat"], message.get("from") or {}
        note = ChatMessage(
            platform=self.name,
            delivery_id=str(update["update_id"]),
            kind="help" if media is None else "voice",
            chat_id=str(chat["id"]),
            chat_name=chat.get("title") or chat.get("username") or chat.get("first_name"),
            sender_id=None if "id" not in sender else str(sender["id"]),
            sender_name=sender.get("username") or sender.get("first_name"),
            message_id=str(message["message_id"]),
            thread_id=str(message["message_thread_id"]) if message.get("is_topic_message") else None,
            media=media,
            language=_language(sender.get("language_code")),
        )
        return ParsedWebhook(messages=(note,))

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        try:
            file = self._call("getFile", json={"file_id": message.media.ref})
        except OutboundError as error:
            if "too big" in error.reason:
                raise AudioError("too_large_to_fetch", error.reason, limit_mb=MAX_DOWNLOAD_BYTES // 2**20) from None
            raise
        url = f"{self.api_base}/file/bot{self.settings['bot_token']}/{file['file_path']}"
        return self.http.download(url, call="telegram file download", max_bytes=max_bytes)

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        extra = {"reply_parameters": {"message_id": int(message.message_id), "allow_sending_without_reply": True}}
        if message.thread_id:
            extra["message_thread_id"] = int(message.thread_id)
        return self._send(message.chat_id, text, image, extra)

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        return self._send(chat_id, text, image, {})

    def set_webhook(self, url: str) -> str:
        """Deliver only messages, with the secret token that ``verify`` checks."""
        self._call(
            "setWebhook",
            json={"url": url, "secret_token": self.settings["webhook_secret"], "allowed_updates": ["message"]},
        )
        return f"Telegram will deliver messages to {url}"

    def _send(self, chat_id: str, text: str, image: bytes | None, extra: dict) -> str:
        target = {"chat_id": _chat_id(chat_id), **extra}
        if image is None:
            sent = self._call("sendMessage", delivers=True, json={**target, "text": text})
        else:
            form = {key: json.dumps(value) if isinstance(value, dict) else value for key, value in target.items()}
            sent = self._call(
                "sendPhoto", delivers=True, data={**form, "caption": text},
                files={"photo": ("timeline.png", image, "image/png")},
            )
        return str(sent["message_id"])

    def _call(self, method: str, **kwargs) -> dict:
        url = f"{self.api_base}/bot{self.settings['bot_token']}/{method}"
        return self.http.call("POST", url, call=f"telegram {method}", check=_check, **kwargs)


def _check(response) -> dict:
    """Bot API envelope: ``{"ok": true, "result": ...}``, or an error with ``parameters.retry_after``."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if body.get("ok"):
        return body["result"]
    status = response.status_code
    retry_after = (body.get("parameters") or {}).get("retry_after")
    if status == 429 and retry_after is not None:
        raise RateLimited(float(retry_after), "Telegram flood control")
    raise_for_transient(response)
    raise Rejected(body.get("description") or f"HTTP {status}")


def _media(message: dict) -> Media | None:
    for field, default_name in MEDIA_FIELDS.items():
        item = message.get(field)
        if item is None or (field == "document" and not _is_audio_document(item)):
            continue
        return Media(
            ref=item["file_id"],
            mime_type=item.get("mime_type"),
            size_bytes=item.get("file_size"),
            duration_s=item.get("duration"),
            file_name=item.get("file_name") or default_name,
        )
    return None


def _is_audio_document(document: dict) -> bool:
    mime_type = document.get("mime_type") or ""
    suffix = PurePosixPath(document.get("file_name") or "").suffix.lower()
    return mime_type.startswith("audio/") or suffix in AUDIO_FILE_SUFFIXES


def _language(code: str | None) -> str | None:
    code = (code or "").lower()
    if code.startswith("zh"):
        return "zh"
    if code.startswith("en"):
        return "en"
    return None


def _chat_id(chat_id: str) -> int | str:
    """Numeric ids go as numbers; ``@channelname`` stays a string."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
