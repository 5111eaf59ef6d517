"""The one interface every chat platform implements.

An adapter is a thin translation layer, as Errbot's backends are: it knows
its platform's webhook signatures and payloads and its HTTP API, and nothing
about models, queues or databases. The core calls, in order:

1. ``verify(request)`` before anything is stored or downloaded (raise ``Refused``);
2. ``parse(request)`` -> ``ParsedWebhook``: the immediate HTTP answer and the
   messages to process (none for events the bot ignores);
3. later, in a worker: ``fetch_audio(message, max_bytes)``, then ``send_reply(...)``
   (or ``send_reaction(...)`` in a chat whose reply mode is ``reaction``);
4. from the scheduler: ``send_alert(chat_id, text, image)``, and a case's
   message: ``send_case(chat_id, card)``, later ``update_case(...)``;
5. when someone presses a button on a case's message: ``parse`` returns it
   as a ``CaseAction`` (from the webhook, or ``interaction_path`` where the
   platform posts presses elsewhere), and ``answer_press(...)`` tells the
   person what came of it.

Cases are optional capabilities: an ``AlertSender`` that cannot show
buttons or edit messages keeps the defaults (the card's plain text, with a
link to the case in the console; a follow-up message for each change).

A platform that can be reached without a public URL says so in ``receives``:
``pull`` (bot-bridge asks for updates: ``start_pulling``, then ``pull`` in a
loop, Telegram's getUpdates) or ``connection`` (bot-bridge opens a long
connection: ``listen``, Slack's Socket Mode). What arrives that way skips
step 1 (it came over a connection bot-bridge opened and authenticated) and
goes through ``parse`` like a webhook; ``bot_bridge.acting.listeners`` runs
the loops, so the core names no platform.

Adapters make every HTTP call through the ``OutboundHttp`` they are given
(``self.http``), which owns timeouts, retries and rate limits; what is left
to them is reading their platform's answers (a ``check``, see
``bot_bridge.chat.outbound``). The helpers at the end of this module are the
behaviour several platforms share.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import timedelta
import threading
from typing import Callable, ClassVar, Literal

import requests

from bot_bridge.chat.cards import CaseCard
from bot_bridge.chat.messages import CaseAction, ChatMessage, InboundRequest, Media, ParsedWebhook, Pulled
from bot_bridge.chat.outbound import OutboundHttp

#: How far a signed request's timestamp may be from now (Slack's rule, applied to WeCom too).
FRESHNESS_WINDOW_S = 300
#: How a configured adapter gets its messages (``ChatAdapter.receives``).
WEBHOOK, PULL, CONNECTION = "webhook", "pull", "connection"
#: Texts that ask for the help message (after a leading ``/`` and any @mention are removed).
HELP_WORDS = frozenset({"start", "help", "帮助", "?", "？"})
#: Texts that ask the bot to delete the sender's notes, results and recordings (docs/retention-and-deletion.md).
FORGET_WORDS = frozenset({"forget", "删除我的数据"})


class Refused(Exception):
    """A webhook that fails verification. ``status`` is 401 or 403; ``reason`` is for the log only."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- Alerts: what escalations and daily digests need of a destination -------
#
# Every chat adapter can post alerts. A destination that only receives them,
# such as a WeCom group robot (a webhook URL with a key, no bot behind it),
# subclasses ``AlertSender`` alone and is found in this package the same way.


@dataclass(frozen=True)
class TextLimit:
    """The longest text one message may carry, counted the way the platform counts it.

    Telegram counts UTF-16 code units (an emoji is two), WeCom counts UTF-8
    bytes (a Chinese character is three), Slack counts characters; a splitter
    that measured everything in characters would overflow WeCom threefold.
    ``escape``, when given, is what the sender does to a text before posting
    it (``AlertSender.escape``): the platform counts what it receives.
    """

    size: int
    unit: Literal["characters", "utf-16 units", "bytes"]
    escape: Callable[[str], str] | None = field(default=None, compare=False, repr=False)

    def measure(self, text: str) -> int:
        if self.escape is not None:
            text = self.escape(text)
        if self.unit == "bytes":
            return len(text.encode("utf-8"))
        if self.unit == "utf-16 units":
            return len(text.encode("utf-16-le")) // 2
        return len(text)


@dataclass(frozen=True)
class PostedCard:
    """A case's message as posted: the platform's reference to it, and a one-time permission to edit it where
    the platform asks for one (WeCom's ``response_code``)."""

    ref: str
    edit_token: str | None = None


class AlertSender(ABC):
    """What posts alerts to a platform: a message to a chat that is not a reply.

    (A configured destination, one chat of a platform, is a target:
    ``bot_bridge.acting.alerting.Target`` holds its settings and its sender.)
    """

    #: Platform name, used in settings, stored rows and (chat platforms) URLs (``/webhooks/<name>``).
    name: ClassVar[str]
    #: Setting key -> conventional environment variable.
    environment: ClassVar[dict[str, str]] = {}
    #: The platform's API when the ``api_base`` setting is empty.
    default_api_base: ClassVar[str] = ""
    #: The longest alert text; longer alerts are split. The default fits every platform known.
    alert_text_limit: ClassVar[TextLimit] = TextLimit(2048, "bytes")
    #: Whether a target's ``chat_id`` is a credential (a robot's webhook key), masked like the other secrets.
    chat_id_is_secret: ClassVar[bool] = False
    #: Whether ``update_case`` edits a case's message in place; without it each change is a follow-up message.
    edits_cases: ClassVar[bool] = False
    #: How long a ``PostedCard.edit_token`` may be used (None: editing needs none).
    edit_token_lifetime: ClassVar[timedelta | None] = None

    def __init__(self, settings: dict, http: OutboundHttp | None = None) -> None:
        self.settings = settings
        self.http = http or OutboundHttp()
        self.api_base = (settings.get("api_base") or self.default_api_base).rstrip("/")

    @abstractmethod
    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        """Post a message to a chat that is not a reply (escalations, digests); returns the platform's id of it."""

    def send_case(self, chat_id: str, card: CaseCard) -> PostedCard:
        """Post a case's message. By default its plain text, whose link leads to the case's page in the console,
        where its actions are."""
        return PostedCard(self.send_alert(chat_id, card.plain_text))

    def update_case(self, chat_id: str, posted: PostedCard, card: CaseCard) -> str | None:
        """Edit the case's message ``posted`` to show ``card`` (only where ``edits_cases``, and with an edit
        token where the platform needs one); returns the edit token left for the next edit, None when spent."""
        raise NotImplementedError(f"{self.name} cannot edit a message")

    def escape(self, text: str) -> str:
        """``text`` as the platform must receive it to show it literally (Slack: ``&``, ``<``, ``>`` as
        entities). The sender applies it to every text it posts, once; splitting measures texts after it."""
        return text

    def escape_user_text(self, text: str) -> str:
        """A value people chose (a chat's or a sender's name) for a message whose own markup stays markup:
        whatever the platform would read as markup in it is made inert (a WeCom robot's markdown). Nothing
        where ``escape`` already covers it or messages are plain text."""
        return text

    def stop_waiting(self) -> None:
        """The process is stopping: a send waiting for the platform's rate limit gives up now, and so does
        any later one, so the scheduler stops at once. What is given up is retried later (by the next lease
        holder). Nothing to do for a sender that never waits."""


# --- Chat platforms ------------------------------------------------------------


class ChatAdapter(AlertSender):
    #: Path under ``/webhooks/`` the platform posts to.
    webhook_path: ClassVar[str]
    #: HTTP methods the webhook accepts.
    webhook_methods: ClassVar[tuple[str, ...]] = ("POST",)
    #: Setting keys that must be set for the platform to be on.
    required: ClassVar[tuple[str, ...]] = ()
    #: The largest file the platform lets a bot download (None: no platform limit).
    max_download_bytes: ClassVar[int | None] = None
    #: Whether the platform can put an emoji on a message (``send_reaction``); without it, reaction mode is silent.
    can_react: ClassVar[bool] = False
    #: Whether the people who write to the bot are customers, not colleagues (a customer-service channel): its
    #: chats are silent unless ``reply.modes`` names the platform or the chat (``acting/reply_modes.py``).
    speaks_to_customers: ClassVar[bool] = False
    #: The longest text that goes with an image (Telegram: a photo's caption), when shorter than a message's.
    caption_limit: ClassVar[TextLimit | None] = None
    #: Whether a pulling adapter still takes its platform's webhook: a signal that there is something to pull
    #: (微信客服's callback), verified as any webhook is, which ``parse`` turns into a wake-up for ``pull``.
    wakes_by_webhook: ClassVar[bool] = False
    #: Path under ``/webhooks/`` where the platform posts button presses, when not ``webhook_path`` (Slack's
    #: interactivity Request URL); verified as the webhook is.
    interaction_path: ClassVar[str | None] = None

    def __init__(self, settings: dict, http: OutboundHttp | None = None) -> None:
        super().__init__(settings, http)
        self.clock = time.time  # replaced in tests that check stale timestamps against published vectors

    @abstractmethod
    def verify(self, request: InboundRequest) -> None:
        """Raise ``Refused`` unless the request provably comes from the platform."""

    @abstractmethod
    def parse(self, request: InboundRequest) -> ParsedWebhook:
        """Read a verified request: what to answer now, and which messages need a reply."""

    @abstractmethod
    def fetch_audio(self, message: ChatMessage, max_bytes: int) -> bytes:
        """Download the voice note's audio, at most ``max_bytes`` of it (``TooLarge`` beyond).

        Raise ``AudioError("too_large_to_fetch")`` when the platform refuses a file for its size.
        """

    @abstractmethod
    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        """Answer ``message`` in its chat (in its thread, quoting it where the platform can).

        Returns the platform's id of the sent message.
        """

    @classmethod
    def missing_settings(cls, settings: dict) -> list[str]:
        """The keys that must be set for the platform to be on and are not (``required``, by default)."""
        return [key for key in cls.required if not settings.get(key)]

    @property
    def receives(self) -> str:
        """How this adapter, as configured, gets its messages: ``WEBHOOK`` (the platform posts to
        ``/webhooks/<webhook_path>``), ``PULL`` (``pull``) or ``CONNECTION`` (``listen``)."""
        return WEBHOOK

    def start_pulling(self) -> str:
        """This process has become the one that pulls: make the platform hand updates to ``pull`` (Telegram
        refuses getUpdates while a webhook is set). Returns what was done, for the log."""
        return "nothing to prepare"

    def pull(self, cursor: str | None) -> Pulled:
        """The next updates after ``cursor`` (None: wherever the platform keeps them from), waiting a while
        for some when there are none. Updates before ``cursor`` may be forgotten by the platform."""
        raise NotImplementedError(f"{self.name} does not pull updates")

    def listen(self, receive: Callable[[InboundRequest], None], stopping: threading.Event) -> None:
        """Hold a long connection to the platform until ``stopping`` is set, reconnecting as needed; pass each
        update to ``receive``, which returns once it is recorded (raises if it could not be), and only then
        acknowledge it. Raise if the connection cannot be opened at all (bad credentials): the caller retries."""
        raise NotImplementedError(f"{self.name} holds no long connection")

    def send_reaction(self, message: ChatMessage, emotion: str) -> str:
        """Put ``emotion``'s emoji (an ``bot_bridge.emotions`` key), or the nearest the platform allows, on
        ``message`` itself; returns what was put there. Only where ``can_react``."""
        raise NotImplementedError(f"{self.name} has no reactions")

    def reply_limit(self, with_image: bool) -> TextLimit:
        """The longest reply ``send_reply`` can post, with or without a chart, measured as the platform counts
        it (after ``escape``)."""
        limit = self.caption_limit if with_image and self.caption_limit is not None else self.alert_text_limit
        return replace(limit, escape=self.escape)

    def answer_press(self, action: CaseAction, text: str, *, refused: bool = False) -> None:
        """Tell whoever pressed a button what came of it, where the platform shows such answers (``refused``: the
        press changed nothing and says why). Nothing by default: the updated message shows the change."""

    def set_webhook(self, url: str) -> str:
        """Tell the platform where to deliver webhooks, where its API allows it; returns its answer.

        Platforms whose webhook is set in their admin console keep this default.
        """
        raise NotImplementedError(f"{self.name}: the webhook URL is set in the platform's admin console")

    @classmethod
    def can_set_webhook(cls) -> bool:
        return cls.set_webhook is not ChatAdapter.set_webhook


def text_request(text: str | None) -> str | None:
    """The kind of message a text is: ``help`` (``/start``, ``/help@my_bot``, ``<@U123> help``, ``帮助``...),
    ``forget`` (``forget``, ``/forget``, ``删除我的数据``), or None for any other text."""
    if not text:
        return None
    words = re.sub(r"<@\w+>|@\w+", " ", text).strip().lower().lstrip("/").split()
    if len(words) != 1:
        return None
    return "help" if words[0] in HELP_WORDS else "forget" if words[0] in FORGET_WORDS else None


def deleted_on_platform(platform: str, delivery_id: str, chat_id: str, ref: str) -> ChatMessage:
    """The platform says the file or message ``ref`` is gone (Slack's ``file_deleted``, a recall 撤回 in Feishu
    or 微信客服): the notes made from it are deleted, and nothing is answered. It names no sender: the
    record of the request keeps nothing about the person."""
    return ChatMessage(platform=platform, delivery_id=delivery_id, kind="deleted", chat_id=chat_id,
                       media=Media(ref=ref))


def check_fresh(timestamp: str | None, now: float) -> None:
    """Refuse a signed request whose timestamp is missing, malformed or more than 5 minutes off.

    The signature covers the timestamp, so an old request replayed by someone
    who captured it is refused even though its signature is valid.
    """
    if not timestamp or not timestamp.isdigit():
        raise Refused(401, "missing or malformed request timestamp")
    if abs(now - int(timestamp)) > FRESHNESS_WINDOW_S:
        raise Refused(403, f"stale request: timestamp {int(now) - int(timestamp)} s away from now")


def goes_only_to(url: str, domains: tuple[str, ...], origins: tuple[str, ...]) -> bool:
    """Whether ``url`` goes where a credential may follow it: HTTPS to one of ``domains`` (or a subdomain), or
    to exactly one of ``origins`` (a configured API base: a private deployment, the tests' fake).

    Judged on the URL ``requests`` will really fetch, since parsers disagree
    (``https://evil.example\\@files.slack.com/`` is files.slack.com to
    ``urlsplit`` and evil.example to ``requests``).
    """
    if "\\" in url or any(ord(c) < 0x21 for c in url):
        return False
    try:
        parts = urlsplit(requests.Request("GET", url).prepare().url)
    except (requests.RequestException, ValueError):
        return False
    if parts.username or parts.password or not parts.hostname:
        return False
    for origin in origins:
        allowed = urlsplit(origin)
        if (parts.scheme, parts.hostname, parts.port) == (allowed.scheme, allowed.hostname, allowed.port):
            return True
    host = parts.hostname
    return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in domains)
