"""How fast is bot-bridge against the model it wraps, and against the seed system's way?

For 3 s, 10 s and 30 s speech clips it prints the median milliseconds of each
stage of ``bot_bridge.hearing.analysis.analyse`` (decode, vad, model, total), the
overhead ratio total/model, the bare model forward pass, and the baseline a
user of the seed system gets: funasr's ``AutoModel.generate`` given the file
path (WAV, the only common format funasr reads here without torchaudio or a
system ffmpeg). All figures come from one run, one process, the same clips.

It uses a full-size model with RANDOM WEIGHTS (compute cost does not depend on
weight values): the timings are real, the labels are meaningless. Everything
runs on the CPU, as the funasr baseline does here, so the ratios compare like
with like on a GPU host too. The clips are synthesised speech (espeak-ng).

    python bench/bench_pipeline.py [--preset large|base] [--runs 3] [--malloc]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.models import random_model  # noqa: E402
from bot_bridge.config import ModelSettings  # noqa: E402
from bot_bridge.hearing.analysis import AnalysisOptions, analyse  # noqa: E402
from bot_bridge.hearing.audio import decode  # noqa: E402
from bot_bridge.hearing.model import EmotionModel  # noqa: E402
from bot_bridge.malloc import FAST_MALLOC, reexec_with_fast_malloc  # noqa: E402
from tests.audio_fixtures import encode, speech_clip  # noqa: E402

CLIP_SECONDS = (3.0, 10.0, 30.0)
BANNER = "*** RANDOM WEIGHTS: timings are real, emotion labels are meaningless ***"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["large", "base"], default="large")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--malloc", action="store_true", help="also compare glibc's default malloc with the tuned one")
    parser.add_argument("--forward-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.forward_only:
        reexec_with_fast_malloc([__file__, *sys.argv[1:]])  # measure what users get

    model_dir = random_model(args.preset)
    if args.forward_only:
        print(json.dumps(forward_medians(model_dir, args.threads, args.runs)))
        return

    print(BANNER)
    print(f"model: {args.preset} preset at {model_dir}; {args.threads} threads; median of {args.runs} runs")
    print(f"malloc: {'tuned' if os.environ.get('MALLOC_TRIM_THRESHOLD_') else 'glibc default'}\n")
    model = EmotionModel.load(ModelSettings(name=str(model_dir), threads=args.threads, device="cpu"))
    baseline = funasr_automodel(model_dir, args.threads)

    header = f"{'clip':>6} {'decode':>8} {'vad':>8} {'model':>8} {'total':>8} {'total/model':>12} {'bare fwd':>9} {'baseline':>9} {'baseline/total':>15}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in CLIP_SECONDS:
            wav = encode(speech_clip(seconds), 16000, "wav_s16")
            path = Path(tmp) / f"clip_{seconds:.0f}s.wav"
            path.write_bytes(wav)
            row = measure(model, baseline, wav, path, args.runs)
            print(
                f"{seconds:>5.0f}s {row['decode']:>8.1f} {row['vad']:>8.1f} {row['model']:>8.1f} {row['total']:>8.1f} "
                f"{row['total'] / row['model']:>12.3f} {row['bare']:>9.1f} {row['baseline']:>9.1f} "
                f"{row['baseline'] / row['total']:>15.2f}"
            )
    print("\nms, medians. total/model: the service's overhead over its own model stage;")
    print("bare fwd: encoder forward pass alone; baseline: funasr AutoModel.generate(wav path).")
    if args.malloc:
        compare_malloc(args)
    print("\n" + BANNER)


def measure(model: EmotionModel, baseline, wav: bytes, path: Path, runs: int) -> dict:
    options = AnalysisOptions()
    analyse(wav, model, options)  # warm-up: first call builds caches
    stages: dict[str, list[float]] = {"decode": [], "vad": [], "model": [], "total": []}
    bare, base = [], []
    samples = decode(wav).samples
    for _ in range(runs):
        result = analyse(wav, model, options)
        for stage in stages:
            stages[stage].append(result.timings_ms[stage])
        bare.append(_timed(lambda: model.frame_features(samples)))
        base.append(_timed(lambda: baseline.generate(str(path), granularity="utterance")))
    medians = {stage: statistics.median(values) for stage, values in stages.items()}
    medians["bare"] = statistics.median(bare)
    medians["baseline"] = statistics.median(base)
    return medians


def forward_medians(model_dir: Path, threads: int, runs: int) -> dict:
    model = EmotionModel.load(ModelSettings(name=str(model_dir), threads=threads, device="cpu"))
    medians = {}
    for seconds in CLIP_SECONDS:
        samples = speech_clip(seconds)
        model.frame_features(samples)
        medians[f"{seconds:.0f}s"] = statistics.median(_timed(lambda: model.frame_features(samples)) for _ in range(runs))
    return medians


def compare_malloc(args) -> None:
    """The bare forward pass in fresh processes: glibc's default malloc against the tuned thresholds."""
    print("\nforward pass, ms (fresh process each):")
    base_env = {k: v for k, v in os.environ.items() if k not in FAST_MALLOC}
    runs = {}
    for label, env in (("glibc default", base_env), ("tuned (bot-bridge default)", {**base_env, **FAST_MALLOC})):
        command = [sys.executable, __file__, "--forward-only", "--preset", args.preset, "--runs", str(args.runs), "--threads", str(args.threads)]
        output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
        runs[label] = json.loads(output.strip().splitlines()[-1])
    for label, medians in runs.items():
        print(f"  {label:<28} " + "  ".join(f"{clip}: {ms:8.1f}" for clip, ms in medians.items()))
    default, tuned = runs.values()
    print("  speed-up of tuned malloc:   " + "  ".join(f"{clip}: {default[clip] / tuned[clip]:7.2f}x" for clip in default))


def funasr_automodel(model_dir: Path, threads: int):
    from funasr import AutoModel

    with contextlib.redirect_stdout(io.StringIO()):
        return AutoModel(model=str(model_dir), disable_update=True, device="cpu", ncpu=threads, disable_pbar=True, log_level="ERROR")


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


if __name__ == "__main__":
    main()
