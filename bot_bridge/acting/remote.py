"""Analysis by a worker process, for web processes that never load the model.

Why: web processes (role ``web``) start in a second, stay small and scale
with traffic; the model (seconds to load, gigabytes of memory) lives only in
workers. ``POST /api/predict`` and the console's analyse page still work in a
web process: the upload goes through the work queue to any worker, which
analyses and stores it as it would its own, and the answer comes back through
the queue's result store.

The wait is bounded by ``api.predict_timeout_s``. When it runs out, the
caller hears which of two things happened: no worker took the upload (503
``no_worker``: none is running, or all were busy the whole time), or one took
it and did not finish (504 ``analysis_timeout``). An upload nobody took
expires unrun. Answers cross processes as plain data: exceptions do not
survive pickling with their codes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from huey.exceptions import ResultTimeout, TaskException

from ..chat.messages import clean_file_name
from ..errors import AudioError, BotBridgeError
from ..remembering.results import Result

if TYPE_CHECKING:
    from .queue import WorkQueue

# The longest a waiting web thread sleeps between looks at a SQLite result store (Redis wakes it at once).
RESULT_POLL_S = 0.1


@dataclass(frozen=True)
class Upload:
    """One recording to analyse, with the options of ``Service.analyse``.

    Every upload (API, console, command line, chat note) becomes one, so its file name, which someone
    else chose, is cleaned here, once (``clean_file_name``).
    """

    data: bytes
    file_name: str | None = None
    timeline: bool = False
    embedding: bool = False
    origin: str = "api"
    frames: bool = False
    job_id: str | None = None  # the console's analysis job that hears of each stage (remembering/job_store.py)
    transcribe: bool | None = None  # None: the worker's transcribe.enabled

    def __post_init__(self) -> None:
        object.__setattr__(self, "file_name", clean_file_name(self.file_name))  # frozen: set once, here


class RemoteAnalysis:
    """Hands uploads to workers and waits for their answers (the web side)."""

    def __init__(self, queue: WorkQueue, timeout_s: float) -> None:
        self.queue = queue
        self.timeout_s = timeout_s

    def analyse(self, upload: Upload) -> Result:
        """The stored result of ``upload``, analysed by a worker; raises ``BotBridgeError`` as analysis would."""
        handle = self.queue.submit_upload(upload, expires_s=self.timeout_s)
        try:
            answer = handle.get(blocking=True, timeout=self.timeout_s, max_delay=RESULT_POLL_S)
        except ResultTimeout:
            taken_by = self.queue.huey.get(_taken_key(handle.id))
            if taken_by is None:
                raise BotBridgeError("no_worker", f"upload {handle.id}: no worker took it in {self.timeout_s:g} s") from None
            raise BotBridgeError(
                "analysis_timeout", f"upload {handle.id}: {taken_by} took it and did not answer in {self.timeout_s:g} s"
            ) from None
        except TaskException as failure:
            raise BotBridgeError("internal_error", f"upload {handle.id}: the worker failed: {failure}") from None
        self.queue.huey.get(_taken_key(handle.id))  # only needed to tell a timeout's cause; drop it
        if "error" in answer:
            raise _error_from_wire(answer["error"])
        return Result.from_dict(answer["result"], answer["embedding"])


def analyse_upload(queue: WorkQueue, analyse_here: Callable[[Upload], Result], upload: Upload, task) -> dict:
    """The queue's upload task (the worker side): analyse and store ``upload``, answer in plain data."""
    queue.huey.put(_taken_key(task.id), f"{socket.gethostname()}:{os.getpid()}")
    try:
        result = analyse_here(upload)
    except BotBridgeError as error:
        return {"error": _error_to_wire(error)}
    return {"result": result.to_dict(), "embedding": result.embedding if upload.embedding else None}


def _taken_key(task_id: str) -> str:
    return f"taken:{task_id}"


def _error_to_wire(error: BotBridgeError) -> dict:
    return {"code": error.code, "detail": error.detail, "params": error.params, "audio": isinstance(error, AudioError)}


def _error_from_wire(wire: dict) -> BotBridgeError:
    kind = AudioError if wire["audio"] else BotBridgeError
    return kind(wire["code"], wire["detail"], **wire["params"])
