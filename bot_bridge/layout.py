"""How many processes and threads one ``bot-bridge serve`` runs, from the settings and the machine.

Every number here is a setting; these are the defaults when it is left
empty, and why (measured on a 2-core VM with the large model;
``bench/bench_throughput.py`` measures them again, docs/scale-out.md has
the figures):

* Model processes (roles ``all`` and ``worker``): one. Each process holds
  its own copy of the model (about 2 GB for the large one). Two processes of
  one torch thread each answer only a few percent more notes per hour than
  one process with two threads, and each note takes twice as long, so one
  process per machine with every core is the better trade; add processes
  for a GPU box or when throughput matters more than latency.
* Torch threads: the cores shared out among the model processes.
* Queue worker threads per model process: two on the CPU. One note at a
  time has the cores for its CPU work (decoding, VAD, the model, the chart:
  ``EmotionModel.cpu_turn``); the other thread downloads the next note or
  sends the last reply meanwhile, so the model does not wait for the
  network. Letting the second thread decode beside the model was slower
  (torch's threads wait for each other when one is preempted). On CUDA,
  ``model.batch_size`` threads, so that a batch can form
  (``bot_bridge/hearing/batching.py``).
* Web processes: one per core, at least two (one can restart while the
  other answers), each with ``server.threads`` threads. A webhook is a few
  milliseconds of work, but ``POST /api/predict`` in the web role holds its
  thread while a worker analyses the upload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import Settings
from .hearing.model import CUDA_BATCH_SIZE

CPU_WORKER_THREADS = 2
MIN_WEB_PROCESSES = 2


@dataclass(frozen=True)
class Layout:
    role: str
    processes: int
    http_threads: int
    model_threads: int | None  # None for the web role: it never loads the model

    @property
    def loads_model(self) -> bool:
        return self.model_threads is not None


def process_layout(settings: Settings, cpu_count: int | None = None) -> Layout:
    """The processes and threads of a ``serve`` of ``settings.server.role`` on this machine."""
    cores = cpu_count or os.cpu_count() or 1
    server = settings.server
    if server.role == "web":
        return Layout("web", server.processes or max(MIN_WEB_PROCESSES, cores), server.threads, None)
    processes = server.processes or 1
    return Layout(server.role, processes, server.threads, settings.model.threads or max(1, cores // processes))


def queue_worker_threads(settings: Settings) -> int:
    """Notes one model process works on at once; see the module's docstring.

    Asks torch whether CUDA is there (unless the device is ``cpu``), so call it
    in the process that loads the model, after any fork.
    """
    if settings.queue.worker_threads:
        return settings.queue.worker_threads
    if settings.model.device != "cpu" and _cuda_available():
        return settings.model.batch_size or CUDA_BATCH_SIZE
    return CPU_WORKER_THREADS


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
