"""The chart of a daily digest: how each chat felt, and how busy the last eight days were.

Left, one bar per chat split into the share of each emotion; right, the
voice notes of the digest's chats in each of the last eight periods, the
angry ones in red. Drawn like ``charts.timeline_chart``: matplotlib's object
API rendered by Agg (no ``pyplot`` global state in the scheduler's thread),
English labels (servers rarely have Chinese fonts), and a chat whose name
the default font cannot draw is labelled by its platform and id.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ..emotions import BY_KEY, EMOTION_KEYS
from .alerting import say
from .charts import COLOURS

#: Code points the default font (DejaVu Sans) draws: Latin, Greek, Cyrillic and the like.
DRAWABLE_BELOW = 0x0530


@dataclass(frozen=True)
class Chart:
    caption: str
    png: bytes


def digest_chart(digest) -> Chart | None:
    """The digest's chart with a one-line caption in its language; None for an empty digest."""
    if digest.empty:
        return None
    chats = digest.chats
    figure = Figure(figsize=(10, 2.2 + 0.45 * len(chats)), dpi=100)
    shares_axes, days_axes = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    _plot_shares(shares_axes, chats)
    _plot_days(days_axes, digest)
    figure.suptitle(f"Voice notes {digest.period.day.isoformat()} ({digest.target.settings.timezone})")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    day = digest.period.day.isoformat()
    caption = say(digest.target.language, f"📊 {day} 各聊天的情绪占比和每天的语音数",
                  f"📊 {day}: emotions per chat and voice notes per day")
    return Chart(caption, buffer.getvalue())


def _plot_shares(axes, chats) -> None:
    rows = range(len(chats))
    lefts = [0.0] * len(chats)
    for emotion in EMOTION_KEYS:
        widths = [chat.shares.get(emotion, 0.0) for chat in chats]
        if any(widths):
            axes.barh(rows, widths, left=lefts, color=COLOURS[emotion], label=BY_KEY[emotion].en)
            lefts = [left + width for left, width in zip(lefts, widths)]
    # Chat names are people's: "$...$" in one must not be read as mathtext (a malformed one fails the chart).
    axes.set_yticks(list(rows), [_drawable(chat.chat_name, chat.source) for chat in chats], parse_math=False)
    axes.invert_yaxis()  # busiest chat on top, as in the text
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel("share of analysed voice notes")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize="small", frameon=False)


def _plot_days(axes, digest) -> None:
    periods = range(len(digest.chats[0].history) - 1, -1, -1)  # oldest first
    labels = [(digest.period.day - timedelta(days=k)).strftime("%m-%d") for k in periods]
    totals = [sum(chat.history[k].notes for chat in digest.chats) for k in periods]
    angry = [sum(chat.history[k].angry for chat in digest.chats) for k in periods]
    axes.bar(labels, totals, color="#c7c7c7", label="voice notes")
    axes.bar(labels, angry, color=COLOURS["angry"], label="angry")
    axes.set_title("per day, these chats", fontsize="medium")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.tick_params(axis="x", labelrotation=45, labelsize="small")
    axes.legend(fontsize="small", frameon=False)


def _drawable(name: str, fallback: str) -> str:
    return name if all(ord(character) < DRAWABLE_BELOW for character in name) else fallback
