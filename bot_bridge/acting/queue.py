"""The work queue: Huey, with SQLite storage by default and Redis to scale out.

Why Huey: it is a maintained queue with an embedded mode (a SQLite file
under ``data_dir``, nothing to install) and a distributed one (Redis), the
same task code for both, durable scheduled tasks for retries with backoff,
result storage, and a consumer that runs in threads. The consumer runs
inside the service's model processes (roles ``all`` and ``worker``), so the
model is loaded once per process and shared by its worker threads.

Two kinds of work travel on it:

* Chat voice notes, by id. The database row is the source of truth
  (``bot_bridge/acting/worker.py``): a task taken off the queue by a process that
  dies is gone from Huey, and the row's lease is what brings it back.
* Uploads that a web process (role ``web``, which never loads the model)
  hands to a worker and waits for (``bot_bridge/acting/remote.py``). Their answer
  comes back through Huey's result store; an upload nobody took before its
  deadline expires unrun, and the caller already said so.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from huey import RedisExpireHuey, SqliteHuey
from huey.api import Result as HueyResult
from huey.consumer import Consumer

from ..config import QueueSettings

log = logging.getLogger(__name__)

NOTE_TASK = "bot_bridge.process_voice_note"
UPLOAD_TASK = "bot_bridge.analyse_upload"
# An idle SQLite consumer looks for work at least this often: the longest a new note waits to be
# taken (a query of well under a millisecond; Redis wakes a waiting consumer at once instead).
MAX_POLL_INTERVAL_S = 0.1
# Answers to web processes nobody collected (the caller gave up) are dropped from Redis after this.
UNCOLLECTED_RESULT_TTL_S = 3600
# What huey's consumer threads log when the queue cannot be read, and how often it is worth saying.
QUEUE_READ_ERROR = "Error reading from queue"
QUIET_REPEATS_S = 60.0


class _QueueReadErrors(logging.Filter):
    """Huey logs a queue it cannot read (a full disk, Redis away) with a traceback at every poll: ten times a
    second per worker thread. The first in each ``QUIET_REPEATS_S`` is kept, saying how many were left out.
    One filter for the whole process, so threads share the count (a lost increment between two is harmless)."""

    def __init__(self) -> None:
        super().__init__()
        self._shown_at: float | None = None
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != QUEUE_READ_ERROR:
            return True
        now = time.monotonic()
        if self._shown_at is not None and now - self._shown_at < QUIET_REPEATS_S:
            self._left_out += 1
            return False
        if self._left_out:
            record.msg = f"{QUEUE_READ_ERROR} ({self._left_out} more in the last {QUIET_REPEATS_S:g} s not shown)"
        self._shown_at, self._left_out = now, 0
        return True


_QUEUE_READ_ERRORS = _QueueReadErrors()


class _EmbeddedConsumer(Consumer):
    """Huey's consumer without its signal handlers: the web server owns this process's signals."""

    def _set_signal_handlers(self) -> None:
        pass


class WorkQueue:
    """Voice-note ids for ``note_handler(note_id)``, uploads for ``upload_handler(upload, task=...)``."""

    def __init__(
        self,
        settings: QueueSettings,
        data_dir: Path,
        *,
        note_handler: Callable[[int], None],
        upload_handler: Callable[..., dict],
    ) -> None:
        self.settings = settings
        self.huey = _make_huey(settings, data_dir)
        self._note_task = self.huey.task(name=NOTE_TASK)(note_handler)
        # context=True: the handler gets its task, whose id names where the caller looks for the answer.
        self._upload_task = self.huey.task(name=UPLOAD_TASK, context=True)(upload_handler)
        self._consumer: Consumer | None = None

    def enqueue(self, note_id: int, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            self._note_task.schedule(args=(note_id,), delay=delay_s)
        else:
            self._note_task(note_id)

    def submit_upload(self, upload, expires_s: float) -> HueyResult:
        """Queue ``upload`` for any worker; unrun after ``expires_s``. The handle waits for its answer."""
        return self._upload_task(upload, expires=expires_s)

    def check(self) -> None:
        """Raise if the queue's storage does not answer (readiness of web processes)."""
        self.huey.pending_count()

    def is_idle(self) -> bool:
        """Nothing waiting to run now (scheduled retries do not count: their rows say when they are due)."""
        return self.huey.pending_count() == 0

    @property
    def consuming(self) -> bool:
        return self._consumer is not None

    def start_consumer(self, workers: int) -> None:
        """Run ``workers`` worker threads and the scheduler (which releases delayed tasks)."""
        if self._consumer is not None:
            return
        self._consumer = _EmbeddedConsumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            max_delay=MAX_POLL_INTERVAL_S,
            check_worker_health=False,
            shutdown_timeout=self.settings.shutdown_grace_s,
        )
        logging.getLogger("huey.consumer.Worker").addFilter(_QUEUE_READ_ERRORS)  # every consumer thread's logger
        self._consumer.start()

    def stop_consumer(self) -> bool:
        """Take no more work; wait up to ``queue.shutdown_grace_s`` for the work in hand. False: some is left."""
        if self._consumer is None:
            return True
        consumer, self._consumer = self._consumer, None
        consumer.stop(graceful=True)
        return not any(consumer.environment.is_alive(thread) for _, thread in consumer.worker_threads)


def _make_huey(settings: QueueSettings, data_dir: Path):
    # Results are stored only for uploads (a note's task returns None, and None is not stored).
    if settings.url:  # validated as a redis:// URL
        # notify_result: the waiting web thread wakes on a Redis list push instead of polling.
        return RedisExpireHuey(
            settings.name, url=settings.url, expire_time=UNCOLLECTED_RESULT_TTL_S, notify_result=True
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(settings.name, filename=str(data_dir / "queue.db"))
