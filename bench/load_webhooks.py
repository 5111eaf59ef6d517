"""Can bot-bridge answer every webhook at once while it works, and reply to each note exactly once?

300 voice notes (by default) arrive over 30 s at an even rate, a third each
from Telegram (Ogg/Opus), Slack (M4A/AAC) and WeCom (AMR), at a real
``bot-bridge serve`` with the TINY random-weight model. It prints how long
the webhooks took to answer (p50, p99; the goal is p99 under 200 ms, far
inside Slack's 3 s) and checks that every note got exactly one reply.
Everything stays on 127.0.0.1 (``bench/harness.py``); the run is bounded.

    python bench/load_webhooks.py [--layout all|split|scale-out] [--notes 300] [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import LAYOUTS, Deployment, Platforms, machine_load, percentile  # noqa: E402
from bench.models import random_model  # noqa: E402
from bot_bridge.remembering.store import NoteStatus  # noqa: E402
from tests.audio_fixtures import speech_clip  # noqa: E402

BANNER = "*** RANDOM WEIGHTS (tiny model): answer times and replies are real, emotions are meaningless ***"
GOAL_P99_S = 0.2
CLIP_SECONDS = (2.0, 3.0, 4.0, 5.0, 6.0)
SENDERS = 32  # webhook requests in flight at most; the platforms open many connections at once too


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=LAYOUTS, default="all",
                        help="all: one serve --role all (SQLite); split: web + worker; scale-out: web + worker "
                             "on the loopback PostgreSQL and Redis")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    print(BANNER)
    platforms_order = ("telegram", "slack", "wecom")
    clips = [speech_clip(seconds) for seconds in CLIP_SECONDS]
    with Platforms() as platforms, tempfile.TemporaryDirectory() as tmp:
        deliveries = [platforms.voice_note(platforms_order[n % 3], clips[n % len(clips)]) for n in range(args.notes)]
        with Deployment(args.layout, random_model("tiny"), platforms, Path(tmp)) as deployment:
            print(f"layout {args.layout}: {', '.join(deployment.processes)}; {args.notes} notes over {args.seconds:g} s")
            answers, sent_s = deliver(deliveries, deployment.web_url, args.seconds)
            notes = deployment.wait_until_answered(args.notes, timeout=300)
            finished_s = time.monotonic() - sent_s
            # A reply is recorded by the fake before its note is marked replied: the counts are final here.
            report(answers, notes, platforms.replies(), args, finished_s)


def deliver(deliveries, base_url: str, seconds: float) -> tuple[list[tuple[int, float]], float]:
    """Send each delivery at its moment of an even schedule; (status, answer seconds) each, and the start."""
    interval = seconds / len(deliveries)
    started = time.monotonic()

    def send(numbered):
        number, delivery = numbered
        time.sleep(max(0.0, started + number * interval - time.monotonic()))
        begun = time.perf_counter()
        status = delivery.send(base_url)
        return status, time.perf_counter() - begun

    with ThreadPoolExecutor(SENDERS) as senders:
        return list(senders.map(send, enumerate(deliveries))), started


def report(answers, notes, replies: dict[str, int], args, finished_s: float) -> None:
    times = [seconds for _, seconds in answers]
    refused = [status for status, _ in answers if status != 200]
    p50, p99 = statistics.median(times), percentile(times, 0.99)
    replied = [n for n in notes if n.status == NoteStatus.REPLIED]
    once = all(n.attempts == 1 for n in replied)
    print(f"\nwebhook answer time: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"({len(answers)} webhooks, {len(refused)} not 200)")
    print(f"goal p99 < {GOAL_P99_S * 1000:.0f} ms: {'MET' if p99 < GOAL_P99_S and not refused else 'NOT MET'}")
    print(f"replies per platform: {replies}; notes replied {len(replied)}/{args.notes}, each tried once: {once}; "
          f"last reply {finished_s:.1f} s after the first webhook")
    exactly_once = sum(replies.values()) == args.notes == len(replied) and once
    print(f"every note got exactly one reply: {'YES' if exactly_once else 'NO'}; {machine_load()}")
    print(BANNER)
    if not exactly_once or refused:
        sys.exit(1)


if __name__ == "__main__":
    main()
