"""How the bot answers in each chat: a message, a reaction on the voice note, or nothing at all.

Why: in a busy group a message per voice note is noise, and in a chat where
customers speak it is worse: a customer must never read "😠 Angry · 87%"
about themselves. The bot can still listen there, and escalate.

* ``reply.mode`` is every chat's mode; ``reply.modes`` sets it per platform
  (``"telegram:*"``) or per chat (``"telegram:-100123"``), the most precise
  entry winning, matched exactly as escalation rules are (``config.for_chat``).
* ``message``: the reply as ever (text, and the chart for long notes).
* ``reaction``: the emotion as an emoji on the voice note itself, sent once
  like a reply (the same note states: recorded before and after the send; a
  reaction that may have arrived is not sent again). Each adapter picks its
  platform's emoji for the emotion (``ChatAdapter.send_reaction``). No speech
  heard, unusable audio, and a note that failed for good get ❓ (the
  ``unknown`` emotion: "could not tell"). A help request still gets the help
  text: a reaction cannot explain anything, and the person asked.
* ``silent``: nothing is sent to the chat, not even help or errors; the note
  is analysed, stored, escalated and digested as usual (status ``silent``).

A platform without reactions (WeCom) answers ``reaction`` chats as
``silent``, and the log says so when the service starts.

A platform whose senders are customers (``ChatAdapter.speaks_to_customers``)
is ``silent`` unless a ``reply.modes`` entry names that platform or one of its
chats: neither ``reply.mode`` nor a ``"*"`` entry, written with colleagues'
chats in mind, makes the bot speak to a customer.
"""

from __future__ import annotations

import logging

from adapters.base import ChatAdapter

from ..config import ReplySettings, for_chat
from ..remembering.results import NO_SPEECH, Result

log = logging.getLogger(__name__)

MESSAGE, REACTION, SILENT = "message", "reaction", "silent"
#: The emotion of a reaction that says "could not tell" (❓).
COULD_NOT_TELL = "unknown"


def chat_mode(reply: ReplySettings, adapter: ChatAdapter | None, platform: str, chat_id: str) -> str:
    """The mode a note of this chat is answered in: the most precise setting, ``silent`` for ``reaction``
    where the platform has no reactions."""
    if adapter is not None and adapter.speaks_to_customers:
        own = {source: mode for source, mode in reply.modes.items() if source.startswith(f"{platform}:")}
        mode = for_chat(own, platform, chat_id) or SILENT
    else:
        mode = for_chat(reply.modes, platform, chat_id) or reply.mode
    if mode == REACTION and adapter is not None and not adapter.can_react:
        return SILENT
    return mode


def reaction_for(result: Result | None) -> str:
    """The emotion to react with: the result's, or ``unknown`` when there is no result or no speech."""
    if result is None or result.reason == NO_SPEECH:
        return COULD_NOT_TELL
    return result.emotion


def warn_about_missing_reactions(reply: ReplySettings, adapters: dict[str, ChatAdapter]) -> None:
    """At start: name each platform some of whose chats are set to ``reaction`` but that has no reactions."""
    for name, adapter in adapters.items():
        if adapter.can_react:
            continue
        platform_wide = for_chat(reply.modes, name, "*") or reply.mode
        own = [mode for source, mode in reply.modes.items() if source.startswith(f"{name}:")]
        if REACTION in (platform_wide, *own):
            log.warning("%s has no reactions: its chats whose reply mode is reaction get nothing, as if silent",
                        name)
