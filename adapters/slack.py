"""Slack Events API or Socket Mode: events in, replies in the voice clip's thread out.

* Two ways in (``platforms.slack.mode``, ``SLACK_MODE``): ``events`` (Slack
  posts signed events to bot-bridge's public HTTPS URL) or ``socket``
  (Socket Mode: bot-bridge opens a WebSocket to Slack with an app-level token
  ``xapp-...``, ``SLACK_APP_TOKEN``; no public URL, no signing secret).
  Without a setting the mode is ``socket`` when an app token and no signing
  secret are set. Socket Mode runs on slack_sdk's own built-in client (no
  extra dependency), which reconnects on Slack's ``disconnect`` messages (to
  a fresh URL, opened before the old connection closes) and, through its
  pings, on connections that died. Each envelope is acknowledged after its
  event is recorded, within Slack's 3 s; one that could not be recorded is
  not acknowledged, so Slack sends it again.
* Several connections, one per background process: Slack allows up to 10 per
  app and gives each payload to one of them (no fan-out); Slack's
  maintainers suggest running more than one, so that a reconnect or a
  restart loses nothing (bolt-python #1071). A retry of the same event carries the same
  ``event_id``, which the notes' delivery ids make a no-op: so no lease is
  needed, and no gap opens while a dead holder's lease runs out.
* Verification (events mode): ``X-Slack-Signature`` with slack_sdk's ``SignatureVerifier``
  (HMAC-SHA256 of ``v0:timestamp:body`` with the signing secret, timestamps
  within 5 minutes); ``url_verification`` is answered with its challenge.
* ``forget`` / ``删除我的数据`` deletes the sender's data; a ``file_deleted``
  event (the app subscribes to it) deletes the notes made from that file.
* Voice: ``message`` events whose ``files`` include audio. Clips recorded in
  Slack are ``subtype: slack_audio`` files labelled ``audio/mp4``, sometimes
  ``video/mp4`` or ``audio/webm``; the label decides nothing beyond "this is
  audio", the decoder reads what the bytes are. ``url_private_download`` is
  fetched with the bot token, which is only ever sent to Slack's hosts.
* The bot's own messages (``bot_id``, or the bot user named in the event's
  ``authorizations``) are ignored, so its replies never loop back.
* Retries (``X-Slack-Retry-Num``) carry the same ``event_id``, which makes
  the notes' delivery ids: they are answered 200 and recorded once.
* Replies go in the clip's thread (``chat.postMessage`` with ``thread_ts``);
  with a chart, the reply is the upload's comment (``files_upload_v2``'s
  three calls), so a reply is always one message.
* Reactions (``reply.mode: reaction``): ``reactions.add`` with the emoji's
  Slack name (``REACTION_NAMES``; the app needs ``reactions:write``).
* Cases: a Block Kit message (a section, then the buttons), edited with
  ``chat.update``. Button presses come to the interactivity Request URL,
  ``/webhooks/slack/interactions`` (a form with one ``payload`` field,
  signed as events are), or over Socket Mode as ``interactive`` envelopes,
  acknowledged once handled; both are answered long before Slack's 3 s. The
  person's name is the payload's ``user.name``. A press that changed nothing
  is answered with a message only they see (``response_url``).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, WebhookResponse
from bot_bridge.chat.outbound import OutboundError, Rejected, TryAgain, check_status, raise_for_transient

from .base import (CONNECTION, WEBHOOK, ChatAdapter, PostedCard, Refused, TextLimit, check_fresh,
                   deleted_on_platform, goes_only_to, text_request)

log = logging.getLogger(__name__)

# Message subtypes a person's post can have; edits, deletions, joins and bot posts are not answered.
ANSWERED_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
SLACK_FILE_DOMAINS = ("slack.com", "slack-gov.com")
MODES = ("events", "socket")
#: Seconds between the Socket Mode client's pings; a connection that died unseen is replaced after about five.
PING_INTERVAL_S = 5.0
#: The start of every action_id of a case's buttons: presses of other apps' buttons are not ours.
CASE_ACTION_PREFIX = "bot-bridge-case-"
#: Block Kit's limits: a section's text, a button's text.
SECTION_TEXT_CHARS = 3000
BUTTON_TEXT_CHARS = 75
#: The Socket Mode envelopes recorded before they are acknowledged (Slack sends others again if not acknowledged).
RECORDED_ENVELOPES = frozenset({"events_api", "interactive"})
#: Slack's name of each emotion's emoji (iamcal/emoji-data, the list Slack uses), for reactions.add.
REACTION_NAMES = {
    "angry": "angry",
    "disgusted": "nauseated_face",
    "fearful": "fearful",
    "happy": "blush",
    "neutral": "neutral_face",
    "other": "thinking_face",
    "sad": "cry",
    "surprised": "astonished",
    "unknown": "question",
}


class SlackAdapter(ChatAdapter):
    name = "slack"
    webhook_path = "slack/events"
    environment = {
        "bot_token": "SLACK_BOT_TOKEN",
        "signing_secret": "SLACK_SIGNING_SECRET",
        "api_base": "SLACK_API_BASE",
        "app_token": "SLACK_APP_TOKEN",
        "mode": "SLACK_MODE",
    }
    default_api_base = "https://slack.com/api"
    alert_text_limit = TextLimit(4000, "characters")  # Slack truncates longer message text
    can_react = True
    edits_cases = True
    interaction_path = "slack/interactions"

    def __init__(self, settings: dict, http=None) -> None:
        super().__init__(settings, http)
        self._verifier = SignatureVerifier(settings["signing_secret"]) if self.receives == WEBHOOK else None

    @classmethod
    def missing_settings(cls, settings: dict) -> list[str]:
        needed = ("bot_token", "signing_secret") if _mode(settings) == "events" else ("bot_token", "app_token")
        return [key for key in needed if not settings.get(key)]

    @property
    def receives(self) -> str:
        return WEBHOOK if _mode(self.settings) == "events" else CONNECTION

    def verify(self, request: InboundRequest) -> None:
        check_fresh(request.headers.get("X-Slack-Request-Timestamp"), self.clock())
        try:
            valid = self._verifier.is_valid_request(request.body, request.headers)
        except UnicodeDecodeError:
            valid = False
        if not valid:
            raise Refused(401, "X-Slack-Signature does not match the body")

    def parse(self, request: InboundRequest) -> ParsedWebhook:
        payload = _payload(request.body)
        if payload.get("type") == "block_actions":
            return ParsedWebhook(actions=tuple(self._presses(payload)))
        if payload.get("type") == "url_verification":
            return ParsedWebhook(WebhookResponse(body=payload["challenge"]))
        event = payload.get("event") or {}
        if payload.get("type") == "event_callback" and event.get("type") == "file_deleted":
            return ParsedWebhook(messages=(_file_deleted(payload["event_id"], event, self.name),))
        if (
            payload.get("type") != "event_callback"
            or event.get("type") != "message"
            or event.get("subtype") not in ANSWERED_SUBTYPES
            or _from_this_bot(event, payload)
        ):
            return ParsedWebhook()
        event_id = payload["event_id"]
        where = {
            "platform": self.name,
            "chat_id": event["channel"],
            "sender_id": event.get("user"),
            "message_id": event["ts"],
            "thread_id": event.get("thread_ts") or event["ts"],
        }
        clips = [file for file in event.get("files", []) if _is_audio(file)]
        if clips:
            notes = (ChatMessage(delivery_id=f"{event_id}:{clip['id']}", kind="voice", media=_media(clip), **where) for clip in clips)
            return ParsedWebhook(messages=tuple(notes))
        if asked := text_request(event.get("text")):
            return ParsedWebhook(messages=(ChatMessage(delivery_id=event_id, kind=asked, **where),))
        return ParsedWebhook()

    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        url = message.media.ref
        if not self.may_carry_token(url):
            host = urlsplit(url).hostname or "?"
            raise OutboundError("slack file download", f"not sending the bot token to {host}", retryable=False)
        return self.http.download(
            url, call="slack file download", max_bytes=max_bytes, check=_check_download, headers=self._auth
        )

    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        return self._post(message.chat_id, text, image, {"thread_ts": message.thread_id})

    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        return self._post(chat_id, text, image, {})

    def send_case(self, chat_id: str, card: CaseCard) -> PostedCard:
        sent = self._call("chat.postMessage", delivers=True, json={"channel": chat_id, **self._card_message(card)})
        return PostedCard(sent["ts"])

    def update_case(self, chat_id: str, posted: PostedCard, card: CaseCard) -> str | None:
        self._call("chat.update", json={"channel": chat_id, "ts": posted.ref, **self._card_message(card)})
        return None

    def answer_press(self, action: CaseAction, text: str, *, refused: bool = False) -> None:
        """A press that changed nothing gets a message only its presser sees (the response_url Slack gave)."""
        if refused and action.answer_ref and self.may_carry_token(action.answer_ref):
            self.http.call("POST", action.answer_ref, call="slack response_url", check=check_status,
                           json={"response_type": "ephemeral", "replace_original": False, "text": self.escape(text)})

    def send_reaction(self, message: ChatMessage, emotion: str) -> str:
        name = REACTION_NAMES[emotion]
        try:
            self._call("reactions.add", delivers=True,
                       json={"channel": message.chat_id, "timestamp": message.message_id, "name": name})
        except OutboundError as error:
            if error.reason != "already_reacted":  # already there: what this call was for
                raise
        return f":{name}:"

    def listen(self, receive: Callable[[InboundRequest], None], stopping: threading.Event) -> None:
        """Socket Mode until ``stopping``: slack_sdk's client connects, reconnects, and hands us each envelope."""
        client = _SocketModeClient(self._open_connection, ping_interval=PING_INTERVAL_S)
        client.socket_mode_request_listeners.append(functools.partial(_acknowledge_recorded, receive))
        try:
            client.connect()
            log.info("slack: Socket Mode started; slack_sdk's client holds the connection and reconnects")
            stopping.wait()
        finally:
            client.close()

    def escape(self, text: str) -> str:
        return _escape(text)

    def _card_message(self, card: CaseCard) -> dict:
        """``text`` (notifications, and clients without blocks) and ``blocks``: the card, then its buttons."""
        link = f"\n<{card.link}|{self.escape(card.link_label)}>" if card.link else ""
        section, room = f"*{self.escape(card.title)}*\n{self.escape(card.text)}", SECTION_TEXT_CHARS - len(link)
        if len(section) > room:
            section = section[: room - 1] + "…"
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": section + link}}]
        if card.buttons:
            blocks.append({"type": "actions", "block_id": f"{CASE_ACTION_PREFIX}{card.key}"[:255], "elements": [
                {"type": "button", "action_id": f"{CASE_ACTION_PREFIX}{number}", "value": button.value,
                 "text": {"type": "plain_text", "text": button.label[:BUTTON_TEXT_CHARS], "emoji": True},
                 **({"style": button.style} if button.style else {})}
                for number, button in enumerate(card.buttons)
            ]})
        return {"text": self.escape(card.plain_text)[: self.alert_text_limit.size], "blocks": blocks}

    def _presses(self, payload: dict):
        """The presses of a ``block_actions`` payload on our buttons, named ``user:action_ts``."""
        user, container = payload.get("user") or {}, payload.get("container") or {}
        for action in payload.get("actions") or ():
            if not str(action.get("action_id", "")).startswith(CASE_ACTION_PREFIX):
                continue
            yield CaseAction(
                platform=self.name,
                delivery_id=f"{user.get('id')}:{action.get('action_ts')}",
                value=str(action.get("value", "")),
                actor_id=str(user.get("id")),
                actor_name=user.get("name") or user.get("username"),
                chat_id=container.get("channel_id") or (payload.get("channel") or {}).get("id"),
                message_ref=container.get("message_ts"),
                answer_ref=payload.get("response_url"),
            )

    def _open_connection(self) -> str:
        """A fresh Socket Mode URL (``apps.connections.open``, with the app-level token)."""
        answer = self.http.call("POST", f"{self.api_base}/apps.connections.open", call="slack apps.connections.open",
                                check=_check, headers={"Authorization": f"Bearer {self.settings['app_token']}"})
        return answer["url"]

    def _post(self, channel: str, text: str, image: bytes | None, thread: dict) -> str:
        text = self.escape(text)  # replies and alerts alike, once; alerts were split measuring this
        if image is None:
            return self._call("chat.postMessage", delivers=True, json={"channel": channel, "text": text, **thread})["ts"]
        # files_upload_v2: reserve an upload URL, send the bytes there, then share the file with its comment.
        slot = self._call("files.getUploadURLExternal", data={"filename": "timeline.png", "length": len(image)})
        self.http.call("POST", slot["upload_url"], call="slack file upload", data=image)
        shared = self._call(
            "files.completeUploadExternal",  # shares the file with its comment: this posts the message
            delivers=True,
            data={
                "files": json.dumps([{"id": slot["file_id"], "title": "Emotion over time"}]),
                "channel_id": channel,
                "initial_comment": text,
                **thread,
            },
        )
        return shared["files"][0]["id"]

    @property
    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.settings['bot_token']}"}

    def _call(self, method: str, **kwargs) -> dict:
        return self.http.call(
            "POST", f"{self.api_base}/{method}", call=f"slack {method}", check=_check, headers=self._auth, **kwargs
        )

    def may_carry_token(self, url: str) -> bool:
        """Whether ``url`` goes to Slack: HTTPS on its file hosts, or the configured API's own origin."""
        return goes_only_to(url, SLACK_FILE_DOMAINS, (self.api_base,))


class _SocketModeClient(SocketModeClient):
    """slack_sdk's built-in Socket Mode client, opening its URLs through bot-bridge's one HTTP client
    (its timeouts, retries and rate limits, and the app token masked in every error)."""

    def __init__(self, open_connection: Callable[[], str], **options) -> None:
        self._open_connection = open_connection
        super().__init__(app_token="", logger=logging.getLogger("slack_sdk.socket_mode"), **options)

    def issue_new_wss_url(self) -> str:
        return self._open_connection()


def _acknowledge_recorded(receive: Callable[[InboundRequest], None], client: SocketModeClient,
                          request: SocketModeRequest) -> None:
    """Record an Events API envelope's event, or handle a button press (``interactive``), then acknowledge it;
    one not recorded is not acknowledged, so Slack sends it again. Other envelopes (commands) are acknowledged
    and left alone."""
    if request.type in RECORDED_ENVELOPES:
        try:
            receive(InboundRequest.carrying(json.dumps(request.payload).encode(), f"socket mode {request.type}"))
        except Exception as error:  # noqa: BLE001 - whatever broke, Slack's retry is the way to try again
            log.error("slack: %s envelope %s not recorded (%s: %s); not acknowledged, so Slack sends it "
                      "again", request.type, request.envelope_id, type(error).__name__, error)
            return
    client.send_socket_mode_response(SocketModeResponse(request.envelope_id))


def _payload(body: bytes) -> dict:
    """An Events API or Socket Mode body (JSON), or an interactivity request (a form whose ``payload`` is JSON)."""
    if body.startswith(b"payload="):
        return json.loads(parse_qs(body.decode())["payload"][0])
    return json.loads(body)


def _mode(settings: dict) -> str:
    """``events`` or ``socket``, as set; without a setting, ``socket`` when an app token and no signing secret
    are set."""
    default = "socket" if settings.get("app_token") and not settings.get("signing_secret") else "events"
    mode = settings.get("mode") or default
    if mode not in MODES:
        raise ValueError(f"SLACK_MODE (platforms.slack.mode) must be events or socket, not {mode!r}")
    return mode


def _check(response) -> dict:
    """Web API envelope: HTTP 200 with ``ok``, or ``ok: false`` and an ``error`` code."""
    raise_for_transient(response)
    try:
        body = response.json()
    except ValueError:
        raise TryAgain(f"HTTP {response.status_code} without a JSON body") from None
    if body.get("ok"):
        return body
    error = body.get("error", "unknown_error")
    if error in TRANSIENT_ERRORS:
        raise TryAgain(error)
    raise Rejected(error)


def _check_download(response) -> None:
    """Without access, Slack redirects file downloads to its sign-in page instead of answering 401."""
    check_status(response)
    if response.headers.get("Content-Type", "").startswith("text/html"):
        raise Rejected("got Slack's sign-in page instead of the file (the app needs files:read)")


def _from_this_bot(event: dict, payload: dict) -> bool:
    bot_users = {auth.get("user_id") for auth in payload.get("authorizations") or () if auth.get("is_bot")}
    return bool(event.get("bot_id")) or event.get("user") in bot_users


def _is_audio(file: dict) -> bool:
    """A clip recorded in Slack (whatever its mimetype says), or an uploaded audio file."""
    audio = (
        file.get("subtype") == "slack_audio"
        or file.get("media_display_type") == "audio"
        or (file.get("mimetype") or "").startswith("audio/")
    )
    return audio and bool(file.get("url_private_download"))


def _file_deleted(event_id: str, event: dict, platform: str) -> ChatMessage:
    """A ``file_deleted`` event: the notes made from that file are deleted (their delivery ids end with it)."""
    channels = event.get("channel_ids") or [""]
    return deleted_on_platform(platform, event_id, channels[0], event["file_id"])


def _media(file: dict) -> Media:
    duration_ms = file.get("duration_ms")
    return Media(
        ref=file["url_private_download"],
        mime_type=file.get("mimetype"),
        size_bytes=file.get("size") or None,
        duration_s=None if duration_ms is None else duration_ms / 1000,
        file_name=file.get("name"),
    )


def _escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (links, mentions); our texts mean them literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
