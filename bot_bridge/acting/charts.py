"""The timeline of a voice note as a PNG, for chat replies.

A chart says something only when the feeling changes during the note, so
``timeline_chart`` returns ``None`` for short notes and for notes whose
dominant emotion is the same in every window with speech: a pause is no
change of feeling. Windows without speech (``Window.has_speech``, the same
rule as the timeline's "no speech") are grey and carry no score lines. Labels are in
English: the default fonts of a server have no Chinese glyphs, and a chart
of empty boxes is worse than one in a second language. It is drawn with
matplotlib's object API (a ``Figure`` rendered by Agg), not ``pyplot``,
whose global state is not safe in the queue's worker threads.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from ..emotions import BY_KEY
from ..remembering.results import Result

COLOURS = {
    "angry": "#d62728",
    "disgusted": "#8c564b",
    "fearful": "#9467bd",
    "happy": "#2ca02c",
    "neutral": "#7f7f7f",
    "other": "#17becf",
    "sad": "#1f77b4",
    "surprised": "#ff7f0e",
    "unknown": "#bcbd22",
}


def timeline_chart(result: Result, min_duration_s: float) -> bytes | None:
    """A PNG of each leading emotion's score over time, or None when there is no change to show."""
    leaders = changing_emotions(result, min_duration_s)
    return _plot(result, leaders) if leaders else None


def changing_emotions(result: Result, min_duration_s: float) -> list[str]:
    """The emotions that lead some window of a note long enough for a chart, when there are two or more
    (the note gets a chart of them); else none. Cheap: a reply knows before drawing whether a chart comes."""
    if result.timeline is None or result.duration_s <= min_duration_s:
        return []
    spoken = [window for window in result.timeline if window.has_speech]
    leaders = sorted({window.emotion for window in spoken}, key=list(BY_KEY).index)
    return leaders if len(leaders) >= 2 else []


def _plot(result: Result, leaders: list[str]) -> bytes:
    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    middles = [(window.start + window.end) / 2 for window in result.timeline]
    for key in leaders:
        axes.plot(middles, score_line(result, key), color=COLOURS[key], linewidth=2, label=BY_KEY[key].en)
    for window in result.timeline:
        if not window.has_speech:
            axes.axvspan(window.start, window.end, color="#eeeeee", zorder=0, linewidth=0)
    axes.set_xlim(0, result.duration_s)
    axes.set_ylim(0, 1)
    axes.set_xlabel("seconds (grey: no speech)")
    axes.set_ylabel("score")
    title = "How the voice sounds over time"
    if result.random_weights:
        title += " (TEST MODEL: meaningless)"
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small", ncol=min(len(leaders), 4))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def score_line(result: Result, key: str) -> list[float]:
    """``key``'s score in each window, NaN (a gap in the line) where nobody speaks."""
    return [window.scores[key] if window.has_speech else float("nan") for window in result.timeline]
