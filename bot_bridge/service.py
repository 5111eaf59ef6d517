"""The engine every front end shares: settings, the store, the model, analysis.

The HTTP API, the CLI, the web console and the chat workers all call
``Service.analyse``; none of them touches the model or the database on its
own. The model loads at most once per process, on first use or in the
background at start so ``/readyz`` can report it; a failed load is kept and
reported with its fix, never replaced by anything else.

A process has a role (``server.role``): ``all`` and ``worker`` processes
load the model and consume the work queue; ``web`` processes never load it
and hand every analysis to a worker through the queue (``bot_bridge/acting/remote.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from .acting.listeners import Listeners
from .acting.queue import WorkQueue
from .acting.remote import RemoteAnalysis, Upload, analyse_upload
from .acting.scheduler import Scheduler, build_scheduler
from .acting.worker import ChatWorker, build_adapters
from .config import Settings
from .errors import ModelUnavailable
from .hearing.analysis import AnalysisOptions, analyse
from .hearing.audio import AudioLimits, media_type
from .hearing.model import EmotionModel
from .layout import queue_worker_threads
from .metrics import record_analysis, sample_process
from .remembering.results import Result
from .remembering.store import Store

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings, *, store: Store | None = None, model: EmotionModel | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.resolved_database_url, settings.outputs_dir)
        self._model = model
        self._model_error: ModelUnavailable | None = None
        self._model_lock = threading.Lock()
        self._chat: ChatWorker | None = None
        self._chat_lock = threading.Lock()
        self._queue: WorkQueue | None = None
        self._queue_lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._listeners: Listeners | None = None

    @property
    def model(self) -> EmotionModel:
        """The loaded model; loads it on first use, raises ``ModelUnavailable`` if it cannot."""
        if self._model is not None:
            return self._model
        if self.is_web:
            raise ModelUnavailable("this is a web process (server.role web): it never loads the model")
        with self._model_lock:
            if self._model is None:
                if self._model_error is not None:
                    raise self._model_error
                try:
                    self._model = EmotionModel.load(self.settings.model)
                except ModelUnavailable as error:
                    log.error("model %s unavailable: %s", self.settings.model.name, error.detail)
                    self._model_error = error
                    raise
        return self._model

    @property
    def is_web(self) -> bool:
        """A web process: it records and queues, and workers analyse (``server.role web``)."""
        return self.settings.server.role == "web"

    @property
    def queue(self) -> WorkQueue:
        """The work queue: chat voice notes, and uploads that web processes hand to workers."""
        with self._queue_lock:
            if self._queue is None:
                self._queue = WorkQueue(
                    self.settings.queue,
                    self.settings.data_dir,
                    note_handler=lambda note_id: self.chat.process(note_id),
                    upload_handler=lambda upload, task: analyse_upload(self.queue, self.analyse_here, upload, task),
                )
            return self._queue

    @property
    def chat(self) -> ChatWorker:
        """Chat platforms: their adapters, the queue of voice notes, and the workers that answer them."""
        with self._chat_lock:
            if self._chat is None:
                self._chat = ChatWorker(self.settings, self.store, self.queue, build_adapters(self.settings), self)
            return self._chat

    def start_background(self, role: str) -> None:
        """Start what a process of this role runs besides answering HTTP requests.

        Roles ``all`` and ``worker`` load the model, run the queue's worker
        threads (chat voice notes, and uploads from web processes) with the
        lease recovery sweep, the platforms reached without a public URL
        (``start_listening``), and the scheduler of escalations and digests
        when a target is configured; its lease lets one process of the
        deployment do the work. Role ``web`` starts nothing: its processes
        record, queue and wait, and stay quick to answer. Every role builds
        the chat adapters now, so a bad platform setting (a WeCom AES key of
        the wrong length) stops the start instead of failing each webhook.
        """
        self.chat
        if role == "web":
            return
        threading.Thread(target=self._load_model_quietly, name="model-loader", daemon=True).start()
        self.chat.start(queue_worker_threads(self.settings))
        self.start_listening()
        self._scheduler = build_scheduler(self.settings, self.store, self.chat.adapters)
        if self._scheduler is not None:
            self._scheduler.start()

    def start_listening(self) -> None:
        """Pull updates of, or hold connections to, the platforms configured to need no webhook."""
        self._listeners = Listeners(self.chat, self.store, self.settings.inbound)
        self._listeners.start()

    def _load_model_quietly(self) -> None:
        try:
            self.model
        except ModelUnavailable:
            pass  # logged by .model; /readyz and every request report it
        sample_process(self)  # /metrics agrees with /readyz at once, not at the next periodic sample

    @property
    def model_state(self) -> dict:
        if self.is_web:
            return {"state": "remote", "name": self.settings.model.name, "role": "web"}
        if self._model is not None:
            return {"state": "ready", **self._model.info.to_dict()}
        if self._model_error is not None:
            return {"state": "failed", "name": self.settings.model.name, "detail": self._model_error.detail}
        return {"state": "loading", "name": self.settings.model.name}

    def readiness(self) -> dict:
        """What ``/readyz`` reports: the model where it runs; in a web process, whether the database
        and the queue answer (it can record and hand on work)."""
        if not self.is_web:
            return self.model_state
        for part, check in (("database", self.store.check), ("queue", self.queue.check)):
            try:
                check()
            except Exception as error:  # noqa: BLE001 - any failure means "do not send traffic here"
                # The route is unauthenticated: hosts, users and SQL stay in the log.
                log.warning("not ready: the %s does not answer (%s: %s)", part, type(error).__name__, error)
                return {"state": "failed", "role": "web", "detail": f"the {part} does not answer (see the log)"}
        return {"state": "ready", "role": "web"}

    @property
    def analysis_options(self) -> AnalysisOptions:
        audio = self.settings.audio
        return AnalysisOptions(
            max_chunk_s=self.settings.model.max_chunk_s,
            limits=AudioLimits(audio.max_bytes, audio.max_duration_s, audio.min_duration_s),
        )

    def analyse(
        self,
        data: bytes,
        *,
        file_name: str | None = None,
        timeline: bool = False,
        embedding: bool = False,
        origin: str = "api",
    ) -> Result:
        """Analyse and store one recording: here, or in a web process by a worker.

        Raises ``AudioError``, ``ModelUnavailable``, or in a web process
        ``BotBridgeError`` ``no_worker`` / ``analysis_timeout``.
        """
        upload = Upload(data, file_name, timeline, embedding, origin)
        if self.is_web:
            return RemoteAnalysis(self.queue, self.settings.api.predict_timeout_s).analyse(upload)
        return self.analyse_here(upload)

    def cpu_turn(self):
        """This thread's turn with the cores for CPU work beside the model (``EmotionModel.cpu_turn``)."""
        return self.model.cpu_turn()

    def analyse_here(self, upload: Upload) -> Result:
        """Analyse and store ``upload`` with this process's model."""
        options = dataclasses.replace(self.analysis_options, timeline=upload.timeline, embedding=upload.embedding)
        result = analyse(upload.data, self.model, options, file_name=upload.file_name, origin=upload.origin)
        record_analysis(result)
        result.log.append(f"saved as result {result.id}")
        keep = upload.data if self.settings.audio.keep_audio else None
        suffix, _ = media_type(result.audio["container"])
        self.store.save_result(result, audio=keep, audio_suffix=suffix, embedding_file=upload.embedding)
        return result

    def close(self) -> None:
        if self._listeners is not None:
            self._listeners.stop()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._chat is not None:
            self._chat.stop()
        self.store.close()
