"""Telegram Bot API: webhook or polled updates in, replies quoting the voice message out.

* Two ways in (``platforms.telegram.mode``, ``TELEGRAM_MODE``): ``webhook``
  (Telegram posts each update to bot-bridge's public HTTPS URL) or
  ``polling`` (bot-bridge asks with ``getUpdates``, a 30 s long poll: no
  public URL needed). Without a webhook secret the mode is ``polling``, so a
  bot token alone is a working bot on a laptop. Polling first deletes a
  webhook left from webhook mode, keeping its pending updates
  (``drop_pending_updates`` false); Telegram refuses getUpdates (409) while
  a webhook is set or while another program polls, and the error says which.
  Both ways deliver the same ``Update`` objects, parsed by ``parse``.
* Verification (webhook mode): Telegram sends the ``secret_token`` given to ``setWebhook``
  in ``X-Telegram-Bot-Api-Secret-Token``; it is compared in constant time.
  Telegram signs nothing and sends no timestamp, so a replayed update is
  stopped by deduplication on ``update_id`` instead.
* Voice: ``message.voice`` (Ogg/Opus), ``message.audio``,
  ``message.video_note`` (round MP4: its sound track) and documents whose
  type or name says audio. ``getFile`` then the file server; the public Bot
  API refuses files over 20 MB, so those get a reply saying so without a
  download.
* ``/forget`` or ``删除我的数据`` deletes the sender's data. Telegram does not
  tell bots when a message is deleted, so a deleted voice message stays
  until the person asks or retention removes it.
* Replies quote the voice message (``reply_parameters``), in its forum topic
  if it has one; a chart goes as a photo with the reply as its caption, so a
  reply is always one message.
* Reactions (``reply.mode: reaction``): ``setMessageReaction`` on the voice
  message. Bots may only use the 73 emoji of ``ReactionTypeEmoji``; of ours
  😨 😐 🤔 😢 are among them, the others get the nearest allowed one
  (``REACTIONS``; docs/reply-modes.md has the table).
* Language: a chat without its own ``reply.languages`` entry follows the
  sender's Telegram app language (``from.language_code``) when it is Chinese
  or English.
* Cases: a message with an inline keyboard (``callback_data`` holds the
  button's value, 64 bytes at most), edited with ``editMessageText``. A
  press is a ``callback_query`` update, at the same webhook (verified by its
  secret token) or by polling: both ask for ``callback_query`` updates
  (``ALLOWED_UPDATES``; Telegram keeps the last list a bot gave, so a
  webhook set before cases existed must be set again). Every press is
  answered with ``answerCallbackQuery`` at once, before the messages are
  edited: Telegram shows a spinner until then.
"""

from __future__ import annotations

import hmac
import json
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, Pulled
from bot_bridge.chat.outbound import OutboundError, RateLimited, Rejected, raise_for_transient
from bot_bridge.errors import AudioError

from .base import PULL, WEBHOOK, ChatAdapter, PostedCard, Refused, TextLimit, text_request

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
AUDIO_FILE_SUFFIXES = frozenset({".amr", ".m4a", ".mp3", ".oga", ".ogg", ".opus", ".wav", ".flac", ".aac", ".webm"})
# The media a message can carry that we analyse, with the file name to store when it has none.
MEDIA_FIELDS = {"voice": "voice.ogg", "audio": "audio", "video_note": "video_note.mp4", "document": "document"}
#: The updates bot-bridge asks for, by webhook and by polling alike (Telegram keeps the last list it was given).
ALLOWED_UPDATES = ["message", "callback_query"]
#: Buttons per row of a case's inline keyboard; answerCallbackQuery's longest text.
BUTTONS_PER_ROW = 3
ANSWER_TEXT_CHARS = 200
MODES = ("webhook", "polling")
#: getUpdates waits this long for an update before answering an empty list.
POLL_TIMEOUT_S = 30
#: How much longer than the long poll the answer may take before the call counts as timed out.
POLL_READ_MARGIN_S = 15
#: The emoji a reaction shows for each emotion: its own where Telegram allows it, else the nearest allowed one.
REACTIONS = {
    "angry": "😡",  # 😠 is not allowed
    "disgusted": "🤮",  # 🤢 is not allowed
    "fearful": "😨",
    "happy": "😁",  # 😊 is not allowed
    "neutral": "😐",
    "other": "🤔",
    "sad": "😢",
    "surprised": "😱",  # 😲 is not allowed
    "unknown": "🤨",  # ❓ is not allowed
}
WEBHOOK_STILL_SET = (
    "Telegram answers 409: a webhook is set for this bot, so it hands out no updates by polling. bot-bridge "
    "deleted it when it started polling, so something set it again (a deployment in webhook mode, or "
    "`bot-bridge telegram set-webhook`): delete it, or run every deployment with TELEGRAM_MODE=webhook"
)
ANOTHER_POLLER = (
    "Telegram answers 409: another program polls this bot's updates with the same token (a bot-bridge "
    "deployment on another database, or another bot framework); only one may, each one cuts the other off"
)


class TelegramAdapter(ChatAdapter):
    name = "telegram"
    webhook_path = "telegram"
    environment = {
        "bot_token": "TELEGRAM_BOT_TOKEN",
        "webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
        "api_base": "TELEGRAM_API_BASE",
        "mode": "TELEGRAM_MODE",
    }
    default_api_base = "https://api.telegram.org"
    alert_text_limit = TextLimit(4096, "utf-16 units")  # sendMessage text
    caption_limit = TextLimit(1024, "utf-16 units")  # sendPhoto caption: a reply with its chart
    max_download_bytes = MAX_DOWNLOAD_BYTES
    can_react = True
    edits_cases = True

    @classmethod
    def missing_settings(cls, settings: dict) -> list[str]:
        needed = ("bot_token", "webhook_secret") if _mode(settings) == "webhook" else ("bot_token",)
        return [key for key in needed if not settings.get(key)]

    @property
    def receives(self) -> str:
        return WEBHOOK if _mode(self.settings) == "webhook" else PULL

    def verify(self, request: InboundRequest) -> None:
        supplied = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(supplied.encode(), self.settings["webhook_secret"].encode()):
            raise Refused(401, f"missing or wrong {SECRET_HEADER}")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        update = json.loads(request.body)
        if "callback_query" in update:
            return ParsedWebhook(actions=(self._press(update["callback_query"]),))
        message = update.get("message")
        if not message:
            return ParsedWebhook()  # edits, channel posts, member updates: nothing to answer
        media = _media(message)
        asked = None if media is not None else text_request(message.get("text"))
        if media is None and asked is None:
            return ParsedWebhook()
        chat, sender = message["chat"], message.get("from") or {}
        note = ChatMessage(
            platform=self.name,
            delivery_id=str(update["update_id"]),
            kind=asked or "voice",
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

    def send_case(self, chat_id: str, card: CaseCard) -> PostedCard:
        sent = self._call("sendMessage", delivers=True,
                          json={"chat_id": _chat_id(chat_id), "text": card.plain_text, "reply_markup": _keyboard(card)})
        return PostedCard(str(sent["message_id"]))

    def update_case(self, chat_id: str, posted: PostedCard, card: CaseCard) -> str | None:
        edit = {"chat_id": _chat_id(chat_id), "message_id": int(posted.ref), "text": card.plain_text,
                "reply_markup": _keyboard(card)}
        try:
            self._call("editMessageText", json=edit)
        except Rejected as error:
            if "message is not modified" not in error.reason:  # it shows this already: what the edit was for
                raise
        return None

    def answer_press(self, action: CaseAction, text: str, *, refused: bool = False) -> None:
        """``answerCallbackQuery``: the spinner stops, and the text shows (in a dialog when ``refused``)."""
        self._call("answerCallbackQuery", json={"callback_query_id": action.answer_ref,
                                                "text": text[:ANSWER_TEXT_CHARS], "show_alert": refused})

    def send_reaction(self, message: ChatMessage, emotion: str) -> str:
        emoji = REACTIONS[emotion]
        target = {"chat_id": _chat_id(message.chat_id), "message_id": int(message.message_id)}
        reaction = [{"type": "emoji", "emoji": emoji}]
        self._call("setMessageReaction", delivers=True, json={**target, "reaction": reaction})
        return emoji

    def set_webhook(self, url: str) -> str:
        """Deliver messages and button presses, with the secret token that ``verify`` checks."""
        if self.receives != WEBHOOK:
            raise ValueError("Telegram is in polling mode: a webhook would stop polling (Telegram answers 409). "
                             "Set TELEGRAM_WEBHOOK_SECRET and TELEGRAM_MODE=webhook first")
        self._call(
            "setWebhook",
            json={"url": url, "secret_token": self.settings["webhook_secret"], "allowed_updates": ALLOWED_UPDATES},
        )
        return f"Telegram will deliver messages to {url}"

    def start_pulling(self) -> str:
        """Delete a webhook left from webhook mode, keeping the updates it had not delivered yet."""
        webhook = self._call("getWebhookInfo")
        if not webhook.get("url"):
            return "no webhook was set"
        self._call("deleteWebhook", json={"drop_pending_updates": False})
        return (f"deleted the webhook to {urlsplit(webhook['url']).hostname}; its "
                f"{webhook.get('pending_update_count', 0)} pending update(s) come by polling")

    def pull(self, cursor: str | None) -> Pulled:
        """``getUpdates`` from ``cursor`` (the offset: it also confirms every update before it to Telegram)."""
        query = {"timeout": POLL_TIMEOUT_S, "allowed_updates": ALLOWED_UPDATES}
        if cursor is not None:
            query["offset"] = int(cursor)
        try:
            updates = self._call("getUpdates", json=query, read_timeout_s=POLL_TIMEOUT_S + POLL_READ_MARGIN_S)
        except OutboundError as error:
            if "webhook is active" in error.reason:
                raise OutboundError(error.call, WEBHOOK_STILL_SET, retryable=True) from None
            if "other getUpdates" in error.reason:
                raise OutboundError(error.call, ANOTHER_POLLER, retryable=True) from None
            raise
        received = tuple(InboundRequest.carrying(json.dumps(update).encode(), "getUpdates") for update in updates)
        return Pulled(received, str(updates[-1]["update_id"] + 1) if updates else cursor)

    def _press(self, query: dict) -> CaseAction:
        """A ``callback_query``: its id names the press and is what answerCallbackQuery needs."""
        message, sender = query.get("message") or {}, query.get("from") or {}
        chat = message.get("chat") or {}
        return CaseAction(
            platform=self.name,
            delivery_id=str(query["id"]),
            value=query.get("data") or "",
            actor_id=str(sender.get("id")),
            actor_name=sender.get("username") or sender.get("first_name"),
            chat_id=None if "id" not in chat else str(chat["id"]),
            message_ref=None if "message_id" not in message else str(message["message_id"]),
            answer_ref=str(query["id"]),
        )

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


def _keyboard(card: CaseCard) -> dict:
    """The card's buttons as an inline keyboard, ``BUTTONS_PER_ROW`` to a row; none once nothing is left to do."""
    buttons = [{"text": button.label, "callback_data": button.value} for button in card.buttons]
    return {"inline_keyboard": [buttons[i:i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]}


def _mode(settings: dict) -> str:
    """``webhook`` or ``polling``, as set; without a setting, ``webhook`` exactly when a webhook secret is set."""
    mode = settings.get("mode") or ("webhook" if settings.get("webhook_secret") else "polling")
    if mode not in MODES:
        raise ValueError(f"TELEGRAM_MODE (platforms.telegram.mode) must be webhook or polling, not {mode!r}")
    return mode


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
