"""The engine every front end shares: settings, the store, the model, analysis.

The HTTP API, the CLI, the web console and the chat workers all call
``Service.analyse``; none of them touches the model or the database on its
own. The model loads at most once per process, on first use or in the
background at start so ``/readyz`` can report it; a failed load is kept and
reported with its fix, never replaced by anything else.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .analysis import AnalysisOptions, analyse
from .audio import AudioLimits
from .config import Settings
from .errors import ModelUnavailable
from .model import EmotionModel
from .results import Result
from .scheduler import Scheduler, build_scheduler
from .store import Store
from .worker import ChatWorker, build_adapters

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
        self._scheduler: Scheduler | None = None

    @property
    def model(self) -> EmotionModel:
        """The loaded model; loads it on first use, raises ``ModelUnavailable`` if it cannot."""
        if self._model is not None:
            return self._model
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
    def chat(self) -> ChatWorker:
        """Chat platforms: their adapters, the queue of voice notes, and the workers that answer them."""
        with self._chat_lock:
            if self._chat is None:
                self._chat = ChatWorker(self, build_adapters(self.settings))
            return self._chat

    def start_background(self, role: str) -> None:
        """Start what a process of this role runs besides answering HTTP requests.

        Roles ``all`` and ``worker`` load the model and, when a chat platform is
        configured, run the queue's worker threads and the lease recovery sweep.
        Every role runs the scheduler of escalations and digests when a target
        is configured; its lease lets one process of the deployment do the work.
        """
        if role in ("all", "worker"):
            threading.Thread(target=self._load_model_quietly, name="model-loader", daemon=True).start()
            if self.chat.adapters:
                self.chat.start()
        self._scheduler = build_scheduler(self)
        if self._scheduler is not None:
            self._scheduler.start()

    def _load_model_quietly(self) -> None:
        try:
            self.model
        except ModelUnavailable:
            pass  # logged by .model; /readyz and every request report it

    @property
    def model_state(self) -> dict:
        if self._model is not None:
            return {"state": "ready", **self._model.info.to_dict()}
        if self._model_error is not None:
            return {"state": "failed", "name": self.settings.model.name, "detail": self._model_error.detail}
        return {"state": "loading", "name": self.settings.model.name}

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
        """Analyse and store one recording. Raises ``AudioError`` or ``ModelUnavailable``."""
        options = self.analysis_options
        options = AnalysisOptions(timeline, embedding, options.max_chunk_s, options.limits)
        result = analyse(data, self.model, options, file_name=file_name, origin=origin)
        result.log.append(f"saved as result {result.id}")
        keep = data if self.settings.audio.keep_audio else None
        self.store.save_result(result, audio=keep, audio_suffix=_suffix(file_name), embedding_file=embedding)
        return result

    def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._chat is not None:
            self._chat.stop()
        self.store.close()


def _suffix(file_name: str | None) -> str:
    suffix = Path(file_name or "").suffix.lower()
    return suffix if suffix and len(suffix) <= 6 and suffix[1:].isalnum() else ".bin"
