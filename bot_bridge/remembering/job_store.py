"""The web console's analyses while they run: their stage, chunk n of m, then the result or the error.

Why in the database: a long recording takes a minute or more, and the
console's page asks for news of it every half second. Any web process of a
deployment may answer that question (several per host, several hosts),
while the analysis runs in a thread of the process that took the upload or,
in a web process, in a worker. The database is what all of them share. A job
is one small row, updated at each stage; rows older than ``KEEP_FOR`` are
dropped whenever a new job starts.

A process that dies leaves its job ``running`` with no more news: a job
silent for ``LOST_AFTER`` is reported as failed, so the page stops waiting.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import JSON, Integer, String, delete, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import BotBridgeError
from .store import Base, Store, UTCDateTime

log = logging.getLogger(__name__)

KEEP_FOR = timedelta(days=1)
# Far longer than any stage takes: a 300 s note is minutes of model time at most, and every chunk reports.
LOST_AFTER = timedelta(minutes=15)


class JobState:
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobRow(Base):
    __tablename__ = "analysis_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))
    # "queued" until the analysis has the model's attention, then the stages of hearing.analysis and "save"
    stage: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # chunk n ...
    steps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # ... of m (0: not counted)
    result_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[dict | None] = mapped_column(JSON)  # {code, message, message_zh, status}


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: str
    stage: str
    step: int
    steps: int
    started_at: datetime
    result_id: str | None
    error: dict | None


class AnalysisJobs:
    """The ``analysis_jobs`` rows of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self) -> str:
        """A new running job; its id is hard to guess (the page holds it, nobody else should)."""
        now = _utcnow()
        job_id = secrets.token_urlsafe(16)
        with self.store.session.begin() as session:
            session.execute(delete(JobRow).where(JobRow.created_at < now - KEEP_FOR))
            session.add(JobRow(id=job_id, created_at=now, updated_at=now, state=JobState.RUNNING, stage="queued"))
        return job_id

    def progress(self, job_id: str, stage: str, step: int = 0, steps: int = 0) -> None:
        """Record a stage; news only, so a database that cannot take it now does not stop the analysis."""
        try:
            self._update(job_id, stage=stage, step=step, steps=steps)
        except SQLAlchemyError as error:
            log.warning("analysis job %s: could not record stage %s (%s)", job_id, stage, error)

    def finish(self, job_id: str, result_id: str) -> None:
        self._update(job_id, state=JobState.DONE, stage="done", result_id=result_id)

    def fail(self, job_id: str, error: BotBridgeError) -> None:
        self._update(job_id, state=JobState.FAILED, error={**error.to_dict(), "status": error.http_status})

    def status(self, job_id: str) -> JobStatus | None:
        with self.store.session() as session:
            row = session.get(JobRow, job_id)
        if row is None:
            return None
        state, error = row.state, row.error
        if state == JobState.RUNNING and row.updated_at < _utcnow() - LOST_AFTER:
            lost = BotBridgeError("analysis_timeout", f"analysis job {job_id}: no news since {row.updated_at}")
            state, error = JobState.FAILED, {**lost.to_dict(), "status": lost.http_status}
        return JobStatus(row.id, state, row.stage, row.step, row.steps, row.created_at, row.result_id, error)

    def _update(self, job_id: str, **values) -> None:
        with self.store.session.begin() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=_utcnow(), **values))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
