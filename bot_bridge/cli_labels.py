"""What ``bot-bridge calibrate`` and ``export-labels`` print, for a person at a terminal.

The numbers are ``bot_bridge.acting.calibration``'s, the same the console's
Calibration page shows; this module only words them, one block per threshold
of each rule, with a plain sentence where there are too few labels to
suggest a threshold.
"""

from __future__ import annotations

import textwrap

from .acting.calibration import MIN_EACH, Calibration, too_few_words
from .cli_results import shown_path
from .remembering.label_export import ExportSummary

WHAT_COUNTS = (
    "A note counts under the rule its chat follows. Flagged: its score reached the threshold. Labelled: its newest "
    "label says whether it is the emotion (\"Right\", \"Not <emotion>\", or another emotion picked), whatever its "
    "score. Precision: of the labelled notes at or above a threshold, the share people said are the emotion."
)


def calibration_report(calibrations: list[Calibration], target: float) -> list[str]:
    lines = [f"Escalation thresholds against people's labels (target precision {target:.0%})",
             textwrap.fill(WHAT_COUNTS, width=100)]
    for calibration in calibrations:
        lines += ["", *_block(calibration)]
    return lines


def export_report(summary: ExportSummary) -> list[str]:
    lines = [f"{summary.rows} labelled note(s) written to {shown_path(summary.folder)}: labels.csv"]
    without = summary.rows - summary.with_audio
    lines.append(f"  audio: {summary.with_audio} recording(s) in audio/"
                 + (f"; {without} without (not kept: audio.keep_audio was off, or another host holds them), "
                    "their audio_file empty" if without else ""))
    if summary.embedding_dim is None:
        lines.append("  embeddings: none (no labelled result has one)")
    else:
        lines.append(f"  embeddings.npy: {summary.rows} x {summary.embedding_dim}, one row per CSV row; "
                     f"{summary.rows - summary.with_embedding} row(s) NaN (has_embedding false)"
                     + (f", {summary.other_embeddings} of them of another model's size" if summary.other_embeddings
                        else ""))
    return lines


def _block(calibration: Calibration) -> list[str]:
    emotion, threshold = calibration.emotion, calibration.threshold
    judged = calibration.judged
    labelled = f"{len(judged)}"
    if judged:
        scores = [item.score for item in judged]
        labelled += (f": {calibration.said_yes} said {emotion}, {calibration.said_no} said not "
                     f"(scores {min(scores):g} to {max(scores):g})")
    current = str(calibration.current) if calibration.current else f"no labelled note reached {threshold:g}"
    if not calibration.enough:
        lowest = too_few_words(calibration)
    elif calibration.suggestion is None:
        lowest = f"none reaches {calibration.target:.0%} on these labels (resting on {MIN_EACH} or more)"
    else:
        suggestion = calibration.suggestion
        lowest = (f"{suggestion.threshold:g}: {suggestion.precision}, "
                  f"resting on {suggestion.precision.of} label(s)")
    return [
        f"{calibration.rule}: {emotion} >= {threshold:g}",
        f"  flagged notes     {calibration.flagged}, {calibration.flagged_labelled} of them labelled",
        f"  labelled notes    {labelled}",
        f"  precision now     {current}",
        f"  lowest threshold  {lowest}",
    ]
