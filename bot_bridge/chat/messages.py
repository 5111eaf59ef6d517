"""What the core knows of chat platforms: requests in, messages parsed from them.

Adapters (``adapters/<platform>.py``) translate a platform's webhook into
these types and back; nothing in the core depends on a platform's shapes.
``InboundRequest`` is deliberately framework-free (no Flask objects), as in
Slack Bolt's adapters: the web layer copies the few things an adapter needs.
Updates a platform hands over without a webhook (a pulled batch, a Socket
Mode envelope) are wrapped in the same type (``InboundRequest.carrying``), so
they are parsed and recorded exactly as webhooks are.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone

# Control characters, and the line and paragraph separators: nothing a file name needs, and a CR/LF
# in one would end up in a header (Content-Disposition) where it splits the response.
_NOT_IN_NAMES = {"Cc", "Zl", "Zp"}


def clean_file_name(name: str | None) -> str | None:
    """A file name someone else chose (a platform, an upload) as it may be kept and shown: control
    characters dropped, spaces trimmed; None when nothing is left. Apply it once, where the name enters."""
    if name is None:
        return None
    cleaned = "".join(ch for ch in name if unicodedata.category(ch) not in _NOT_IN_NAMES).strip()
    return cleaned or None


class CaseInsensitiveDict(dict):
    """Header lookup that ignores case, as HTTP does."""

    def __init__(self, items=()) -> None:
        super().__init__((key.lower(), value) for key, value in dict(items).items())

    def __getitem__(self, key: str):
        return super().__getitem__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass(frozen=True)
class InboundRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: CaseInsensitiveDict
    body: bytes

    @classmethod
    def carrying(cls, body: bytes, source: str) -> InboundRequest:
        """An update that arrived over a connection bot-bridge opened itself (``source``: how, for logs)."""
        return cls("RECEIVED", source, {}, CaseInsensitiveDict(), body)


@dataclass(frozen=True)
class WebhookResponse:
    status: int = 200
    body: str | bytes = ""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    """Where the audio of a voice note can be fetched, as the platform describes it."""

    ref: str  # file_id (Telegram), url_private_download (Slack), media_id (WeCom)
    mime_type: str | None = None
    size_bytes: int | None = None
    duration_s: float | None = None
    file_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_name", clean_file_name(self.file_name))  # frozen: set once, here

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ChatMessage:
    """A message the bot must answer exactly once.

    ``kind`` is ``voice`` (analyse ``media`` and reply with the emotion),
    ``help`` (reply with what the bot does), ``forget`` (delete the sender's
    notes and results, reply with how many) or ``deleted`` (the platform
    deleted the file or recalled the message ``media.ref`` names: delete the
    notes whose delivery id ends with ``:<ref>`` or whose ``message_id`` is
    it, reply nothing).
    ``delivery_id`` is the
    platform's idempotency key (Telegram ``update_id``, Slack ``event_id``,
    WeCom ``MsgId``).
    """

    platform: str
    delivery_id: str
    kind: str
    chat_id: str
    sender_id: str | None = None
    message_id: str | None = None
    thread_id: str | None = None
    media: Media | None = None
    language: str | None = None
    chat_name: str | None = None
    sender_name: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class CaseAction:
    """Someone pressed a button on a case's message (``bot_bridge.chat.cards``).

    ``value`` is the button's value as the core gave it; ``delivery_id`` the
    platform's id of this press (Slack's action_ts, Telegram's callback_query
    id, WeCom's TaskId+FromUserName+EventKey+CreateTime), so a press the
    platform delivers twice is handled once. ``chat_id`` and ``message_ref``
    say where the message is, as its adapter's ``send_case`` named it.
    ``answer_ref`` is what the adapter needs to answer the person (a
    Telegram callback_query id, a Slack response_url, a WeCom user id);
    ``edit_token`` a fresh one-time permission to edit the message, where the
    platform gives one with each press (WeCom's ResponseCode).
    """

    platform: str
    delivery_id: str
    value: str
    actor_id: str
    actor_name: str | None = None
    chat_id: str | None = None
    message_ref: str | None = None
    answer_ref: str | None = None
    edit_token: str | None = None

    kind = "button press"  # what the logs call it, beside a ChatMessage's kind


@dataclass(frozen=True)
class ParsedWebhook:
    """An adapter's reading of one verified webhook: what to answer, what to process."""

    response: WebhookResponse = field(default_factory=WebhookResponse)
    messages: tuple[ChatMessage, ...] = ()
    actions: tuple[CaseAction, ...] = ()


@dataclass(frozen=True)
class Pulled:
    """One batch of updates an adapter pulled from its platform, and where the next pull starts.

    ``cursor`` is stored (``bot_bridge.remembering.cursors``) only once every
    update of the batch is recorded: a crash in between pulls the same batch
    again, and the platform's delivery ids make the second recording a no-op.
    """

    updates: tuple[InboundRequest, ...]
    cursor: str | None
