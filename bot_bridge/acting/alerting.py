"""Where alerts go and how they are cut to size: what escalations and digests share.

A ``Target`` is one configured destination (``targets.<key>``) with the
sender that posts to it (an ``AlertSender``): the chat platform's adapter,
or an alert-only one such as a WeCom group robot
(``adapters.alert_senders``). ``Routes`` say which source chats each target
hears about. ``pack`` splits a message made of blocks (one case, one chat's
numbers) into messages that fit the target's limit, measured the way the
platform measures it (after the sender's ``escape``), never cutting a block
in two unless one block alone is too long. Names people chose (chats,
senders) go into a message through ``Target.user_text``, which makes the
platform's markup in them inert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from adapters import alert_senders
from adapters.base import AlertSender, ChatAdapter, TextLimit

from ..chat.outbound import OutboundHttp
from ..config import RouteSettings, Settings, TargetSettings
from ..logs import secret_values
from ..remembering.store import VoiceNoteRow

log = logging.getLogger(__name__)

#: Between the header and each block of a message.
SEPARATOR = "\n\n"
ELLIPSIS = "…"


@dataclass(frozen=True)
class Target:
    key: str
    settings: TargetSettings
    sender: AlertSender | None  # None: the target's platform is not configured in this process

    @property
    def name(self) -> str:
        return self.settings.name or self.key

    @property
    def language(self) -> str:
        return self.settings.language

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def limit(self) -> TextLimit:
        """The sender's limit, measuring texts as the platform receives them (escaped)."""
        return replace(self.sender.alert_text_limit, escape=self.sender.escape)

    def user_text(self, text: str) -> str:
        """A name people chose, made inert for the sender's markup (``AlertSender.escape_user_text``)."""
        return self.sender.escape_user_text(text) if self.sender is not None else text

    def send(self, text: str, image: bytes | None = None) -> str:
        return self.sender.send_alert(self.settings.chat_id, text, image)


def build_targets(
    settings: Settings, chat_adapters: dict[str, ChatAdapter], http: OutboundHttp | None = None
) -> dict[str, Target]:
    """Every configured target with its sender; one whose platform is off is kept without one, and logged.

    Chat platforms' targets share ``chat_adapters`` (and their access tokens);
    alert-only destinations get ``http``, by default one that masks every
    secret of the settings and every robot key.
    """
    http = http or OutboundHttp(secrets=secret_values(settings))
    senders = alert_senders(settings.platforms, chat_adapters, http)
    targets = {}
    for key, target_settings in settings.targets.items():
        sender = senders.get(target_settings.platform)
        if sender is None:
            log.error('target %s: %s is not configured, so nothing is sent there (docs/chat-platforms.md)',
                      key, target_settings.platform)
        targets[key] = Target(key, target_settings, sender)
    return targets


@dataclass(frozen=True)
class Step:
    """A target of a source's cases: it hears of a case ``after`` it opened (if still open then), at ``level``
    of its route (0 for a route's plain ``targets``)."""

    target: str
    after: timedelta
    level: int


class Routes:
    """``routes`` of the settings: which targets hear about which source chats (``platform:chat_id``), and
    when (``levels``)."""

    def __init__(self, routes: list[RouteSettings]) -> None:
        self.routes = routes

    def steps_for(self, source: str) -> list[Step]:
        """Each target routed from ``source`` once, at its earliest level, in the order the routes name them."""
        found: dict[str, Step] = {}
        for route in self.routes:
            if not any(_matches(pattern, source) for pattern in route.sources):
                continue
            for level, step in enumerate(route.steps):
                for target in step.targets:
                    earlier = found.get(target)
                    if earlier is None or timedelta(minutes=step.after_min) < earlier.after:
                        found[target] = Step(target, timedelta(minutes=step.after_min), level)
        return list(found.values())

    def targets_for(self, source: str) -> list[str]:
        """The targets routed from ``source``, at any level, each once, in the order the routes name them."""
        return [step.target for step in self.steps_for(source)]

    def reaches(self, source: str, target: str) -> bool:
        return target in self.targets_for(source)


def _matches(pattern: str, source: str) -> bool:
    if pattern in ("*", source):
        return True
    return pattern.endswith(":*") and source.startswith(pattern[:-1])


def pack(blocks: list[str], limit: TextLimit, header: Callable[[int, int], str]) -> list[tuple[str, list[int]]]:
    """Messages of ``header(part, parts)`` and as many whole blocks as fit ``limit``.

    Returns each message with the indexes of the blocks it carries, so the
    caller knows what each message delivers. A block too long for a message
    of its own is cut, ending in an ellipsis.
    """
    widest_header = header(max(len(blocks), 1), max(len(blocks), 1))
    room = limit.size - limit.measure(widest_header + SEPARATOR)
    if room <= limit.measure(ELLIPSIS):
        raise ValueError(f"a {limit.size}-{limit.unit} message cannot hold its own header")
    fitted = [cut_to_fit(block, room, limit) for block in blocks]
    groups: list[list[int]] = []
    used = room + 1  # start a new group at the first block
    for index, block in enumerate(fitted):
        size = limit.measure(block)
        if groups and used + limit.measure(SEPARATOR) + size <= room:
            groups[-1].append(index)
            used += limit.measure(SEPARATOR) + size
        else:
            groups.append([index])
            used = size
    return [
        (header(part, len(groups)) + SEPARATOR + SEPARATOR.join(fitted[i] for i in group), group)
        for part, group in enumerate(groups, start=1)
    ]


def cut_to_fit(text: str, room: int, limit: TextLimit) -> str:
    """``text``, or its longest prefix that fits ``room`` with an ellipsis after it."""
    if limit.measure(text) <= room:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that still fits, by bisection (measures are monotonic)
        middle = (low + high + 1) // 2
        if limit.measure(text[:middle] + ELLIPSIS) <= room:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


# -- words and numbers that alerts and digests share ------------------------------------


def say(language: str, zh: str, en: str, joiner: str = " / ") -> str:
    """``zh``, ``en``, or both joined, following a target's language."""
    return {"zh": zh, "en": en}.get(language, f"{zh}{joiner}{en}")


def local_time(moment: datetime, zone: ZoneInfo, form: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(zone).strftime(form)


def result_link(public_url: str | None, result_id: str) -> str:
    """The console's page of a result, or its id when ``public_url`` is not set."""
    return f"{public_url}/results/{result_id}" if public_url else f"result {result_id}"


def source_line(note: VoiceNoteRow, user_text: Callable[[str], str] = str) -> str:
    """``telegram · Support group · Alice``: where a voice note came from, as people know it.

    A direct message whose chat is its sender (a WeCom app message: both are
    the user id) names them once: ``wecom · wcang01``. Public, for the
    console too. ``user_text`` treats the names people chose
    (``Target.user_text`` for a message; the console's templates escape HTML).
    """
    chat, sender = note.chat_name or note.chat_id, note.sender_name or note.sender_id or "?"
    names = (chat,) if sender == chat else (chat, sender)
    return " · ".join((note.platform, *map(user_text, names)))
