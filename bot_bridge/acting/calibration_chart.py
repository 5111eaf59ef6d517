"""The chart of a calibration: scores of the notes people said are the emotion against those they said are not.

Two histograms over the score, 0 to 1 in steps of 0.05: the notes people
confirmed (in the emotion's colour) and the rejected ones (grey), with the
current threshold as a solid line and the suggested one, when there is one,
dashed. Where the two piles overlap is where any threshold errs. Drawn as
the other charts are (``charts.timeline_chart``): matplotlib's object API
rendered by Agg, English labels.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..emotions import BY_KEY
from .calibration import Calibration
from .charts import COLOURS

BINS = 20  # 0.05 wide
REJECTED_COLOUR = "#9e9e9e"


def calibration_chart(calibration: Calibration) -> bytes | None:
    """A PNG of the labelled notes' scores, or None when none is labelled."""
    if not calibration.judged:
        return None
    name = BY_KEY[calibration.emotion].en.lower()
    said_yes = [item.score for item in calibration.judged if item.is_emotion]
    said_no = [item.score for item in calibration.judged if not item.is_emotion]
    figure = Figure(figsize=(9, 2.6), dpi=100)
    axes = figure.subplots()
    axes.hist([said_yes, said_no], bins=BINS, range=(0, 1), stacked=True,
              color=[COLOURS[calibration.emotion], REJECTED_COLOUR],
              label=[f"people said {name} ({len(said_yes)})", f"people said not {name} ({len(said_no)})"])
    axes.axvline(calibration.threshold, color="black", linewidth=1.5,
                 label=f"threshold now {calibration.threshold:g}")
    if calibration.suggestion is not None:
        axes.axvline(calibration.suggestion.threshold, color="black", linewidth=1.5, linestyle="--",
                     label=f"lowest for {calibration.target:.0%} precision {calibration.suggestion.threshold:g}")
    axes.set_xlim(0, 1)
    axes.set_xlabel(f"{name} score")
    axes.set_ylabel("labelled notes")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
