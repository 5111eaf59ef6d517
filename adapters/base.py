"""The one interface every chat platform implements.

An adapter is a thin translation layer, as Errbot's backends are: it knows
its platform's webhook signatures and payloads and its HTTP API, and nothing
about models, queues or databases. The core calls, in order:

1. ``verify(request)`` before anything is stored or downloaded (raise ``Refused``);
2. ``parse(request)`` -> ``ParsedWebhook``: the immediate HTTP answer and the
   messages to process (none for events the bot ignores);
3. later, in a worker: ``fetch_audio(message)``, then ``send_reply(...)``;
4. from the scheduler: ``send_alert(chat_id, text, image)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from bot_bridge.chat import ChatMessage, InboundRequest, ParsedWebhook


class Refused(Exception):
    """A webhook that fails verification. ``status`` is 401 or 403; ``reason`` is for the log only."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ChatAdapter(ABC):
    #: Platform name, used in URLs (``/webhooks/<name>``), settings and stored rows.
    name: ClassVar[str]
    #: Path under ``/webhooks/`` the platform posts to.
    webhook_path: ClassVar[str]
    #: HTTP methods the webhook accepts.
    webhook_methods: ClassVar[tuple[str, ...]] = ("POST",)
    #: Setting key -> conventional environment variable.
    environment: ClassVar[dict[str, str]] = {}
    #: Setting keys that must be set for the platform to be on.
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: dict, http=None) -> None:
        self.settings = settings
        self.http = http

    @abstractmethod
    def verify(self, request: InboundRequest) -> None:
        """Raise ``Refused`` unless the request provably comes from the platform."""

    @abstractmethod
    def parse(self, request: InboundRequest) -> ParsedWebhook:
        """Read a verified request: what to answer now, and which messages need a reply."""

    @abstractmethod
    def fetch_audio(self, message: ChatMessage) -> bytes:
        """Download the voice note's audio."""

    @abstractmethod
    def send_reply(self, message: ChatMessage, text: str, image: bytes | None = None) -> str:
        """Answer ``message`` in its chat (in its thread, quoting it where the platform can).

        Returns the platform's id of the sent message.
        """

    @abstractmethod
    def send_alert(self, chat_id: str, text: str, image: bytes | None = None) -> str:
        """Post a message to a chat that is not a reply (escalations, digests)."""
