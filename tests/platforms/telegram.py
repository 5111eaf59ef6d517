"""A loopback Telegram Bot API, and genuine webhook updates built with python-telegram-bot.

The fake serves the part of the Bot API the bot uses, on the real paths:
``/bot<token>/<method>`` (method names case-insensitive, as in tdlib's server)
and the file server ``/file/bot<token>/<file_path>``. Answers have the real
envelope: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": 400, "description": "Bad Request: ..."}``, and a
429 carries both ``parameters.retry_after`` and a ``Retry-After`` header, as
telegram-bot-api's HttpConnection.cpp sends them.

Point python-telegram-bot at it with::

    Bot(fake.token, base_url=fake.base_url + "/bot", base_file_url=fake.base_url + "/file/bot")

Updates are built from PTB objects and serialised with ``to_dict()``, so they
have exactly the shape PTB (and Telegram) use. The same updates reach a bot
that polls: ``push_update`` queues one, ``getUpdates`` hands them out as
Telegram does (a long poll that answers as soon as one arrives, an offset
that confirms and forgets what lies before it, 409 while a webhook is set or
when a second poll cuts in).

Messages with an inline keyboard can be pressed: ``press(chat_id,
message_id, callback_data)`` builds the ``callback_query`` update Telegram
would send (with PTB's ``CallbackQuery``), for the webhook or for
``push_update``; the fake then expects one ``answerCallbackQuery`` for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import telegram
from werkzeug.wrappers import Request, Response

from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response, looks_like_image

DEFAULT_TOKEN = "7000000001:AAFakeLoopbackTokenForTests_abcdefgh"
DEFAULT_BOT_USERNAME = "emotion_fake_bot"
DEFAULT_SECRET_TOKEN = "loopback-secret_token-1"
DEFAULT_USER_ID = 424242
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files on the public Bot API
MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
WEBHOOK_PORTS = (443, 80, 88, 8443)

_METHODS = ["getMe", "getFile", "sendMessage", "sendPhoto", "sendDocument", "sendChatAction",
            "setWebhook", "deleteWebhook", "getWebhookInfo", "getUpdates", "setMessageReaction",
            "answerCallbackQuery", "editMessageText", "editMessageReplyMarkup"]
_CANONICAL = {name.lower(): name for name in _METHODS}
_JSON_FIELDS = {"reply_parameters", "reply_markup", "allowed_updates", "entities", "caption_entities",
                "link_preview_options", "reaction"}
_INT_FIELDS = {"chat_id", "message_thread_id", "max_connections", "offset", "limit", "timeout", "message_id"}
_BOOL_FIELDS = {"disable_notification", "protect_content", "drop_pending_updates",
                "allow_sending_without_reply", "is_big", "show_alert"}
MAX_CALLBACK_DATA_BYTES = 64
MAX_ANSWER_CHARS = 200
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message")
STALE_QUERY = "Bad Request: query is too old and response timeout expired or query ID is invalid"
#: What getUpdates delivers when allowed_updates was never given: every kind but these (Bot API).
_NOT_BY_DEFAULT = {"chat_member", "message_reaction", "message_reaction_count"}
#: The emoji bots may react with (Bot API ReactionTypeEmoji), from python-telegram-bot's constants.
REACTION_EMOJI = frozenset(emoji.value for emoji in telegram.constants.ReactionEmoji)
_FILE_DIRS = {"voice": "voice", "audio": "music", "video_note": "video_notes", "photo": "photos",
              "document": "documents"}
_EXTENSIONS = {"audio/ogg": ".oga", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "video/mp4": ".mp4",
               "image/jpeg": ".jpg"}
_HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
              "a", "tg-emoji", "code", "pre", "blockquote"}


def unique_id_for(file_id: str) -> str:
    """The ``file_unique_id`` that goes with ``file_id``, the same in the fake and the builders."""
    digest = base64.urlsafe_b64encode(hashlib.sha1(file_id.encode()).digest()).decode()
    return "AgAD" + digest[:12]


@dataclass
class StoredFile:
    """A file the fake can hand out through getFile and the file server."""

    file_id: str
    data: bytes
    mime_type: str
    file_path: str

    @property
    def file_unique_id(self) -> str:
        return unique_id_for(self.file_id)


class TelegramError(Exception):
    """Raised inside handlers; becomes ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class FakeTelegram(FakePlatformServer):
    """The Bot API methods the bot uses, with their real validation and error texts.

    Methods: getMe, getFile (+ file download), sendMessage (text length, a
    MarkdownV2/HTML sanity check, an inline keyboard's ``callback_data`` of 1-64
    bytes; kept in ``messages``), editMessageText and editMessageReplyMarkup (of
    a kept message; "message is not modified" when nothing changes; each
    accepted one lands in ``edits``), answerCallbackQuery (once per press,
    text of 200 characters at most; in ``answers``), sendPhoto and sendDocument (multipart,
    ``attach://`` or a known file_id), sendChatAction, setWebhook (url must be
    https on 443/80/88/8443, secret_token 1-256 of ``[A-Za-z0-9_-]``),
    deleteWebhook, getWebhookInfo, getUpdates (see the module docstring;
    ``poll_conflicts`` counts polls cut off by another), setMessageReaction
    (one emoji of ``REACTION_EMOJI``; each accepted one lands in
    ``reactions``). Fault targets are these names, or ``"download"`` for the
    file server.
    """

    REAL_BASE_URLS = ("https://api.telegram.org/",)

    def __init__(self, token: str = DEFAULT_TOKEN, bot_username: str = DEFAULT_BOT_USERNAME) -> None:
        super().__init__()
        self.token = token
        self.bot_user = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "Emotion Bot",
            "username": bot_username,
        }
        self.files: dict[str, StoredFile] = {}
        self.webhook: dict[str, Any] | None = None
        self.updates: list[dict] = []  # pushed, not yet confirmed by an offset
        self.allowed_updates: list[str] | None = None
        self.poll_conflicts = 0
        self.reactions: list[dict] = []
        self.messages: dict[tuple[int | str, int], dict] = {}  # (chat_id, message_id) -> text and reply_markup
        self.edits: list[dict] = []
        self.answers: list[dict] = []
        self._presses: dict[str, bool] = {}  # callback_query id -> answered
        self._current_poll: object | None = None
        self._file_numbers = itertools.count()
        self._message_ids = itertools.count(1000)

    # -- test set-up ---------------------------------------------------------

    def add_file(self, data: bytes, mime_type: str = "audio/ogg", kind: str | None = None) -> str:
        """Store a file the bot may fetch; returns its ``file_id``.

        ``kind`` (voice, audio, video_note, photo, document) picks the folder of
        the ``file_path`` as Telegram does; by default it follows ``mime_type``.
        """
        kind = kind or _kind_for(mime_type)
        file_id = "AwACAgIAAxkBAAI" + secrets.token_urlsafe(36)
        extension = _EXTENSIONS.get(mime_type) or mimetypes.guess_extension(mime_type) or ".bin"
        path = f"{_FILE_DIRS[kind]}/file_{next(self._file_numbers)}{extension}"
        with self._lock:
            self.files[file_id] = StoredFile(file_id, data, mime_type, path)
        return file_id

    def press(self, chat_id: int | str, message_id: int, data: str, *, user_id: int = DEFAULT_USER_ID,
              first_name: str = "Ada", username: str | None = "ada_l") -> dict:
        """The ``callback_query`` update of someone pressing the button ``data`` on a message the bot sent."""
        message = self.messages[(chat_id, message_id)]
        query_id = str(secrets.randbits(63))
        with self._lock:
            self._presses[query_id] = False
        return callback_query_update(query_id, chat_id, message_id, data, text=message["text"],
                                     reply_markup=message["reply_markup"], user_id=user_id, first_name=first_name,
                                     username=username)

    def push_update(self, update: dict) -> None:
        """A new update for the bot: answered at once to a poll waiting for one, kept until confirmed."""
        with self._changed:
            self.updates.append(update)
            self._changed.notify_all()

    # -- routing ---------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        api = re.fullmatch(r"/bot([^/]+)/(\w+)", request.path)
        if api:
            name = _CANONICAL.get(api.group(2).lower())
            if name is None:
                return None
            handler = getattr(self, "_" + name)
            return Route(name, self._authorised(api.group(1), handler))
        download = re.fullmatch(r"/file/bot([^/]+)/(.+)", request.path)
        if download:
            return Route("download", self._authorised(download.group(1), self._download))
        return None

    def _authorised(self, token: str, handler):
        def serve(call: dict) -> Response:
            try:
                if token != self.token:
                    raise TelegramError(401, "Unauthorized")
                return handler(call)
            except TelegramError as error:
                return _error(error.status, error.description)

        return serve

    def decode_params(self, params: dict[str, Any]) -> dict[str, Any]:
        decoded = dict(params)
        for key, value in params.items():
            if not isinstance(value, str):
                continue
            if key in _JSON_FIELDS:
                try:
                    decoded[key] = json.loads(value)
                except ValueError:
                    raise ValueError(f"Bad Request: can't parse {key.replace('_', ' ')} JSON object") from None
            elif key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
                decoded[key] = int(value)
            elif key in _BOOL_FIELDS:
                decoded[key] = value.lower() in ("true", "1")
        return decoded

    # -- error shapes ------------------------------------------------------------

    def render_failure(self, call: dict, status: int) -> Response:
        return _error(status, HTTPStatus(status).phrase)

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return _error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    def render_not_found(self, call: dict) -> Response:
        return _error(404, "Not Found")

    def render_malformed(self, call: dict) -> Response:
        reason = call["malformed"]
        return _error(400, reason if reason.startswith("Bad Request") else "Bad Request: can't parse JSON object")

    # -- methods -----------------------------------------------------------------

    def _getMe(self, call: dict) -> Response:
        return _ok({**self.bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False})

    def _getFile(self, call: dict) -> Response:
        file_id = call["params"].get("file_id")
        if not file_id:
            raise TelegramError(400, "Bad Request: file_id not specified")
        stored = self.files.get(file_id)
        if stored is None:
            raise TelegramError(400, "Bad Request: invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise TelegramError(400, "Bad Request: file is too big")
        return _ok({"file_id": file_id, "file_unique_id": stored.file_unique_id,
                    "file_size": len(stored.data), "file_path": stored.file_path})

    def _download(self, call: dict) -> Response:
        file_path = call["path"].split("/", 3)[3]
        stored = next((f for f in self.files.values() if f.file_path == file_path), None)
        if stored is None or call["http_method"] not in ("GET", "HEAD"):
            raise TelegramError(404, "Not Found")
        return Response(stored.data, content_type="application/octet-stream")

    def _sendMessage(self, call: dict) -> Response:
        params = call["params"]
        chat_id = _chat_id(params)
        text = params.get("text") or ""
        if not text.strip():
            raise TelegramError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_CHARS:
            raise TelegramError(400, "Bad Request: message is too long")
        _check_markup(text, params.get("parse_mode"))
        _check_reply_parameters(params)
        _check_keyboard(params.get("reply_markup"))
        message = self._new_message(chat_id, text=text)
        self.messages[(chat_id, message["message_id"])] = {"text": text, "reply_markup": params.get("reply_markup")}
        self.record_sent(call, text)
        return _ok(message)

    def _editMessageText(self, call: dict) -> Response:
        params = call["params"]
        text = params.get("text") or ""
        if not text.strip():
            raise TelegramError(400, "Bad Request: message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT_CHARS:
            raise TelegramError(400, "Bad Request: MESSAGE_TOO_LONG")
        return self._edit(call, text=text, reply_markup=params.get("reply_markup"))

    def _editMessageReplyMarkup(self, call: dict) -> Response:
        return self._edit(call, reply_markup=call["params"].get("reply_markup"))

    def _edit(self, call: dict, **change: Any) -> Response:
        params = call["params"]
        key = (_chat_id(params), params.get("message_id"))
        message = self.messages.get(key)
        if message is None:
            raise TelegramError(400, "Bad Request: message to edit not found")
        _check_keyboard(change.get("reply_markup"))
        if all(message.get(field) == value for field, value in change.items()):
            raise TelegramError(400, NOT_MODIFIED)
        message.update(change)
        self.edits.append(params)
        chat_id, message_id = key
        edited = self._new_message(chat_id, text=message["text"])
        return _ok({**edited, "message_id": message_id, "edit_date": int(time.time())})

    def _answerCallbackQuery(self, call: dict) -> Response:
        params = call["params"]
        query_id = str(params.get("callback_query_id") or "")
        if self._presses.get(query_id) is not False:
            raise TelegramError(400, STALE_QUERY)  # unknown, or answered already
        if len(params.get("text") or "") > MAX_ANSWER_CHARS:
            raise TelegramError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._presses[query_id] = True
        self.answers.append(params)
        return _ok(True)

    def _sendPhoto(self, call: dict) -> Response:
        return self._send_media(call, "photo")

    def _sendDocument(self, call: dict) -> Response:
        return self._send_media(call, "document")

    def _send_media(self, call: dict, field: str) -> Response:
        params = call["params"]
        chat_id = _chat_id(params)
        caption = params.get("caption") or ""
        if len(caption) > MAX_CAPTION_CHARS:
            raise TelegramError(400, "Bad Request: message caption is too long")
        _check_markup(caption, params.get("parse_mode"))
        _check_reply_parameters(params)
        data, mime_type, filename = self._media_content(call, field)
        if field == "photo":
            size = _image_size(data)
            if size is None:
                raise TelegramError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            file_id = self.add_file(data, "image/jpeg", "photo")
            width, height = size
            media = [{"file_id": file_id, "file_unique_id": unique_id_for(file_id),
                      "file_size": len(data), "width": width, "height": height}]
        else:
            file_id = self.add_file(data, mime_type, "document")
            media = {"file_id": file_id, "file_unique_id": unique_id_for(file_id), "file_size": len(data),
                     "file_name": filename, "mime_type": mime_type}
        if looks_like_image(data):
            self.uploaded_images.append(data)
        message = self._new_message(chat_id, **{field: media}, **({"caption": caption} if caption else {}))
        self.record_sent(call, caption or None, [data])
        return _ok(message)

    def _media_content(self, call: dict, field: str) -> tuple[bytes, str, str]:
        """The bytes sent as ``field``: an upload, ``attach://name``, or a known file_id."""
        reference = call["params"].get(field)
        part_name = field
        if isinstance(reference, str) and reference.startswith("attach://"):
            part_name = reference[len("attach://"):]
        upload = call["files"].get(part_name)
        if upload is not None:
            return upload["data"], upload["content_type"], upload["filename"] or field
        if not reference:
            raise TelegramError(400, f"Bad Request: there is no {field} in the request")
        if reference.startswith(("http://", "https://")):
            raise TelegramError(400, "Bad Request: failed to get HTTP URL content")
        stored = self.files.get(reference)
        if stored is None:
            raise TelegramError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return stored.data, stored.mime_type, stored.file_path.rsplit("/", 1)[-1]

    def _sendChatAction(self, call: dict) -> Response:
        _chat_id(call["params"])
        if not call["params"].get("action"):
            raise TelegramError(400, "Bad Request: action is empty")
        return _ok(True)

    def _setWebhook(self, call: dict) -> Response:
        params = call["params"]
        url = params.get("url") or ""
        if not url:
            return self._deleteWebhook(call)
        secret_token = params.get("secret_token") or ""
        if len(secret_token) > 256:
            raise TelegramError(400, "Bad Request: secret token is too long")
        if not re.fullmatch(r"[A-Za-z0-9_-]*", secret_token):
            raise TelegramError(400, "Bad Request: secret token contains unallowed characters")
        scheme, _, rest = url.partition("://")
        if scheme != "https":
            raise TelegramError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        port_match = re.match(r"[^/:]+:(\d+)", rest)
        if port_match and int(port_match.group(1)) not in WEBHOOK_PORTS:
            raise TelegramError(
                400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
        settings = {
            "url": url,
            "secret_token": secret_token or None,
            "allowed_updates": params.get("allowed_updates"),
            "max_connections": params.get("max_connections", 40),
            "drop_pending_updates": params.get("drop_pending_updates", False),
        }
        already = self.webhook == settings
        self.webhook = settings
        return _ok(True, "Webhook is already set" if already else "Webhook was set")

    def _deleteWebhook(self, call: dict) -> Response:
        existed = self.webhook is not None
        self.webhook = None
        if call["params"].get("drop_pending_updates"):
            self.updates.clear()
        return _ok(True, "Webhook was deleted" if existed else "Webhook is already deleted")

    def _getUpdates(self, call: dict) -> Response:
        """A long poll: wait up to ``timeout`` s for updates at or after ``offset``, forgetting those before it."""
        if self.webhook is not None:
            raise TelegramError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                     "use deleteWebhook to delete the webhook first")
        params = call["params"]
        limit, offset, timeout = params.get("limit", 100), params.get("offset", 0), params.get("timeout", 0)
        if not 1 <= limit <= 100:
            raise TelegramError(400, "Bad Request: limit must be between 1 and 100")
        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"]
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]
        poll = object()
        self._current_poll = poll  # a poll still waiting is cut off (409), as Telegram does
        self._changed.notify_all()
        deadline = time.monotonic() + timeout
        while not (ready := [u for u in self.updates if self._is_allowed(u)][:limit]):
            left = deadline - time.monotonic()
            if self._current_poll is not poll:
                self.poll_conflicts += 1
                raise TelegramError(409, "Conflict: terminated by other getUpdates request; "
                                         "make sure that only one bot instance is running")
            if left <= 0 or self._closing.is_set():
                break
            self._changed.wait(min(left, 0.5))  # releases the lock: other calls and pushes go on meanwhile
        if self._current_poll is poll:
            self._current_poll = None
        return _ok(ready)

    def _is_allowed(self, update: dict) -> bool:
        kind = next(key for key in update if key != "update_id")
        return kind in self.allowed_updates if self.allowed_updates else kind not in _NOT_BY_DEFAULT

    def _setMessageReaction(self, call: dict) -> Response:
        params = call["params"]
        chat_id = _chat_id(params)
        if not isinstance(params.get("message_id"), int):
            raise TelegramError(400, "Bad Request: message_id is empty")
        reaction = params.get("reaction", [])
        if not isinstance(reaction, list):
            raise TelegramError(400, "Bad Request: can't parse reaction types JSON object")
        if len(reaction) > 1:
            raise TelegramError(400, "Bad Request: REACTIONS_TOO_MANY")  # bots without Premium: one
        for item in reaction:
            if not isinstance(item, dict) or item.get("type") != "emoji" or item.get("emoji") not in REACTION_EMOJI:
                raise TelegramError(400, "Bad Request: REACTION_INVALID")
        self.reactions.append({"chat_id": chat_id, "message_id": params["message_id"],
                               "emoji": reaction[0]["emoji"] if reaction else None, "call": call})
        return _ok(True)

    def _getWebhookInfo(self, call: dict) -> Response:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        if self.webhook:
            info.update(url=self.webhook["url"], max_connections=self.webhook["max_connections"],
                        pending_update_count=len(self.updates))
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return _ok(info)

    def _new_message(self, chat_id: int | str, **content: Any) -> dict:
        chat_type = "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup"
        chat = {"id": chat_id if isinstance(chat_id, int) else -1001234567890, "type": chat_type}
        return {"message_id": next(self._message_ids), "from": self.bot_user, "chat": chat,
                "date": int(time.time()), **content}


fake_telegram = fake_fixture(FakeTelegram, name="fake_telegram")


# -- helpers for the fake --------------------------------------------------------


def _ok(result: Any, description: str | None = None) -> Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description:
        body["description"] = description
    return json_response(body)


def _error(status: int, description: str, retry_after: int | None = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    headers = None
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
        headers = {"Retry-After": str(retry_after)}
    return json_response(body, status, headers)


def _kind_for(mime_type: str) -> str:
    if mime_type == "audio/ogg":
        return "voice"
    if mime_type.startswith("audio/"):
        return "audio"
    if mime_type == "video/mp4":
        return "video_note"
    if mime_type.startswith("image/"):
        return "photo"
    return "document"


def _chat_id(params: dict) -> int | str:
    chat_id = params.get("chat_id")
    if chat_id in (None, ""):
        raise TelegramError(400, "Bad Request: chat_id is empty")
    if isinstance(chat_id, str) and not chat_id.startswith("@"):
        raise TelegramError(400, "Bad Request: chat not found")
    return chat_id


def _check_keyboard(markup: Any) -> None:
    """An inline keyboard: rows of buttons, each with a text and 1-64 bytes of callback_data."""
    if markup is None:
        return
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise TelegramError(400, "Bad Request: can't parse inline keyboard button: InlineKeyboardMarkup expected")
    for button in (button for row in rows for button in row):
        if not button.get("text"):
            raise TelegramError(400, "Bad Request: BUTTON_TEXT_EMPTY")
        data = button.get("callback_data")
        if data is not None and not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise TelegramError(400, "Bad Request: BUTTON_DATA_INVALID")


def _check_reply_parameters(params: dict) -> None:
    reply = params.get("reply_parameters")
    if reply is not None and not (isinstance(reply, dict) and isinstance(reply.get("message_id"), int)):
        raise TelegramError(400, "Bad Request: can't parse reply parameters JSON object")


def _check_markup(text: str, parse_mode: str | None) -> None:
    """Reject markup Telegram would reject; a partial check covering the common slips."""
    if not text or not parse_mode:
        return
    problem = None
    if parse_mode == "MarkdownV2":
        problem = _markdown_v2_problem(text)
    elif parse_mode.upper() == "HTML":
        problem = _html_problem(text)
    if problem:
        raise TelegramError(400, f"Bad Request: can't parse entities: {problem}")


def _markdown_v2_problem(text: str) -> str | None:
    """Find a reserved character left unescaped outside code, pre and link URLs.

    Entity delimiters (``* _ ~ || [ ] `` ` ``) are taken as markup; the
    characters that are never markup (``# + - = { } . ! ( ) > |``) must carry a
    backslash, which is the mistake Telegram reports most.
    """
    i, code_fence, in_url = 0, None, False
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if code_fence:
            if text.startswith(code_fence, i):
                i, code_fence = i + len(code_fence), None
            else:
                i += 1
            continue
        if in_url:
            in_url = char != ")"
            i += 1
            continue
        if char == "`":
            code_fence = "```" if text.startswith("```", i) else "`"
            i += len(code_fence)
            continue
        if text.startswith("](", i):
            in_url, i = True, i + 2
            continue
        if text.startswith("||", i) or text.startswith("![", i):
            i += 2
            continue
        blockquote = char == ">" and (i == 0 or text[i - 1] == "\n")
        if char in "#+-={}.!()|>" and not blockquote:
            return f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
        i += 1
    return None


def _html_problem(text: str) -> str | None:
    for match in re.finditer(r"<([A-Za-z][\w-]*)", text):
        if match.group(1).lower() not in _HTML_TAGS:
            offset = len(text[: match.start()].encode())
            return f'Unsupported start tag "{match.group(1)}" at byte offset {offset}'
    return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height if ``data`` decodes as an image, else None (Telegram's IMAGE_PROCESS_FAILED)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in the project's venv
        return (1, 1) if looks_like_image(data) else None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


# -- inbound webhook updates --------------------------------------------------------

_update_ids = itertools.count(860_000_001)
_message_ids = itertools.count(1)


def webhook_request(update: dict, secret_token: str | None = DEFAULT_SECRET_TOKEN) -> InboundRequest:
    """The POST Telegram makes to the webhook: JSON body, secret in ``X-Telegram-Bot-Api-Secret-Token``."""
    headers = {"Content-Type": "application/json"}
    if secret_token is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret_token
    return InboundRequest("POST", headers, json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode())


def voice_update(file_id: str, *, duration: int = 3, mime_type: str = "audio/ogg",
                 file_size: int | None = None, **message: Any) -> dict:
    """A voice note (OGG/Opus from the microphone button)."""
    voice = telegram.Voice(file_id, unique_id_for(file_id), duration, mime_type=mime_type, file_size=file_size)
    return _update(voice=voice, **message)


def audio_update(file_id: str, *, duration: int = 5, mime_type: str = "audio/mpeg",
                 file_name: str = "recording.mp3", file_size: int | None = None, **message: Any) -> dict:
    """A music/audio file sent as audio (has a player, title and performer)."""
    audio = telegram.Audio(file_id, unique_id_for(file_id), duration, mime_type=mime_type,
                           file_name=file_name, file_size=file_size)
    return _update(audio=audio, **message)


def video_note_update(file_id: str, *, duration: int = 4, length: int = 384,
                      file_size: int | None = None, **message: Any) -> dict:
    """A round video message (square MP4, ``length`` px wide); its sound track is what counts."""
    note = telegram.VideoNote(file_id, unique_id_for(file_id), length, duration, file_size=file_size)
    return _update(video_note=note, **message)


def audio_document_update(file_id: str, *, file_name: str = "voice_memo.m4a", mime_type: str = "audio/mp4",
                          file_size: int | None = None, **message: Any) -> dict:
    """An audio file sent 'as a file' (a Document whose mime type is audio)."""
    document = telegram.Document(file_id, unique_id_for(file_id), file_name=file_name,
                                 mime_type=mime_type, file_size=file_size)
    return _update(document=document, **message)


def callback_query_update(query_id: str, chat_id: int | str, message_id: int, data: str, *, text: str,
                          reply_markup: dict | None, user_id: int = DEFAULT_USER_ID, first_name: str = "Ada",
                          username: str | None = "ada_l", update_id: int | None = None) -> dict:
    """An ``Update`` carrying the ``CallbackQuery`` of pressing the button ``data`` on the bot's message."""
    chat = telegram.Chat(chat_id, "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup",
                         title="Support")
    keyboard = None if reply_markup is None else telegram.InlineKeyboardMarkup.de_json(reply_markup, None)
    message = telegram.Message(message_id, dt.datetime.now(dt.UTC).replace(microsecond=0), chat, text=text,
                               reply_markup=keyboard)
    sender = telegram.User(user_id, first_name, False, username=username, language_code="en")
    query = telegram.CallbackQuery(query_id, sender, chat_instance=str(secrets.randbits(63)), message=message,
                                   data=data)
    return telegram.Update(update_id or next(_update_ids), callback_query=query).to_dict()


def text_update(text: str = "/start", **message: Any) -> dict:
    """A text message; a leading ``/command`` gets its bot_command entity like the real client adds."""
    entities = None
    command = re.match(r"/\w+(@\w+)?", text)
    if command:
        entities = [telegram.MessageEntity(telegram.MessageEntity.BOT_COMMAND, 0, command.end())]
    return _update(text=text, entities=entities, **message)


def _update(*, update_id: int | None = None, message_id: int | None = None, chat_id: int | None = None,
            chat_type: str = "private", user_id: int = DEFAULT_USER_ID, first_name: str = "Ada",
            username: str | None = "ada_l", date: dt.datetime | None = None,
            forwarded_from: int | None = None, caption: str | None = None, **content: Any) -> dict:
    """An ``Update`` carrying one ``Message``; private chats have chat id == user id.

    ``forwarded_from=<user id>`` adds a ``forward_origin`` (the product's main use: forwarded voice).
    """
    date = date or dt.datetime.now(dt.UTC).replace(microsecond=0)
    sender = telegram.User(user_id, first_name, False, username=username, language_code="en")
    if chat_type == "private":
        chat = telegram.Chat(chat_id or user_id, chat_type, first_name=first_name, username=username)
    else:
        chat = telegram.Chat(chat_id or -1001234567890, chat_type, title="Voice notes")
    origin = None
    if forwarded_from is not None:
        origin = telegram.MessageOriginUser(date - dt.timedelta(minutes=5),
                                            telegram.User(forwarded_from, "Grace", False))
    message = telegram.Message(message_id or next(_message_ids), date, chat, from_user=sender,
                               forward_origin=origin, caption=caption, **content)
    return telegram.Update(update_id or next(_update_ids), message=message).to_dict()
