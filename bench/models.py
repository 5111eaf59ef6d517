"""The benchmarks' models: RANDOM-WEIGHT presets in funasr's format, written once.

Compute cost does not depend on weight values, so a random large preset
times like the published emotion2vec+ large (and a random small SenseVoice
like the published SenseVoice-Small); their labels and words mean nothing,
and every benchmark says so.
"""

from __future__ import annotations

from pathlib import Path

from bot_bridge.hearing.model_files import make_random_model
from bot_bridge.hearing.sensevoice_files import make_random_sensevoice

BENCH_MODELS = Path(__file__).resolve().parent.parent / "var" / "bench-models"


def random_model(preset: str) -> Path:
    """A RANDOM-WEIGHT emotion2vec+ model of ``preset`` under var/bench-models, written on first use."""
    directory = BENCH_MODELS / preset
    if not (directory / "model.pt").exists():
        make_random_model(preset, directory)
    return directory


def random_sensevoice(preset: str) -> Path:
    """A RANDOM-WEIGHT SenseVoice-Small of ``preset`` under var/bench-models, written on first use."""
    directory = BENCH_MODELS / f"sensevoice-{preset}"
    if not (directory / "model.pt").exists():
        make_random_sensevoice(preset, directory)
    return directory
