"""The work queue: Huey, with SQLite storage by default and Redis to scale out.

Why Huey: it is a maintained queue with an embedded mode (a SQLite file
under ``data_dir``, nothing to install) and a distributed one (Redis), the
same task code for both, durable scheduled tasks for retries with backoff,
and a consumer that runs in threads. The consumer runs inside the service's
process (roles ``all`` and ``worker``), so the model is loaded once and
shared by every worker thread.

The queue carries voice-note ids only. The database row is the source of
truth (``bot_bridge/worker.py``): a task taken off the queue by a process
that dies is gone from Huey, and the row's lease is what brings it back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer

from .config import QueueSettings

log = logging.getLogger(__name__)

QUEUE_NAME = "bot-bridge"
TASK_NAME = "bot_bridge.process_voice_note"
# An idle SQLite consumer polls at most this often; it bounds the wait for a new note.
MAX_POLL_INTERVAL_S = 0.5
# On shutdown, a note still in work after this is left to its lease (another process takes it back).
SHUTDOWN_TIMEOUT_S = 10.0


class _EmbeddedConsumer(Consumer):
    """Huey's consumer without its signal handlers: the web server owns this process's signals."""

    def _set_signal_handlers(self) -> None:
        pass


class NoteQueue:
    """Voice-note ids to process, now or after a delay, handled by ``handler(note_id)``."""

    def __init__(self, settings: QueueSettings, data_dir: Path, handler: Callable[[int], None]) -> None:
        self.settings = settings
        self.huey = _make_huey(settings, data_dir)
        self._task = self.huey.task(name=TASK_NAME)(handler)
        self._consumer: Consumer | None = None

    def enqueue(self, note_id: int, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            self._task.schedule(args=(note_id,), delay=delay_s)
        else:
            self._task(note_id)

    def is_idle(self) -> bool:
        """Nothing waiting to run now (scheduled retries do not count: their rows say when they are due)."""
        return self.huey.pending_count() == 0

    def start_consumer(self) -> None:
        """Run ``queue.worker_threads`` worker threads and the scheduler (which releases delayed tasks)."""
        if self._consumer is not None:
            return
        self._consumer = _EmbeddedConsumer(
            self.huey,
            workers=self.settings.worker_threads,
            worker_type="thread",
            periodic=False,
            max_delay=MAX_POLL_INTERVAL_S,
            check_worker_health=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        self._consumer.start()

    def stop_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.stop(graceful=True)
            self._consumer = None


def _make_huey(settings: QueueSettings, data_dir: Path):
    # results=False: tasks report through the database, and Huey would otherwise keep every return value.
    if settings.url:  # validated as a redis:// URL
        return RedisHuey(QUEUE_NAME, url=settings.url, results=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(data_dir / "queue.db"), results=False)
