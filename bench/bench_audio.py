"""Decode + resample cost per format, VAD cost, and bomb refusal time.

    python bench/bench_audio.py [--repeat 7]

Prints median milliseconds for 10 s and 60 s of synthetic speech in every
format the fixtures can write, from a 48 kHz source as phones record it (so
M4A, MP3, FLAC and WAV are resampled 48 -> 16 kHz; AMR is 8 kHz, Opus 48 kHz,
SILK 24 kHz), ``detect_speech`` per 10 s, and how long the
10-hour FLAC bombs take to refuse. Needs espeak-ng (for the speech).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import audio_fixtures as fx  # noqa: E402
import torch  # noqa: E402

from bot_bridge.errors import AudioError  # noqa: E402
from bot_bridge.hearing.audio import decode  # noqa: E402
from bot_bridge.hearing.vad import detect_speech  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    print(f"torch threads: {torch.get_num_threads()}")
    clips = {seconds: fx.speech_clip(seconds, sample_rate=48000) for seconds in (10, 60)}
    print(f"{'format':22s} {'size 10 s':>10s} {'10 s ms':>8s} {'60 s ms':>8s}")
    for fmt in fx.FORMATS:
        try:
            files = {s: fx.encode(x, 48000, fmt) for s, x in clips.items()}
        except ImportError as e:
            print(f"{fmt:22s} skipped ({e})")
            continue
        ms = {s: median_ms(lambda d=data: decode(d), args.repeat) for s, data in files.items()}
        print(f"{fmt:22s} {len(files[10]):10d} {ms[10]:8.1f} {ms[60]:8.1f}")

    for seconds in clips:
        x = fx.speech_clip(seconds)
        ms = median_ms(lambda: detect_speech(x), max(3, args.repeat // 2))
        print(f"detect_speech {seconds} s: {ms:.0f} ms ({ms * 10 / seconds:.0f} ms per 10 s)")

    for with_length in (True, False):
        bomb = fx.flac_bomb(total_samples_in_header=with_length)

        def refuse(data=bomb):
            try:
                decode(data)
            except AudioError:
                pass

        label = "length in header" if with_length else "no length in header"
        print(f"10 h FLAC bomb ({len(bomb) // 1000} KB, {label}): refused in {median_ms(refuse, 5):.1f} ms")


if __name__ == "__main__":
    main()
