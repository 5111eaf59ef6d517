"""The benchmarks' models: RANDOM-WEIGHT presets in funasr's format, written once.

Compute cost does not depend on weight values, so a random large preset
times like the published emotion2vec+ large; its labels mean nothing, and
every benchmark says so.
"""

from __future__ import annotations

from pathlib import Path

from bot_bridge.hearing.model_files import make_random_model

BENCH_MODELS = Path(__file__).resolve().parent.parent / "var" / "bench-models"


def random_model(preset: str) -> Path:
    """A RANDOM-WEIGHT model of ``preset`` under var/bench-models, written on first use."""
    directory = BENCH_MODELS / preset
    if not (directory / "model.pt").exists():
        make_random_model(preset, directory)
    return directory
