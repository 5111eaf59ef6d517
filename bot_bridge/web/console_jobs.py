"""The console's analyses: one request starts one, the page watches it until the result is in.

A 3-minute note takes over a minute with the large model on a CPU; a page
that shows only a spinner meanwhile looks stuck. So the console's
``POST /analyse`` answers at once (202) with a job, a thread of this process
runs the analysis (here, or through a worker in a web process, exactly as
``POST /api/predict`` does), and the page asks ``GET /analyse/<job>`` for its
stage (chunk n of m) every half second. The job lives in the database
(``remembering/job_store.py``) because another web process may answer the
page's next question. The API's own ``POST /api/predict`` stays one
request, one answer.

At most ``MAX_RUNNING`` console analyses run at once per process; more are
refused (429 ``busy``) rather than piling up threads.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from flask import url_for

from ..errors import BotBridgeError
from ..metrics import count_error
from ..remembering.job_store import AnalysisJobs, JobState
from ..service import Service
from .api import error_log_level

log = logging.getLogger(__name__)

MAX_RUNNING = 4

_running = threading.BoundedSemaphore(MAX_RUNNING)


def start_analysis(service: Service, asked: dict) -> str:
    """Start analysing ``asked`` (``api.analysis_request()``) in a thread; the job's id."""
    if not _running.acquire(blocking=False):
        raise BotBridgeError("busy", f"{MAX_RUNNING} console analyses already running in this process")
    try:
        jobs = AnalysisJobs(service.store)
        job_id = jobs.start()
        threading.Thread(target=_run, args=(service, jobs, job_id, asked), name="console-analysis", daemon=True).start()
    except BaseException:
        _running.release()
        raise
    return job_id


def job_answer(service: Service, job_id: str) -> dict | None:
    """What the page is told of job ``job_id``: its stage, then the result (or the error); None if unknown."""
    status = AnalysisJobs(service.store).status(job_id)
    if status is None:
        return None
    answer = {
        "id": status.id,
        "state": status.state,
        "stage": status.stage,
        "step": status.step,
        "steps": status.steps,
        "elapsed_s": round((datetime.now(timezone.utc) - status.started_at).total_seconds(), 1),
    }
    if status.state == JobState.DONE:
        row = service.store.result_row(status.result_id)
        answer["result"] = row.payload
        answer["audio_url"] = url_for("console.result_audio", result_id=row.id) if row.audio_file else None
    elif status.state == JobState.FAILED:
        answer["error"] = status.error
    return answer


def _run(service: Service, jobs: AnalysisJobs, job_id: str, asked: dict) -> None:
    try:
        result = service.analyse(**asked, job_id=job_id)
        jobs.finish(job_id, result.id)
    except BotBridgeError as error:
        count_error(error.code, "api")
        log.log(error_log_level(error), "console analysis %s -> %s: %s", job_id, error.code, error.detail)
        jobs.fail(job_id, error)
    except Exception:  # noqa: BLE001 - the page must hear that it failed, whatever failed
        log.exception("console analysis %s failed", job_id)
        count_error("internal_error", "api")
        jobs.fail(job_id, BotBridgeError("internal_error"))
    finally:
        _running.release()
