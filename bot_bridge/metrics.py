"""Prometheus metrics: what an operator watches while bot-bridge runs.

* ``bot_bridge_queue_depth{state}``: chat voice notes waiting (due now),
  scheduled (retries not due yet) and in work, counted in the database at
  scrape time, so every process of a deployment reports the same truth;
  ``bot_bridge_queue_tasks_pending``: tasks in the work queue itself (notes
  and uploads from web processes).
* ``bot_bridge_stage_seconds{stage}``: decode, vad, model_wait (queueing
  for the model behind another note of the process), model (every
  analysis), transcribe (SenseVoice, when it runs), download and reply
  (chat notes).
* ``bot_bridge_time_to_reply_seconds{platform}``: webhook received to reply sent.
* ``bot_bridge_errors_total{code,source}``: every error by its stable code,
  from the HTTP API (``api``) and from chat notes (``chat``: error replies,
  retries and give-ups).
* ``bot_bridge_notes_total{mode}``: chat notes finished, by how they were
  answered (``message``, ``reaction``, ``silent``: docs/reply-modes.md).
* ``bot_bridge_kept{what}``: results, voice notes and recordings the
  deployment holds; ``bot_bridge_retention_days{what}`` its rules
  (``audio``, ``results``; absent: kept for ever) and
  ``bot_bridge_retention_next_sweep_timestamp_seconds`` when the next
  retention sweep runs (0: at the next start), all read at scrape time.
* ``bot_bridge_process_*{pid}``: resident memory, CPU time and whether the
  process holds the model, for each live process; ``bot_bridge_process_info``
  says its role.

Several processes: one ``serve`` runs several (gunicorn's), and any of them
may answer a scrape. prometheus_client's multiprocess mode has each process
write its samples to files in one directory per ``serve`` instance
(``<host>-<role>-<port>``, emptied when the instance starts) and sums them
when scraped. The directory is in memory (``$XDG_RUNTIME_DIR`` or
``/dev/shm``, under ``bot-bridge-metrics-<uid>``), only without either under
``<data_dir>/metrics``: the files are memory-mapped and grow a page at a
time, and a page that cannot be given on a full disk kills the process with
SIGBUS, which on the data disk turned a full disk into processes dying over
and over (issue 10). Each instance is scraped on its own port
(web processes on the HTTP port, workers on their health port) and
Prometheus adds the instances up: nothing is shared between hosts.

prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first
imported, so ``use_instance_directory`` runs before anything records, and
this module imports prometheus_client only on first use. Without the
variable (tests, the CLI) the metrics live in the process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from .config import Settings

if TYPE_CHECKING:
    from .remembering.results import Result

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
ANALYSIS_STAGES = ("decode", "vad", "model_wait", "model", "transcribe")
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REPLY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
PROCESS_SAMPLE_S = 5.0


def instance_directory(settings: Settings) -> Path:
    """Where the processes of this ``serve`` (host, role, port) keep their samples: in memory when the
    machine offers it (see the module's docstring), else under ``data_dir``."""
    server = settings.server
    return _metrics_root(settings) / f"{socket.gethostname()}-{server.role}-{server.port}"


def _metrics_root(settings: Settings) -> Path:
    for memory in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if memory and os.path.isdir(memory) and os.access(memory, os.W_OK):
            return Path(memory) / f"bot-bridge-metrics-{os.getuid()}"
    return settings.data_dir / "metrics"


def use_instance_directory(settings: Settings) -> Path:
    """Start this instance's metrics afresh and point every process it forks at them.

    Call in the parent process before prometheus_client is imported (before
    gunicorn forks its workers).
    """
    directory = instance_directory(settings)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_VARIABLE] = str(directory)
    return directory


def forget_instance(settings: Settings) -> None:
    """The instance stops (gunicorn's ``on_exit``): its samples go, and take no memory any more."""
    shutil.rmtree(instance_directory(settings), ignore_errors=True)


def forget_process(pid: int) -> None:
    """A process of this instance exited: drop its live gauges (gunicorn's ``child_exit``)."""
    if os.environ.get(MULTIPROC_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


@dataclass(frozen=True)
class _Metrics:
    stage: object
    time_to_reply: object
    errors: object
    notes: object
    resident_memory: object
    cpu_seconds: object
    model_loaded: object
    info: object


@functools.cache
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Gauge, Histogram

    def process_gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        # liveall: one sample per live process (the pid label is added); dead processes drop out.
        return Gauge(name, documentation, labels, multiprocess_mode="liveall")

    return _Metrics(
        stage=Histogram("bot_bridge_stage_seconds", "Time per processing stage", ["stage"], buckets=STAGE_BUCKETS),
        time_to_reply=Histogram(
            "bot_bridge_time_to_reply_seconds", "Webhook received to reply sent", ["platform"], buckets=REPLY_BUCKETS
        ),
        errors=Counter("bot_bridge_errors", "Errors by their stable code", ["code", "source"]),
        notes=Counter("bot_bridge_notes", "Chat notes finished, by how they were answered", ["mode"]),
        resident_memory=process_gauge("bot_bridge_process_resident_memory_bytes", "Resident memory"),
        cpu_seconds=process_gauge("bot_bridge_process_cpu_seconds", "CPU time used (user + system)"),
        model_loaded=process_gauge("bot_bridge_process_model_loaded", "1 when this process holds the model"),
        info=process_gauge("bot_bridge_process_info", "The role of each live process", ("role",)),
    )


# --- recording -----------------------------------------------------------------


def record_analysis(result: Result) -> None:
    for stage in ANALYSIS_STAGES:
        if stage in result.timings_ms:
            observe_stage(stage, result.timings_ms[stage] / 1000.0)


def observe_stage(stage: str, seconds: float) -> None:
    _metrics().stage.labels(stage).observe(seconds)


@contextlib.contextmanager
def timed_stage(stage: str) -> Iterator[None]:
    """``with timed_stage("download"): ...`` observes the block's duration, also when it fails."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(stage, time.perf_counter() - started)


def observe_time_to_reply(platform: str, seconds: float) -> None:
    _metrics().time_to_reply.labels(platform).observe(seconds)


def count_error(code: str, source: str) -> None:
    _metrics().errors.labels(code, source).inc()


def count_note(mode: str) -> None:
    _metrics().notes.labels(mode).inc()


class Observed(Protocol):
    """What metrics read of a running service: its settings, its model's state, the store and the work queue."""

    settings: Settings
    store: Any
    queue: Any

    @property
    def model_state(self) -> dict: ...


# --- this process --------------------------------------------------------------------


def start_process_sampler(service: Observed, role: str) -> None:
    """Report this process's role, and every few seconds its memory, CPU time and model (a daemon thread)."""
    _metrics().info.labels(role).set(1)

    def sample_forever() -> None:
        while True:
            sample_process(service)
            time.sleep(PROCESS_SAMPLE_S)

    threading.Thread(target=sample_forever, name="metrics-sampler", daemon=True).start()


def sample_process(service: Observed) -> None:
    metrics = _metrics()
    metrics.resident_memory.set(_resident_bytes())
    metrics.cpu_seconds.set(sum(os.times()[:2]))
    metrics.model_loaded.set(1 if service.model_state["state"] == "ready" else 0)


def _resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- scraping ------------------------------------------------------------------------


def exposition(service: Observed) -> tuple[bytes, str]:
    """The text a scrape gets: every process of this instance, and the queue as the database sees it."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    _metrics()  # declared, so that an idle process still shows every metric
    queue = CollectorRegistry()
    queue.register(_QueueCollector(service))
    queue.register(_RetentionCollector(service))
    if os.environ.get(MULTIPROC_VARIABLE):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    return generate_latest(processes) + generate_latest(queue), CONTENT_TYPE_LATEST


class _QueueCollector:
    """Queue depth at scrape time, from the database (and the queue's own count of tasks)."""

    def __init__(self, service: Observed) -> None:
        self.service = service

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("bot_bridge_queue_depth", "Chat voice notes not answered yet", labels=["state"])
        for state, count in self.service.store.voice_note_backlog().items():
            depth.add_metric([state], count)
        yield depth
        yield GaugeMetricFamily(
            "bot_bridge_queue_tasks_pending",
            "Tasks in the work queue (voice notes and uploads from web processes)",
            value=self.service.queue.huey.pending_count(),
        )


class _RetentionCollector:
    """What is kept and when the next retention sweep runs, from the database at scrape time."""

    def __init__(self, service: Observed) -> None:
        self.service = service

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .acting.retention import Retention

        rules = self.service.settings.retention
        kept = Retention(self.service.store, rules).kept()
        held = GaugeMetricFamily("bot_bridge_kept", "Results, chat voice notes and recordings held", labels=["what"])
        for what, count in (("results", kept.results), ("notes", kept.notes), ("recordings", kept.recordings)):
            held.add_metric([what], count)
        yield held
        days = GaugeMetricFamily("bot_bridge_retention_days", "How long data is kept (absent: for ever)",
                                 labels=["what"])
        for what, value in (("audio", rules.audio_days), ("results", rules.results_days)):
            if value is not None:
                days.add_metric([what], value)
        yield days
        yield GaugeMetricFamily("bot_bridge_retention_next_sweep_timestamp_seconds",
                                "When the next retention sweep runs (0: at the next start)",
                                value=kept.next_sweep.timestamp() if kept.next_sweep else 0)
