"""Does bot-bridge keep up with its own model, and beat the seed system's way of running it?

The same clips (CLIP_SECONDS of synthesised speech), with the LARGE preset
and RANDOM WEIGHTS on the CPU, go through:

* bare: the model's forward pass alone (``EmotionModel.frame_features``) on
  the 16 kHz samples, one after the other, in this process;
* the full path: each clip a voice note webhook in its platform's format
  (Telegram Ogg/Opus, Slack M4A, WeCom AMR) to a real ``bot-bridge serve``,
  all sent at once, timed from the first webhook to the last reply the
  platform fakes receive (download, decode, VAD, model, timeline, storage,
  chart, reply). Layouts: the default (``--role all``, one process, every
  core, two queue threads), ``fast`` mode, web + worker processes, two
  model processes of one thread each, and one queue thread;
* the seed-equivalent baseline: funasr's ``AutoModel.generate`` on the WAV
  file path, one request at a time, in a process of its own started as the
  seed system's user starts it (glibc's default malloc, funasr's default
  ``ncpu``), and once more with bot-bridge's malloc tuning and ``ncpu`` =
  cores, to show where the difference comes from.

The machine may be shared, so measurements that are compared are taken in
turns (full path, bare, baseline, full path, bare, ...) while the deployment
runs, and the median of each is kept: a slow spell hits all of them alike.
Throughput is clips per second over the set; the goals are full path / bare
>= 0.9, full path / seed baseline >= 1.0 (exact) and >= 1.4 (fast). Fast
mode's agreement with exact (top-1, largest probability difference) is
measured on the same clips. Every figure comes from one run.

    python bench/bench_throughput.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Deployment, Platforms, machine_load, print_memory  # noqa: E402
from bench.models import random_model  # noqa: E402
from bot_bridge.config import ModelSettings  # noqa: E402
from bot_bridge.hearing.model import EmotionModel  # noqa: E402
from bot_bridge.malloc import FAST_MALLOC, reexec_with_fast_malloc  # noqa: E402
from tests.audio_fixtures import encode, speech_clip  # noqa: E402

BANNER = "*** RANDOM WEIGHTS (large preset): timings are real, emotion labels are meaningless ***"
CLIP_SECONDS = (3.0, 5.0, 8.0, 10.0, 12.0)
QUICK_CLIP_SECONDS = (3.0, 6.0, 10.0)
LATENCY_CLIP_S = 10.0
PLATFORM_ORDER = ("telegram", "slack", "wecom")
GOALS = {"bare": 0.9, "exact": 1.0, "fast": 1.4}
SEED, TUNED_SEED = "seed baseline (as its users run it)", "seed baseline + bot-bridge's malloc and threads"

# The seed user's process: funasr's AutoModel, generate() on each file path, one by one; a pass per input line.
BASELINE = """
import json, sys, time
from funasr import AutoModel
model = AutoModel(model=sys.argv[1], disable_update=True, disable_pbar=True, log_level="ERROR", **json.loads(sys.argv[2]))
paths = sys.argv[3:]
model.generate(paths[0], granularity="utterance")  # warm-up, as a service that has answered before
print("ready", flush=True)
for _ in sys.stdin:
    times = []
    for path in paths:
        started = time.perf_counter()
        model.generate(path, granularity="utterance")
        times.append(time.perf_counter() - started)
    print("times", json.dumps(times), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="turns of each measurement (the median is kept)")
    parser.add_argument("--quick", action="store_true", help="three clips, the default layout and fast mode only")
    args = parser.parse_args()
    reexec_with_fast_malloc([__file__, *sys.argv[1:]])  # this process measures what bot-bridge's users get

    print(BANNER)
    print(machine_load())
    started = time.monotonic()
    cores = os.cpu_count() or 1
    seconds = QUICK_CLIP_SECONDS if args.quick else CLIP_SECONDS
    clips = [speech_clip(s) for s in seconds]
    model_dir = random_model("large")
    print(f"clips: {', '.join(f'{s:g} s' for s in seconds)} ({sum(seconds):g} s of speech); {cores} cores; "
          f"medians of {args.runs} turns\n")

    bare = {mode: EmotionModel.load(ModelSettings(name=str(model_dir), threads=cores, mode=mode, device="cpu"))
            for mode in ("exact", "fast")}
    for model in bare.values():
        model.frame_features(clips[0])  # warm-up: the first pass pays for the first allocations
    with tempfile.TemporaryDirectory() as tmp, Baseline(model_dir, clips, Path(tmp), cores) as baselines:
        passes = {mode: (lambda model=model: bare_pass(model, clips)) for mode, model in bare.items()}
        layouts = [
            (f"default: role all, 1 process x {cores} threads, 2 queue threads", "exact", {}, [SEED, TUNED_SEED]),
            ("fast mode (role all)", "fast", {"BOT_BRIDGE_MODE": "fast"}, [SEED]),
        ]
        if not args.quick:
            layouts += [
                ("web + worker processes", "exact", {"layout": "split"}, []),
                ("2 model processes x 1 thread (role all)", "exact", {"BOT_BRIDGE_PROCESSES": "2"}, []),
                ("1 queue thread: no pipelining (role all)", "exact", {"BOT_BRIDGE_WORKER_THREADS": "1"}, []),
            ]
        rows = []
        for name, mode, environment, seeds in layouts:
            alongside = {"bare": passes[mode], **{seed: baselines.runner(seed) for seed in seeds}}
            rows.append((name, mode, full_path(model_dir, clips, environment, alongside, args.runs)))
    report(rows, agreement(bare, clips), len(clips))
    print(f"\nwhole run: {(time.monotonic() - started) / 60:.1f} min; {machine_load()}")
    print(BANNER)


# --- the three ways through the clips ------------------------------------------------------------------------------


def bare_pass(model: EmotionModel, clips: list) -> float:
    """The forward passes alone, one clip after the other: seconds."""
    started = time.perf_counter()
    for clip in clips:
        model.frame_features(clip)
    return time.perf_counter() - started


class Baseline:
    """The seed baseline processes, loaded once and kept waiting; ``runner(name)()`` times one pass."""

    def __init__(self, model_dir: Path, clips: list, folder: Path, cores: int) -> None:
        paths = []
        for number, clip in enumerate(clips):
            paths.append(str(folder / f"clip_{number}.wav"))
            Path(paths[-1]).write_bytes(encode(clip, 16000, "wav_s16"))
        untuned = {k: v for k, v in os.environ.items() if k not in FAST_MALLOC}
        self.processes = {
            # funasr's defaults: glibc's malloc, ncpu=4 torch threads, whatever the cores
            SEED: self._start(model_dir, paths, untuned, {}),
            TUNED_SEED: self._start(model_dir, paths, {**untuned, **FAST_MALLOC}, {"ncpu": cores}),
        }
        for process in self.processes.values():
            _answer(process, "ready")

    def __enter__(self) -> Baseline:
        return self

    def __exit__(self, *exc_info) -> None:
        for process in self.processes.values():
            process.stdin.close()
            process.wait(60)

    def runner(self, name: str) -> Callable[[], float]:
        process = self.processes[name]

        def run_pass() -> float:
            process.stdin.write("pass\n")
            process.stdin.flush()
            return sum(json.loads(_answer(process, "times")))

        return run_pass

    @staticmethod
    def _start(model_dir: Path, paths: list[str], environ: dict, options: dict) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", BASELINE, str(model_dir), json.dumps(options), *paths],
                                env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)


def _answer(process: subprocess.Popen, word: str) -> str:
    """The rest of the next line ``process`` starts with ``word`` (funasr prints its own lines too)."""
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the baseline process ended (exit code {process.wait()})")
        if line.startswith(word):
            return line[len(word):].strip()


def full_path(model_dir: Path, clips: list, environment: dict, alongside: dict[str, Callable[[], float]],
              runs: int) -> dict:
    """Clips through webhooks to replies, in turns with ``alongside``; medians, latency, replies."""
    environment = dict(environment)
    layout = environment.pop("layout", "all")
    with Platforms() as platforms, tempfile.TemporaryDirectory() as tmp:
        with Deployment(layout, model_dir, platforms, Path(tmp), **environment) as deployment:
            answered = 0

            def burst(notes: list) -> float:
                nonlocal answered
                deliveries = [platforms.voice_note(PLATFORM_ORDER[n % 3], clip) for n, clip in enumerate(notes)]
                first = time.monotonic()
                assert all(delivery.send(deployment.web_url) == 200 for delivery in deliveries)
                answered += len(notes)
                platforms.wait_for_replies(answered, timeout=600)
                return platforms.last_reply_at() - first

            burst(clips[:1])  # warm-up: the first note pays for the model's first allocations
            turns = {"full path": lambda: burst(clips), **alongside}
            timings = {name: [] for name in turns}
            for _ in range(runs):
                for name, measure in turns.items():
                    timings[name].append(measure())
            latency = statistics.median(burst([speech_clip(LATENCY_CLIP_S)]) for _ in range(3))
            notes = deployment.wait_until_answered(answered, timeout=60)
            print(f"{layout} {environment}: " + "; ".join(
                f"{name} {', '.join(f'{t:.2f}' for t in times)} s" for name, times in timings.items()))
            print_memory(deployment)
    return {"medians": {name: statistics.median(times) for name, times in timings.items()}, "latency": latency,
            "once": all(n.attempts == 1 and n.reply_sent_at for n in notes), "replies": answered}


def agreement(models: dict[str, EmotionModel], clips: list) -> tuple[float, float]:
    """Fast mode against exact on the clips: (top-1 agreement, largest probability difference)."""
    scores = {mode: np.stack([model.classify(model.frame_features(c).mean(axis=0))[0] for c in clips])
              for mode, model in models.items()}
    same_top = float((scores["exact"].argmax(axis=1) == scores["fast"].argmax(axis=1)).mean())
    return same_top, float(np.abs(scores["exact"] - scores["fast"]).max())


# --- report -----------------------------------------------------------------------------------------------------------


def report(rows: list, agreement_figures: tuple[float, float], clips: int) -> None:
    print(f"\n{'full path layout':50} {'mode':>5} {'s/pass':>7} {'clips/s':>8} {'bare s':>7} {'vs bare':>8} "
          f"{'vs seed':>8} {'vs tuned seed':>14} {'10 s note':>10}")
    for name, mode, outcome in rows:
        medians = outcome["medians"]
        full = medians["full path"]
        versus = [f"{medians[seed] / full:8.2f}" if seed in medians else f"{'':8}" for seed in (SEED, TUNED_SEED)]
        print(f"{name:50} {mode:>5} {full:7.2f} {clips / full:8.3f} {medians['bare']:7.2f} "
              f"{medians['bare'] / full:8.3f} {versus[0]} {versus[1]:>14} {outcome['latency']:9.2f}s")
    for seed in (SEED, TUNED_SEED):
        print(f"{seed:50} {'':>5} {rows[0][2]['medians'][seed]:7.2f} (measured in turns with the default layout)")
    default, fast = rows[0][2]["medians"], rows[1][2]["medians"]
    print("\ngoals (one run):")
    _goal("full path / bare model (exact, default layout)", default["bare"] / default["full path"], GOALS["bare"])
    _goal("full path exact / seed baseline", default[SEED] / default["full path"], GOALS["exact"])
    _goal("full path fast / seed baseline", fast[SEED] / fast["full path"], GOALS["fast"])
    same_top, difference = agreement_figures
    print(f"fast mode against exact, same clips: top-1 agreement {same_top:.0%}, "
          f"largest probability difference {difference:.4f}")
    print(f"every note replied exactly once: {all(outcome['once'] for _, _, outcome in rows)} "
          f"({sum(outcome['replies'] for _, _, outcome in rows)} notes)")


def _goal(what: str, ratio: float, goal: float) -> None:
    print(f"  {what:<48} {ratio:6.3f}x  (goal >= {goal}: {'MET' if ratio >= goal else 'NOT MET'})")


if __name__ == "__main__":
    main()
