"""A case's message as the core hands it to a platform: text and buttons, no platform's shapes.

Each adapter renders a ``CaseCard`` its own way and within its own limits
(Slack: Block Kit buttons; Telegram: an inline keyboard; WeCom: a template
card), escaping the text as its markup needs. A button's ``value`` is the
core's (it names the deployment, the case and the action, at most
``MAX_VALUE_BYTES``): the adapter sends it with the button and hands it back,
untouched, in the ``CaseAction`` of a press (``bot_bridge.chat.messages``).
A platform that cannot show buttons posts ``CaseCard.plain_text``, whose
link leads to the case's page in the console, where the same actions are.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The longest button value: Telegram's callback_data holds 64 bytes.
MAX_VALUE_BYTES = 64


@dataclass(frozen=True)
class CardButton:
    label: str
    value: str  # handed back in the press, untouched
    style: str | None = None  # "primary" or "danger": the platform's emphasis, where it has one

    def __post_init__(self) -> None:
        if len(self.value.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"a button value holds at most {MAX_VALUE_BYTES} bytes: {self.value!r}")


@dataclass(frozen=True)
class CaseCard:
    """One case's message: ``title`` (one line), ``text`` (plain text, its lines as they should show),
    ``buttons`` (none once nothing is left to do), ``link`` (the case's console page, if ``public_url`` is
    set), ``status`` (a few words, for a platform that shows them where the buttons were), and ``key``:
    unique per case and target, for platforms that ask the sender to name a message (WeCom's ``task_id``:
    letters, digits, ``_-@``)."""

    key: str
    title: str
    text: str
    buttons: tuple[CardButton, ...] = ()
    link: str | None = None
    link_label: str = "Open the case"
    status: str = ""

    @property
    def plain_text(self) -> str:
        """The card as one message for a platform without buttons: its actions are at the link."""
        lines = [self.title, self.text]
        if self.link:
            lines.append(f"{self.link_label}: {self.link}")
        return "\n".join(lines)
