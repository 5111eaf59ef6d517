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

from .acting.alerting import build_targets
from .acting.case_desk import CaseDesk
from .acting.escalation import Escalator
from .acting.listeners import Listeners
from .acting.queue import WorkQueue
from .acting.remote import RemoteAnalysis, Upload, analyse_upload
from .acting.scheduler import Scheduler, build_scheduler, utc_now
from .acting.worker import ChatWorker, build_adapters
from .config import Settings
from .errors import ModelUnavailable
from .hearing.analysis import AnalysisOptions, Progress, analyse, no_progress
from .hearing.audio import AudioLimits, media_type
from .hearing.model import EmotionModel
from .hearing.model_files import public_model_name
from .hearing.playable import PLAYABLE_FILE, playable_copy
from .hearing.transcriber import Transcriber
from .layout import queue_worker_threads
from .metrics import record_analysis, sample_process
from .remembering.job_store import AnalysisJobs
from .remembering.results import Result
from .remembering.store import Store
from .storage import describe_full, full_places, is_storage_full, storage_full_error

log = logging.getLogger(__name__)

ADD_TRANSCRIPTS = (
    "To add transcripts: `bot-bridge model download iic/SenseVoiceSmall ./sensevoice_model` on a machine with "
    "internet, copy the directory here and set BOT_BRIDGE_TRANSCRIBE_MODEL to its path; "
    "or set transcribe.enabled: false. Emotions work without it."
)


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        model: EmotionModel | None = None,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.resolved_database_url, settings.outputs_dir)
        self._model = model
        self._model_error: ModelUnavailable | None = None
        self._model_lock = threading.Lock()
        self._transcriber = transcriber
        self._transcriber_error: ModelUnavailable | None = None
        self._transcriber_lock = threading.Lock()
        self._chat: ChatWorker | None = None
        self._chat_lock = threading.Lock()
        self._case_desk: CaseDesk | None = None
        self._case_desk_lock = threading.Lock()
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
    def transcriber(self) -> Transcriber | None:
        """The loaded transcriber; loads it on first use; ``None`` when it cannot be (logged once)."""
        if self._transcriber is not None or self.is_web:
            return self._transcriber
        with self._transcriber_lock:
            if self._transcriber is None and self._transcriber_error is None:
                try:
                    self._transcriber = Transcriber.load(self.settings.transcribe, self.settings.model)
                except ModelUnavailable as error:
                    log.warning("no transcripts: SenseVoice %s unavailable: %s %s",
                                self.settings.transcribe.model, error.detail, ADD_TRANSCRIPTS)
                    self._transcriber_error = error
        return self._transcriber

    @property
    def transcriber_state(self) -> dict:
        """What ``/readyz`` says of transcripts: ready, loading, off, or failed with how to add them."""
        settings = self.settings.transcribe
        if self._transcriber is not None:
            return {"state": "ready", **self._transcriber.info.to_dict()}
        if self._transcriber_error is not None:
            return {"state": "failed", "name": settings.model, "detail": self._transcriber_error.detail,
                    "fix": ADD_TRANSCRIPTS}
        if not settings.enabled:
            return {"state": "off", "name": settings.model}
        return {"state": "loading", "name": settings.model}

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
                self._chat = ChatWorker(self.settings, self.store, self.queue, build_adapters(self.settings), self,
                                        on_press=lambda action: self.case_desk.press(action))
            return self._chat

    @property
    def case_desk(self) -> CaseDesk:
        """Where people's actions on cases arrive, from a chat's buttons or the console."""
        with self._case_desk_lock:
            if self._case_desk is None:
                adapters = self.chat.adapters
                escalator = Escalator(self.store, self.settings, build_targets(self.settings, adapters))
                self._case_desk = CaseDesk(self.store, self.settings, adapters, escalator, utc_now)
            return self._case_desk

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
        if self.settings.transcribe.enabled:
            self.transcriber  # after the model, not beside it: each load peaks at twice its size
        sample_process(self)  # /metrics agrees with /readyz at once, not at the next periodic sample

    @property
    def model_state(self) -> dict:
        if self.is_web:
            return {"state": "remote", "name": self.model_name, "role": "web"}
        if self._model is not None:
            return {"state": "ready", **self._model.info.to_dict()}
        if self._model_error is not None:
            return {"state": "failed", "name": self.model_name, "detail": self._model_error.detail}
        return {"state": "loading", "name": self.model_name}

    @property
    def model_name(self) -> str:
        """The model as people see it: never the server path of a local directory (that is in the log)."""
        return public_model_name(self.settings.model.name)

    def readiness(self) -> dict:
        """What ``/readyz`` reports: not ready while the disk it writes to is full; then the model where it
        runs; in a web process, whether the database and the queue answer (it can record and hand on work).
        The transcriber's state is told beside the model's and never makes a process unready: without it,
        notes still get their emotion."""
        full = full_places(self.settings)
        if full:
            # The route is unauthenticated: it names the setting, the log names the path.
            log.warning("not ready: storage full: %s", describe_full(self.settings))
            settings = " and ".join(setting for setting, _ in full)
            return {"state": "failed", "role": self.settings.server.role,
                    "detail": f"storage full: the disk of {settings} has no space left (see the log)"}
        if not self.is_web:
            return {**self.model_state, "transcriber": self.transcriber_state}
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
        frames: bool = False,
        job_id: str | None = None,
        transcribe: bool | None = None,
    ) -> Result:
        """Analyse and store one recording: here, or in a web process by a worker.

        ``job_id`` names a console analysis job (``remembering/job_store.py``) to tell each stage;
        ``transcribe`` None means ``transcribe.enabled``. Raises ``AudioError``, ``ModelUnavailable``,
        or in a web process ``BotBridgeError`` ``no_worker`` / ``analysis_timeout``.
        """
        upload = Upload(data, file_name, timeline, embedding, origin, frames, job_id, transcribe)
        if self.is_web:
            return RemoteAnalysis(self.queue, self.settings.api.predict_timeout_s).analyse(upload)
        return self.analyse_here(upload)

    def cpu_turn(self):
        """This thread's turn with the cores for CPU work beside the model (``EmotionModel.cpu_turn``)."""
        return self.model.cpu_turn()

    def analyse_here(self, upload: Upload) -> Result:
        """Analyse and store ``upload`` with this process's model, telling its job (if any) each stage."""
        options = dataclasses.replace(
            self.analysis_options, timeline=upload.timeline, embedding=upload.embedding, frames=upload.frames
        )
        progress = self._progress_of(upload.job_id)
        wanted = self.settings.transcribe.enabled if upload.transcribe is None else upload.transcribe
        transcriber = self.transcriber if wanted else None
        result = analyse(
            upload.data, self.model, options, file_name=upload.file_name, origin=upload.origin, progress=progress,
            transcriber=transcriber,
        )
        if wanted and transcriber is None:
            result.log.append("no transcript: SenseVoice is not available here (/readyz says how to add it)")
        record_analysis(result)
        progress("save")
        result.log.append(f"saved as result {result.id}")
        files = {}
        keep = upload.data if self.settings.audio.keep_audio else None
        if keep is not None and (playable := self._playable_copy(keep, result)) is not None:
            files[PLAYABLE_FILE] = playable
        suffix, _ = media_type(result.audio["container"])
        try:
            self.store.save_result(result, audio=keep, audio_suffix=suffix, embedding_file=upload.embedding,
                                   files=files)
        except Exception as error:
            if is_storage_full(error):
                raise storage_full_error(self.settings, error) from error
            raise
        return result

    def _progress_of(self, job_id: str | None) -> Progress:
        if job_id is None:
            return no_progress
        jobs = AnalysisJobs(self.store)
        return lambda stage, step=0, steps=0: jobs.progress(job_id, stage, step, steps)

    def _playable_copy(self, data: bytes, result: Result) -> bytes | None:
        """A copy of kept audio that browsers play, when they cannot play the original (AMR, SILK)."""
        try:
            with self.cpu_turn():  # encoding is CPU work: not beside the model
                return playable_copy(data, result.audio["codec"], self.analysis_options.limits)
        except Exception:  # noqa: BLE001 - the result and the original audio matter more than a player copy
            log.exception("result %s: could not make a playable copy of its %s audio", result.id, result.audio["codec"])
            return None

    def close(self) -> None:
        if self._listeners is not None:
            self._listeners.stop()
        if self._case_desk is not None:
            self._case_desk.stop()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._chat is not None:
            self._chat.stop()
        self.store.close()
