"""Is there speech in a voice note, and where are the pauses?

``detect_speech`` runs Silero VAD (the ``silero-vad`` wheel ships its model,
so it works offline); ``split_at_pauses`` turns its speech map into chunks for
the emotion model, cut in silences rather than mid-word.

The model is loaded once per process, on first use, under a lock. Three
things about it are not obvious:

* We run Silero's ONNX export through onnxruntime with one thread of its
  own, not the TorchScript model. The TorchScript model runs ~300 tiny steps
  per 10 s on torch's process-wide thread pool, each a thread barrier: on
  2 cores it took 100-145 ms per 10 s when idle and 450-1100 ms when another
  process kept a core busy, and torch's thread count cannot be lowered for
  one call without leaking into other threads. ONNX: 54 ms per 10 s, the
  same speech segments, and no contention with the emotion model's threads.
* ``import silero_vad`` calls ``torch.set_num_threads(1)`` for the whole
  process, which would quietly slow the emotion model to one core; we restore
  the previous setting right after the import.
* The model keeps recurrent state between calls, so two threads sharing it
  would corrupt each other's results; calls are serialised by the same lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["SpeechMap", "detect_speech", "split_at_pauses"]


@dataclass
class SpeechMap:
    ratio: float  # fraction of the audio that is speech, 0..1
    segments: list[tuple[float, float]]  # speech (start_s, end_s)


_lock = threading.Lock()
_model = None
_VAD_RATES = (8000, 16000)


def detect_speech(samples: np.ndarray, sample_rate: int = 16000) -> SpeechMap:
    """Where ``samples`` (float32 mono) hold speech, by Silero VAD with its default thresholds.

    Silero works at 8 or 16 kHz; other rates are resampled to 16 kHz first.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {x.shape}")
    if sample_rate not in _VAD_RATES:
        import soxr

        x = soxr.resample(x, sample_rate, 16000).astype(np.float32)
        sample_rate = 16000
    if x.size == 0:
        return SpeechMap(0.0, [])

    import torch

    with _lock:
        model, get_speech_timestamps = _load_model()
        stamps = get_speech_timestamps(torch.from_numpy(x), model, sampling_rate=sample_rate)
    segments = [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]
    speech = sum(end - start for start, end in segments)
    return SpeechMap(ratio=min(1.0, speech / (x.size / sample_rate)), segments=segments)


def _load_model():
    """The shared Silero model and its timestamp function; the caller holds ``_lock``."""
    global _model
    if _model is None:
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
        finally:
            torch.set_num_threads(threads)
        _model = (load_silero_vad(onnx=True), get_speech_timestamps)
    return _model


def split_at_pauses(speech: SpeechMap, duration_s: float, max_chunk_s: float = 30.0) -> list[tuple[float, float]]:
    """Cut [0, duration_s] into contiguous chunks of at most ``max_chunk_s``, at pauses.

    Each cut goes in the middle of the longest pause (gap between speech
    segments, or silence before the first / after the last) that lies in the
    second half of the allowed window, so chunks do not come out needlessly
    short; failing that, in the longest pause that begins anywhere in the
    window; failing that (speech with no pause for ``max_chunk_s``), at
    ``max_chunk_s``.

    The chunks start at 0, end at ``duration_s``, and each starts where the
    previous one ends. A duration up to ``max_chunk_s`` is one chunk.
    """
    if max_chunk_s <= 0:
        raise ValueError("max_chunk_s must be positive")
    duration_s = max(0.0, float(duration_s))
    if duration_s <= max_chunk_s:
        return [(0.0, duration_s)]
    pauses = _pauses(speech.segments, duration_s)
    chunks = []
    start = 0.0
    while duration_s - start > max_chunk_s:
        limit = start + max_chunk_s
        cut = _best_cut(pauses, start + max_chunk_s / 2, limit)
        if cut is None:
            # Skip the rest of a pause we already cut in, or cuts would creep through it.
            cut = _best_cut([p for p in pauses if p[0] > start], start, limit)
        if cut is None:
            cut = limit
        chunks.append((start, cut))
        start = cut
    chunks.append((start, duration_s))
    return chunks


def _pauses(segments: list[tuple[float, float]], duration_s: float) -> list[tuple[float, float]]:
    """The silences of [0, duration_s]: the complement of the (merged) speech segments."""
    pauses, at = [], 0.0
    for start, end in sorted((max(0.0, s), min(duration_s, e)) for s, e in segments):
        if end <= start:
            continue
        if start > at:
            pauses.append((at, start))
        at = max(at, end)
    if at < duration_s:
        pauses.append((at, duration_s))
    return pauses


def _best_cut(pauses: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    """Middle of the longest stretch of pause inside (lo, hi], or None."""
    best, best_len = None, 0.0
    for start, end in pauses:
        a, b = max(start, lo), min(end, hi)
        if b - a > best_len:
            best, best_len = (a + b) / 2, b - a
    return best
