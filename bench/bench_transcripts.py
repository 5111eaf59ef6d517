"""What do transcripts cost the emotion path, and is our SenseVoice call as fast as funasr's own?

On the CPU, with RANDOM WEIGHTS: emotion2vec+ at the large preset and
SenseVoice-Small at its published size (``small``, ~234M parameters). The
clips are those of ``bench/bench_throughput.py`` (synthesised speech), each
analysed as a WAV upload (decode, VAD, model) by ``analyse``:

* without transcripts, and with them (SenseVoice on the same decode, VAD
  and chunks), in turns clip by clip, so a slow spell of the shared machine
  hits both alike; the median of the turns is kept. Reported: the 10 s
  note's time and model time, the share SenseVoice adds to the model time
  (goal: at most 35 %), and notes per second over the set;
* SenseVoice alone: ``Transcriber.hear`` against funasr's own
  ``AutoModel.generate`` (as its users call it) on the same samples, also
  in turns (goal: ours / funasr's speed at least 1.0x).

Compute does not depend on weight values, so the times are real; every
word and label is meaningless.

    python bench/bench_transcripts.py [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_throughput import CLIP_SECONDS, LATENCY_CLIP_S  # noqa: E402
from bench.harness import machine_load  # noqa: E402
from bench.models import random_model, random_sensevoice  # noqa: E402
from bot_bridge.config import ModelSettings, TranscribeSettings  # noqa: E402
from bot_bridge.hearing.analysis import analyse  # noqa: E402
from bot_bridge.hearing.model import EmotionModel  # noqa: E402
from bot_bridge.hearing.transcriber import Transcriber  # noqa: E402
from bot_bridge.malloc import reexec_with_fast_malloc  # noqa: E402
from tests.audio_fixtures import encode, speech_clip  # noqa: E402

BANNER = ("*** RANDOM WEIGHTS (emotion2vec+ large, SenseVoice-Small): timings are real, "
          "every label and every word is MEANINGLESS ***")
GOAL_ADDED_SHARE = 0.35
GOAL_SPEED_VS_FUNASR = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="turns of each measurement (the median is kept)")
    args = parser.parse_args()
    reexec_with_fast_malloc([__file__, *sys.argv[1:]])  # this process measures what bot-bridge's users get

    print(BANNER)
    print(machine_load())
    started = time.monotonic()
    cores = os.cpu_count() or 1
    if os.getloadavg()[0] > cores / 2:
        print("*** the machine is busy: other processes take cores from both models, and the figures with them ***")
    clips = [speech_clip(s) for s in CLIP_SECONDS]
    notes = [encode(clip, 16000, "wav_s16") for clip in clips]
    settings = ModelSettings(name=str(random_model("large")), threads=cores, device="cpu")
    model = EmotionModel.load(settings)
    sensevoice_dir = random_sensevoice("small")
    transcriber = Transcriber.load(TranscribeSettings(model=str(sensevoice_dir)), settings)
    print(f"clips: {', '.join(f'{s:g} s' for s in CLIP_SECONDS)} ({sum(CLIP_SECONDS):g} s of speech); "
          f"{cores} cores, {cores} torch threads; medians of {args.runs} turns; "
          f"peak RSS with both models {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB\n")

    analyse(notes[0], model, transcriber=transcriber)  # warm-up: the first pass pays for the first allocations
    with_and_without(model, transcriber, notes, args.runs)
    print()
    against_funasr(transcriber, sensevoice_dir, clips, cores, args.runs)
    print(f"\nwhole run: {(time.monotonic() - started) / 60:.1f} min; {machine_load()}")
    print(BANNER)


def with_and_without(model: EmotionModel, transcriber: Transcriber, notes: list[bytes], runs: int) -> None:
    """Each clip analysed without and with transcripts, in turns; per-note medians and the set's throughput."""
    timings: dict[str, list[list[dict]]] = {"without": [], "with": []}
    for _ in range(runs):
        turn = {"without": [], "with": []}
        for note in notes:
            turn["without"].append(analyse(note, model).timings_ms)
            turn["with"].append(analyse(note, model, transcriber=transcriber).timings_ms)
        for key in turn:
            timings[key].append(turn[key])

    def median(key: str, clip: int, stage: str) -> float:
        return statistics.median(turn[clip].get(stage, 0.0) for turn in timings[key]) / 1000.0

    ten = CLIP_SECONDS.index(LATENCY_CLIP_S)
    model_s, transcribe_s = median("with", ten, "model"), median("with", ten, "transcribe")
    print(f"a {LATENCY_CLIP_S:g} s note (decode + VAD + models):")
    print(f"  without transcripts: {median('without', ten, 'total'):6.2f} s (emotion2vec {median('without', ten, 'model'):.2f} s)")
    print(f"  with transcripts:    {median('with', ten, 'total'):6.2f} s (emotion2vec {model_s:.2f} s + SenseVoice "
          f"{transcribe_s:.2f} s)")
    print(f"  SenseVoice adds {transcribe_s / model_s:.0%} to the model time (goal: at most {GOAL_ADDED_SHARE:.0%})")

    def set_seconds(key: str, stages: tuple[str, ...]) -> float:
        return statistics.median(sum(t.get(s, 0.0) for t in turn for s in stages) for turn in timings[key]) / 1000.0

    added = set_seconds("with", ("transcribe",)) / set_seconds("with", ("model",))
    print(f"all {len(notes)} clips: SenseVoice adds {added:.0%} to the model time "
          f"(goal: at most {GOAL_ADDED_SHARE:.0%}: {'met' if added <= GOAL_ADDED_SHARE else 'MISSED'})")
    for key in ("without", "with"):
        seconds = set_seconds(key, ("total",))
        print(f"  {key + ' transcripts:':22} {len(notes) / seconds:.3f} notes/s ({seconds:.1f} s for the set)")


def against_funasr(transcriber: Transcriber, model_dir: Path, clips: list, cores: int, runs: int) -> None:
    """``Transcriber.hear`` and funasr's ``AutoModel.generate`` on the same samples, in turns."""
    from funasr import AutoModel

    with contextlib.redirect_stdout(io.StringIO()):
        funasr_model = AutoModel(model=str(model_dir), disable_update=True, device="cpu", ncpu=cores,
                                 disable_pbar=True, log_level="ERROR")
    funasr_model.generate(input=clips[0], language="auto", use_itn=True)  # warm-up
    ours, theirs = [], []
    for _ in range(runs):
        for times, run in ((ours, transcriber.hear),
                           (theirs, lambda clip: funasr_model.generate(input=clip, language="auto", use_itn=True))):
            started = time.perf_counter()
            for clip in clips:
                run(clip)
            times.append(time.perf_counter() - started)
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    speed = theirs_s / ours_s
    print(f"SenseVoice alone on the {len(clips)} clips: ours {ours_s:.2f} s, funasr's generate {theirs_s:.2f} s: "
          f"{speed:.2f}x (goal: at least {GOAL_SPEED_VS_FUNASR:.1f}x: {'met' if speed >= GOAL_SPEED_VS_FUNASR else 'MISSED'})")


if __name__ == "__main__":
    main()
