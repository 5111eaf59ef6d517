"""A loopback Slack Web API and file host, and genuine signed Events API requests.

The fake answers on Slack's real paths so ``slack_sdk.WebClient(token,
base_url=fake.base_url + "/api/")`` works unchanged, including
``files_upload_v2`` (getUploadURLExternal -> raw POST to the returned upload
URL -> completeUploadExternal) and the SDK's retry handlers:

* ``/api/<method>``: auth.test, chat.postMessage, chat.update (of a message
  posted here: ``message_not_found`` otherwise; each accepted edit lands in
  ``updates`` and changes the message in ``messages``), files.getUploadURLExternal,
  files.completeUploadExternal, files.info, reactions.add (names checked
  against the emoji short names; each accepted one lands in ``reactions``),
  and apps.connections.open, which takes the app-level token (``xapp-``) and
  hands out a Socket Mode URL on a real WebSocket server
  (``slack_socket_mode``: ``fake.socket_mode``). Token from ``Authorization:
  Bearer`` or a ``token`` parameter; errors are HTTP 200 with
  ``{"ok": false, "error": "not_authed" | "invalid_auth" | ...}``. Blocks are
  checked against Block Kit's limits (``invalid_blocks``): 50 blocks, 25
  elements in an actions block, a button's text 75 characters, its
  ``action_id`` 255, its ``value`` 2000, a section's text 3000.
* ``/actions/<id>``: the ``response_url`` of an interaction; what is posted
  there (a message only its presser sees) lands in ``responses``.
* ``/upload/v1/<id>`` (fault target ``"upload"``): pre-signed, no token, body
  raw or multipart, answers ``OK - <bytes>`` in text/plain.
* ``/files-pri/<team>-<file>/download/<name>`` (fault target ``"download"``):
  needs the bearer token. Without it Slack does not answer 401: it redirects
  to the sign-in page, so a naive client saves an HTML page as "audio". The
  fake does the same (302 to ``/?redir=...``, 200 text/html).
* Rate limits are HTTP 429 + ``Retry-After`` + ``{"ok": false, "error": "ratelimited"}``.

Inbound requests are signed with ``slack_sdk.signature.SignatureVerifier``:
Events API requests (JSON) and interactivity requests (a form whose one
field, ``payload``, is the JSON of a ``block_actions`` press built from a
message the fake holds: ``button_press``).
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import secrets
import string
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import emoji
from slack_sdk.signature import SignatureVerifier
from werkzeug.wrappers import Request, Response

from .server import FakePlatformServer, InboundRequest, Route, fake_fixture, json_response
from .slack_socket_mode import SocketModeEndpoint

DEFAULT_BOT_TOKEN = "xoxb-1000000001-2000000002-FakeLoopbackBotToken"
DEFAULT_APP_TOKEN = "xapp-1-A0FAKEAPP1-3000000003-FakeLoopbackAppLevelToken"
DEFAULT_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DEFAULT_TEAM_ID = "T0FAKETEAM"
DEFAULT_APP_ID = "A0FAKEAPP1"
DEFAULT_BOT_USER_ID = "U0FAKEBOT1"
DEFAULT_BOT_ID = "B0FAKEBOT1"
DEFAULT_USER_ID = "U0HUMAN001"
DEFAULT_CHANNEL = "C0VOICES01"
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50
MAX_ACTION_ELEMENTS = 25
MAX_SECTION_TEXT = 3000
#: A button's limits: its text, action_id and value (slack_sdk's block elements).
MAX_BUTTON_TEXT, MAX_ACTION_ID, MAX_BUTTON_VALUE = 75, 255, 2000

_ID_CHARS = string.ascii_uppercase + string.digits
#: Emoji short names Slack knows (``:angry:`` ...), from the emoji package's names and aliases.
EMOJI_NAMES = frozenset(name.strip(":") for data in emoji.EMOJI_DATA.values()
                        for name in (data["en"], *data.get("alias", ())))


def slack_id(prefix: str) -> str:
    """An ID in Slack's style: a type letter and ten upper-case alphanumerics (F0123ABCDE...)."""
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(10))


_ts_counter = itertools.count(100)


def new_ts() -> str:
    """A fresh message timestamp, ``seconds.micro``, unique and increasing like Slack's."""
    return f"{int(time.time())}.{next(_ts_counter):06d}"


def file_object(base_url: str, *, file_id: str | None = None, name: str = "audio_message.m4a",
                mimetype: str = "audio/mp4", filetype: str = "m4a", subtype: str | None = "slack_audio",
                size: int = 0, user: str = DEFAULT_USER_ID, team_id: str = DEFAULT_TEAM_ID,
                duration_ms: int | None = 3000, transcription: dict | None = None) -> dict:
    """A Slack file object as it appears in ``message.files[]`` and files.info.

    With ``subtype="slack_audio"`` it is a voice clip recorded in Slack: it gets
    ``media_display_type: "audio"``, ``duration_ms`` and a ``transcription``.
    Clips are usually ``audio/mp4`` but also arrive as ``video/mp4`` or ``audio/webm``.
    """
    file_id = file_id or slack_id("F")
    now = int(time.time())
    path = f"{base_url}/files-pri/{team_id}-{file_id}"
    title = name.rsplit(".", 1)[0]
    obj: dict[str, Any] = {
        "id": file_id, "created": now, "timestamp": now, "name": name, "title": title,
        "mimetype": mimetype, "filetype": filetype, "pretty_type": filetype.upper(),
        "user": user, "user_team": team_id, "editable": False, "size": size, "mode": "hosted",
        "is_external": False, "external_type": "", "is_public": False, "public_url_shared": False,
        "display_as_bot": False, "username": "",
        "url_private": f"{path}/{quote(name)}", "url_private_download": f"{path}/download/{quote(name)}",
        "permalink": f"{base_url}/files/{user}/{file_id}/{quote(name)}",
        "permalink_public": f"{base_url}/{team_id}-{file_id}-{secrets.token_hex(5)}",
        "is_starred": False, "has_rich_preview": False, "file_access": "visible",
    }
    if subtype:
        obj["subtype"] = subtype
    if subtype == "slack_audio":
        obj["media_display_type"] = "audio"
        obj["duration_ms"] = duration_ms
        obj["transcription"] = transcription or {
            "status": "complete", "locale": "en-US", "preview": {"content": "", "has_more": False},
        }
    return obj


class SlackError(Exception):
    """Raised inside handlers; becomes HTTP 200 ``{"ok": false, "error": code}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class FakeSlack(FakePlatformServer):
    """Slack's Web API subset, the upload URL and the private file host, on one port."""

    REAL_BASE_URLS = ("https://slack.com/", "https://files.slack.com/")

    def __init__(self, bot_token: str = DEFAULT_BOT_TOKEN, *, team_id: str = DEFAULT_TEAM_ID,
                 bot_user_id: str = DEFAULT_BOT_USER_ID, bot_id: str = DEFAULT_BOT_ID,
                 app_id: str = DEFAULT_APP_ID, app_token: str = DEFAULT_APP_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token = app_token
        self.reactions: list[dict] = []
        self.socket_mode = SocketModeEndpoint(self._changed, app_id)
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.files: dict[str, dict] = {}  # file id -> file object plus "_data"
        self._pending_uploads: dict[str, dict] = {}  # upload key -> upload slot
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> the message as it is now
        self.updates: list[dict] = []  # accepted chat.update calls' params
        self.responses: list[dict] = []  # what was posted to response_urls

    def start(self) -> FakeSlack:
        super().start()
        self.socket_mode.start()
        return self

    def stop(self) -> None:
        self.socket_mode.stop()
        super().stop()

    # -- test set-up ---------------------------------------------------------

    def add_file(self, data: bytes, mimetype: str = "audio/mp4", filetype: str = "m4a",
                 name: str = "audio_message.m4a", subtype: str | None = "slack_audio", **fields: Any) -> dict:
        """Host a file the bot may download; returns its file object (for ``message.files[]``).

        Extra keyword arguments go to ``file_object`` (user, duration_ms, transcription).
        """
        obj = file_object(self.base_url, name=name, mimetype=mimetype, filetype=filetype,
                          subtype=subtype, size=len(data), team_id=self.team_id, **fields)
        with self._lock:
            self.files[obj["id"]] = {**obj, "_data": data}
        return obj

    # -- routing ---------------------------------------------------------------

    def route(self, request: Request) -> Route | None:
        parts = request.path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            handler = self._api_methods().get(parts[1], self._unknown_method)
            token = self.app_token if parts[1] == "apps.connections.open" else self.bot_token
            return Route(parts[1], self._authorised(handler, token))
        if parts[:2] == ["upload", "v1"] and len(parts) == 3 and request.method == "POST":
            # Raw bytes that urllib labels as a form must stay raw; a multipart form is parsed.
            return Route("upload", self._upload, "auto" if request.mimetype == "multipart/form-data" else "raw")
        if parts[0] == "files-pri" and len(parts) >= 3:
            return Route("download", self._download)
        if parts[0] == "actions" and len(parts) == 2 and request.method == "POST":
            return Route("response_url", self._response_url)
        if request.path == "/":
            return Route("sign_in_page", self._sign_in_page)
        return None

    def _api_methods(self) -> dict:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._files_info,
            "reactions.add": self._reactions_add,
            "apps.connections.open": self._apps_connections_open,
        }

    def _authorised(self, handler, expected: str):
        def serve(call: dict) -> Response:
            try:
                token = _bearer(call["headers"]) or call["params"].get("token")
                if not token:
                    raise SlackError("not_authed")
                if token in (self.bot_token, self.app_token) and token != expected:
                    raise SlackError("not_allowed_token_type")
                if token != expected:
                    raise SlackError("invalid_auth")
                return json_response({"ok": True, **handler(call)})
            except SlackError as error:
                return json_response({"ok": False, "error": error.code})

        return serve

    def decode_params(self, params: dict[str, Any]) -> dict[str, Any]:
        decoded = dict(params)
        for key in ("files", "blocks", "attachments"):
            value = params.get(key)
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    decoded[key] = json.loads(value)
                except ValueError:
                    decoded[key] = value  # the method reports invalid_blocks_format & co.
        return decoded

    # -- error shapes ------------------------------------------------------------

    def render_failure(self, call: dict, status: int) -> Response:
        code = {503: "service_unavailable"}.get(status, "internal_error")
        return json_response({"ok": False, "error": code}, status)

    def render_rate_limited(self, call: dict, retry_after: int) -> Response:
        return json_response({"ok": False, "error": "ratelimited"}, 429, {"Retry-After": str(retry_after)})

    def render_malformed(self, call: dict) -> Response:
        return json_response({"ok": False, "error": "invalid_json"})

    # -- Web API methods (return the fields that go next to "ok": true) ------------

    def _unknown_method(self, call: dict) -> dict:
        raise SlackError("unknown_method")

    def _auth_test(self, call: dict) -> dict:
        return {"url": f"{self.base_url}/", "team": "Fake Workspace", "user": "emotion-bot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _chat_post_message(self, call: dict) -> dict:
        params = call["params"]
        channel = params.get("channel")
        if not channel:
            raise SlackError("channel_not_found")
        text, blocks = params.get("text") or "", params.get("blocks")
        if not text and not blocks and not params.get("attachments"):
            raise SlackError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise SlackError("msg_too_long")
        if blocks is not None:
            _check_blocks(blocks)
        ts = new_ts()
        message = {"type": "message", "text": text, "user": self.bot_user_id, "bot_id": self.bot_id,
                   "app_id": self.app_id, "team": self.team_id, "ts": ts}
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        if blocks:
            message["blocks"] = blocks
        self.messages[(channel, ts)] = message
        self.record_sent(call, text)
        return {"channel": channel, "ts": ts, "message": message}

    def _chat_update(self, call: dict) -> dict:
        params = call["params"]
        message = self.messages.get((params.get("channel"), params.get("ts")))
        if message is None:
            raise SlackError("message_not_found")
        text, blocks = params.get("text") or "", params.get("blocks")
        if not text and not blocks:
            raise SlackError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise SlackError("msg_too_long")
        if blocks is not None:
            _check_blocks(blocks)
            message["blocks"] = blocks
        message["text"] = text
        message["edited"] = {"user": self.bot_user_id, "ts": new_ts()}
        self.updates.append(params)
        return {"channel": params["channel"], "ts": params["ts"], "text": text, "message": message}

    def _response_url(self, call: dict) -> Response:
        self.responses.append(call["params"])
        return Response("ok", content_type="text/html")

    def _get_upload_url(self, call: dict) -> dict:
        params = call["params"]
        length = str(params.get("length", ""))
        if not params.get("filename") or not length.isdigit() or int(length) < 1:
            raise SlackError("invalid_arguments")
        key = secrets.token_urlsafe(16)
        file_id = slack_id("F")
        self._pending_uploads[key] = {"file_id": file_id, "filename": params["filename"],
                                      "length": int(length), "data": None}
        return {"upload_url": f"{self.base_url}/upload/v1/{key}", "file_id": file_id}

    def _upload(self, call: dict) -> Response:
        slot = self._pending_uploads.get(call["path"].rsplit("/", 1)[-1])
        if slot is None:
            return Response("invalid upload URL", status=404, content_type="text/plain")
        slot["data"] = _upload_bytes(call)
        return Response(f"OK - {len(slot['data'])}", content_type="text/plain; charset=utf-8")

    def _complete_upload(self, call: dict) -> dict:
        params = call["params"]
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        slots = {slot["file_id"]: slot for slot in self._pending_uploads.values()}
        completed = []
        for entry in entries:
            slot = slots.get(entry.get("id"))
            if slot is None or slot["data"] is None:
                raise SlackError("file_not_found")
            completed.append((entry, slot))
        shared_to = params.get("channel_id") or params.get("channels")
        if params.get("thread_ts") and not shared_to:
            raise SlackError("invalid_arguments")
        objects = []
        for entry, slot in completed:
            self._pending_uploads = {k: v for k, v in self._pending_uploads.items() if v is not slot}
            name = slot["filename"]
            mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            obj = file_object(self.base_url, file_id=slot["file_id"], name=name, mimetype=mimetype,
                              filetype=name.rsplit(".", 1)[-1], subtype=None, size=len(slot["data"]),
                              user=self.bot_user_id, team_id=self.team_id)
            obj.update(title=entry.get("title") or name, shares={}, channels=[], groups=[], ims=[])
            self.files[obj["id"]] = {**obj, "_data": slot["data"]}
            self.uploaded_images.append(slot["data"])
            objects.append(obj)
        if shared_to:
            self.record_sent(call, params.get("initial_comment"), [slot["data"] for _, slot in completed])
        return {"files": objects}

    def _reactions_add(self, call: dict) -> dict:
        params = call["params"]
        if not params.get("channel"):
            raise SlackError("channel_not_found")
        if not params.get("timestamp"):
            raise SlackError("message_not_found")
        name = params.get("name") or ""
        if name.split("::skin-tone-")[0] not in EMOJI_NAMES:
            raise SlackError("invalid_name")
        reaction = {"channel": params["channel"], "timestamp": params["timestamp"], "name": name}
        if reaction in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.append(reaction)
        return {}

    def _apps_connections_open(self, call: dict) -> dict:
        return {"url": self.socket_mode.issue_url()}

    def _files_info(self, call: dict) -> dict:
        stored = self.files.get(call["params"].get("file", ""))
        if stored is None:
            raise SlackError("file_not_found")
        return {"file": {k: v for k, v in stored.items() if k != "_data"}}

    # -- file host -------------------------------------------------------------------

    def _download(self, call: dict) -> Response:
        if _bearer(call["headers"]) != self.bot_token:
            return Response(status=302, headers={"Location": f"/?redir={quote(call['path'])}"})
        team_and_id = call["path"].split("/")[2]
        stored = self.files.get(team_and_id.split("-", 1)[-1])
        if stored is None:
            return Response("File not found", status=404, content_type="text/html")
        disposition = "attachment" if "/download/" in call["path"] else "inline"
        return Response(stored["_data"], content_type=stored["mimetype"],
                        headers={"Content-Disposition": f'{disposition}; filename="{stored["name"]}"'})

    def _sign_in_page(self, call: dict) -> Response:
        page = "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Fake Workspace</body></html>"
        return Response(page, content_type="text/html; charset=utf-8")


fake_slack = fake_fixture(FakeSlack, name="fake_slack")


def _check_blocks(blocks: Any) -> None:
    """Block Kit's limits, as Slack refuses what breaks them (``invalid_blocks``)."""
    if not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        if block.get("type") == "section" and len((block.get("text") or {}).get("text", "")) > MAX_SECTION_TEXT:
            raise SlackError("invalid_blocks")
        if block.get("type") != "actions":
            continue
        elements = block.get("elements") or []
        if not elements or len(elements) > MAX_ACTION_ELEMENTS:
            raise SlackError("invalid_blocks")
        for element in elements:
            if element.get("type") != "button":
                continue
            if (not 0 < len((element.get("text") or {}).get("text", "")) <= MAX_BUTTON_TEXT
                    or len(element.get("action_id", "")) > MAX_ACTION_ID
                    or len(element.get("value", "")) > MAX_BUTTON_VALUE
                    or element.get("style") not in (None, "primary", "danger")):
                raise SlackError("invalid_blocks")


def _bearer(headers: dict) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return value[len("Bearer "):] if value.startswith("Bearer ") else None


def _upload_bytes(call: dict) -> bytes:
    """Slack accepts the raw bytes or a multipart form (curl ``-F filename=@x``)."""
    first_part = next(iter(call["files"].values()), None)
    return first_part["data"] if first_part else call["body"]


# -- inbound Events API requests --------------------------------------------------


def signed_request(payload: dict, *, signing_secret: str = DEFAULT_SIGNING_SECRET, timestamp: int | None = None,
                   retry_num: int | None = None, retry_reason: str = "http_timeout") -> InboundRequest:
    """POST ``payload`` as Slack does: JSON body, ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``.

    The signature comes from slack_sdk's own ``SignatureVerifier.generate_signature``.
    Pass an old ``timestamp`` for a stale request (rejected beyond 5 minutes),
    ``retry_num`` for a redelivery (adds ``X-Slack-Retry-Num``/``-Reason``).
    """
    # Compact JSON with escaped slashes ("https:\/\/files.slack.com\/..."), as Slack sends it:
    # an app that verifies a re-serialised body instead of the raw bytes fails here as it would live.
    body = json.dumps(payload, separators=(",", ":")).replace("/", "\\/").encode()
    headers = _signed_headers(body, "application/json", signing_secret, timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return InboundRequest("POST", headers, body)


def envelope(event: dict, *, team_id: str = DEFAULT_TEAM_ID, api_app_id: str = DEFAULT_APP_ID,
             bot_user_id: str = DEFAULT_BOT_USER_ID, event_id: str | None = None,
             event_time: int | None = None) -> dict:
    """Wrap ``event`` in the ``event_callback`` envelope; ``event_id`` is what retries share."""
    return {
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "team_id": team_id,
        "context_team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or slack_id("Ev"),
        "event_time": event_time or int(time.time()),
        "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id,
                            "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def event_request(event: dict, *, signing_secret: str = DEFAULT_SIGNING_SECRET, timestamp: int | None = None,
                  retry_num: int | None = None, retry_reason: str = "http_timeout", **envelope_fields: Any
                  ) -> InboundRequest:
    """``signed_request(envelope(event))``: the usual way to deliver one event."""
    return signed_request(envelope(event, **envelope_fields), signing_secret=signing_secret,
                          timestamp=timestamp, retry_num=retry_num, retry_reason=retry_reason)


def url_verification_request(challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                             **signing: Any) -> InboundRequest:
    """The handshake Slack sends when the Request URL is saved; the app must echo ``challenge``."""
    payload = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    return signed_request(payload, **signing)


def _message(*, channel: str, user: str, ts: str | None, thread_ts: str | None, channel_type: str,
             team_id: str = DEFAULT_TEAM_ID, **fields: Any) -> dict:
    ts = ts or new_ts()
    event = {"type": "message", **fields, "user": user, "ts": ts, "channel": channel, "event_ts": ts,
             "channel_type": channel_type, "team": team_id}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def voice_clip_message(file: dict, *, channel: str = DEFAULT_CHANNEL, user: str = DEFAULT_USER_ID,
                       ts: str | None = None, thread_ts: str | None = None, text: str = "",
                       channel_type: str = "channel") -> dict:
    """A ``message`` event with ``subtype: "file_share"`` carrying one clip (see ``file_object``)."""
    return _message(channel=channel, user=user, ts=ts, thread_ts=thread_ts, channel_type=channel_type,
                    subtype="file_share", text=text, files=[file], upload=False, display_as_bot=False,
                    client_msg_id=str(uuid.uuid4()))


def text_message(text: str, *, channel: str = DEFAULT_CHANNEL, user: str = DEFAULT_USER_ID,
                 ts: str | None = None, thread_ts: str | None = None, channel_type: str = "channel") -> dict:
    """A plain text ``message`` event from a person."""
    blocks = [{"type": "rich_text", "block_id": secrets.token_hex(3), "elements": [
        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}]
    return _message(channel=channel, user=user, ts=ts, thread_ts=thread_ts, channel_type=channel_type,
                    text=text, blocks=blocks, client_msg_id=str(uuid.uuid4()))


def bot_message(text: str = "", *, files: list[dict] | None = None, bot_user_id: str = DEFAULT_BOT_USER_ID,
                bot_id: str = DEFAULT_BOT_ID, app_id: str = DEFAULT_APP_ID, channel: str = DEFAULT_CHANNEL,
                ts: str | None = None, thread_ts: str | None = None, channel_type: str = "channel") -> dict:
    """The event Slack echoes for the bot's own post (``bot_id`` set, ``user`` == the bot user).

    With ``files`` it is the echo of the bot's own upload (``subtype: "file_share"``),
    which must not be analysed as a voice clip.
    """
    fields: dict[str, Any] = {"text": text, "bot_id": bot_id, "app_id": app_id,
                              "bot_profile": {"id": bot_id, "app_id": app_id, "name": "Emotion Bot",
                                              "deleted": False, "team_id": DEFAULT_TEAM_ID}}
    if files:
        fields.update(subtype="file_share", files=files, upload=False, display_as_bot=False)
    return _message(channel=channel, user=bot_user_id, ts=ts, thread_ts=thread_ts, channel_type=channel_type,
                    **fields)


# -- inbound interactivity (button presses) ---------------------------------------------------


def button_press(fake: FakeSlack, channel: str, ts: str, value: str, *, user_id: str = DEFAULT_USER_ID,
                 user_name: str = "ada.lovelace", action_ts: str | None = None) -> dict:
    """The ``block_actions`` payload of pressing the button whose value is ``value`` on the message ``ts`` the
    fake holds (as Slack sends it: the message, the action with its ``action_ts``, a ``response_url``)."""
    message = fake.messages[(channel, ts)]
    button, block = next((element, block) for block in message.get("blocks", []) if block.get("type") == "actions"
                         for element in block["elements"] if element.get("value") == value)
    action = {"type": "button", "action_id": button["action_id"], "block_id": block.get("block_id", ""),
              "text": button["text"], "value": value, "action_ts": action_ts or new_ts()}
    if "style" in button:
        action["style"] = button["style"]
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": fake.team_id},
        "api_app_id": fake.app_id,
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**13)}.{secrets.token_hex(16)}",
        "team": {"id": fake.team_id, "domain": "fake-workspace"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "support"},
        "message": message,
        "state": {"values": {}},
        "response_url": f"{fake.base_url}/actions/{secrets.token_urlsafe(12)}",
        "actions": [action],
    }


def interaction_request(payload: dict, *, signing_secret: str = DEFAULT_SIGNING_SECRET,
                        timestamp: int | None = None) -> InboundRequest:
    """POST an interactivity ``payload`` as Slack does: a form with one field, ``payload`` (its JSON), signed
    over the form body as events are."""
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    return InboundRequest("POST", _signed_headers(body, "application/x-www-form-urlencoded", signing_secret,
                                                  timestamp), body)


def _signed_headers(body: bytes, content_type: str, signing_secret: str, timestamp: int | None) -> dict:
    """Slack's headers of a request: its timestamp (now, unless given) and the v0 signature over it and ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body),
    }
