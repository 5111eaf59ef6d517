"""emotion2vec+ through funasr: loaded once per process, shared by every thread.

funasr's ``AutoModel`` builds the network and loads the checkpoint; after
that we call the model's own encoder (``extract_features``) and its own
classification head (``proj``) directly. Why not ``AutoModel.generate``:
``generate`` reads audio itself (we already hold 16 kHz samples), returns one
score vector per call, and would need one forward pass per timeline window.
The head is linear, so softmax(proj(mean of a window's frames)) gives
per-window scores from a single forward pass, and proj(mean of all frames)
is exactly what ``generate`` computes for the utterance (``tests/test_model.py``
checks this against ``generate`` itself).

Inference is serialised by a lock: torch already spreads one forward pass
over all cores, and emotion2vec keeps a shared ALiBi bias cache that
concurrent calls of different lengths would race on. On the CPU the same
lock gives one thread at a time its turn with the cores (``cpu_turn``), and
each thread's wait for it is kept (``waited_s``), so that the time a note
queues is not reported as time in the model.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..emotions import EMOTION_KEYS, emotion_key_for_token
from ..errors import ModelUnavailable
from .funasr_loading import (
    build_with_funasr,
    check_checkpoint_matches,
    release_load_memory,
    resolve_device,
    torch_threads,
)
from .model_files import has_random_weights, public_model_name, random_bias, resolve_model_dir

if TYPE_CHECKING:
    from ..config import ModelSettings

log = logging.getLogger(__name__)

CUDA_BATCH_SIZE = 8  # recordings per forward pass on CUDA unless model.batch_size says otherwise


@dataclass(frozen=True)
class ModelInfo:
    name: str  # as results show it: a hub id, or a local directory's folder name (never a server path)
    directory: str
    random_weights: bool
    device: str
    mode: str
    embedding_dim: int
    random_bias: dict[str, float] = field(default_factory=dict)  # a random head's offsets (model_files)

    def to_dict(self) -> dict:
        info = {
            "name": self.name,
            "random_weights": self.random_weights,
            "device": self.device,
            "mode": self.mode,
            "embedding_dim": self.embedding_dim,
        }
        if self.random_bias:
            info["random_bias"] = dict(self.random_bias)
        return info


class EmotionModel:
    """The loaded network: frame features in, nine-emotion probabilities out."""

    def __init__(self, network, tokens: list[str], info: ModelInfo, batch_size: int = 1, batch_wait_ms: float = 10.0) -> None:
        import torch

        self._torch = torch
        self._network = network
        self._lock = threading.RLock()  # reentrant: the model's own calls run inside a cpu_turn
        self._waits = threading.local()
        self.info = info
        self._normalize = bool(network.cfg.get("normalize"))
        self._batcher = None
        if batch_size > 1:
            from .batching import MicroBatcher

            self._batcher = MicroBatcher(self.frame_features_batch, batch_size, batch_wait_ms / 1000.0)
        keys = [emotion_key_for_token(token) for token in tokens]
        self._token_columns = [i for i, key in enumerate(keys) if key is not None]
        self._emotion_columns = [EMOTION_KEYS.index(keys[i]) for i in self._token_columns]
        self._placeholder_columns = [i for i, key in enumerate(keys) if key is None]

    @classmethod
    def load(cls, settings: ModelSettings) -> "EmotionModel":
        """Load the configured model, or raise ``ModelUnavailable`` saying how to fix it."""
        started = time.perf_counter()
        directory = resolve_model_dir(settings.name, settings.hub)
        device = resolve_device(settings.device)
        threads = torch_threads(settings)
        automodel = build_with_funasr(directory, device, threads)
        network = automodel.model
        if network.proj is None:
            raise ModelUnavailable(
                f"{directory} has no classification head: its config.yaml needs "
                "`tokenizer: CharTokenizer` and a tokens.txt with the emotion labels"
            )
        check_checkpoint_matches(directory / "model.pt", network)
        if settings.mode == "fast":
            network = _quantise(network, device)
        tokens = list(automodel.kwargs["token_list"])
        del automodel  # in fast mode it holds the float network: let it go before the heap is trimmed
        release_load_memory()

        info = ModelInfo(
            name=public_model_name(settings.name),
            directory=str(directory),
            random_weights=has_random_weights(directory),
            device=device,
            mode=settings.mode,
            embedding_dim=int(network.proj.in_features),
            random_bias=random_bias(directory),
        )
        batch_size = settings.batch_size or (CUDA_BATCH_SIZE if device == "cuda" else 1)
        model = cls(network, tokens, info, batch_size, settings.batch_wait_ms)
        log.info(
            "model %s loaded from %s on %s (%d threads, mode %s) in %.1f s",
            settings.name, directory, device, threads, settings.mode, time.perf_counter() - started,
        )
        if info.random_weights:
            log.warning(
                "MODEL %s HAS RANDOM WEIGHTS: every emotion it reports is MEANINGLESS "
                "(a test or demo model written by `bot-bridge model make-random`)%s",
                directory,
                f"; its head is biased on purpose ({info.random_bias})" if info.random_bias else "",
            )
        return model

    def frame_features(self, samples: np.ndarray) -> np.ndarray:
        """Encoder output for one stretch of 16 kHz audio: (frames, embedding_dim) float32.

        With batching on (CUDA), the call joins concurrent ones in a length-bucketed batch.
        """
        if self._batcher is not None:
            return self._batcher.submit(samples)
        torch = self._torch
        with self._exclusive(), torch.no_grad():
            source = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            source = source.to(self.info.device)
            if self._normalize:
                source = torch.nn.functional.layer_norm(source, source.shape)
            output = self._network.extract_features(source.view(1, -1), padding_mask=None)
            return output["x"][0].float().cpu().numpy()

    def frame_features_batch(self, recordings: list[np.ndarray]) -> list[np.ndarray]:
        """``frame_features`` for several recordings in one padded pass, equal to one by one."""
        from .batching import frame_features_batch

        with self._exclusive(), self._torch.no_grad():
            return frame_features_batch(self._network, recordings, self.info.device, self._normalize)

    def classify(self, pooled: np.ndarray) -> np.ndarray:
        """Probabilities over ``EMOTION_KEYS`` for each row of pooled frame features.

        Emotions the model does not know (an old token file's ``unuse_*``
        slots) get probability 0, as funasr drops them.
        """
        torch = self._torch
        with self._exclusive(), torch.no_grad():
            features = torch.from_numpy(np.atleast_2d(pooled).astype(np.float32)).to(self.info.device)
            logits = self._network.proj(features).float()
            logits[:, self._placeholder_columns] = float("-inf")
            probabilities = torch.softmax(logits, dim=-1).cpu().numpy()
        scores = np.zeros((probabilities.shape[0], len(EMOTION_KEYS)), dtype=np.float64)
        scores[:, self._emotion_columns] = probabilities[:, self._token_columns]
        return scores

    def cpu_turn(self):
        """This thread's turn with the cores, for all the CPU-heavy work of one recording.

        On the CPU torch's threads use every core and wait for each other at
        every step, so a second note decoding or drawing a chart beside the
        model slows the forward pass by more than it saves (measured:
        ``bench/bench_throughput.py``). Queue threads therefore overlap only
        downloads and sends. With batching (CUDA) the CPU is free and
        concurrent calls are what forms a batch: no turn is taken.
        """
        return contextlib.nullcontext() if self._batcher is not None else self._exclusive()

    def waited_s(self) -> float:
        """Seconds this thread has waited so far for other threads to finish with the model."""
        return getattr(self._waits, "total", 0.0)

    @contextlib.contextmanager
    def _exclusive(self):
        started = time.perf_counter()
        with self._lock:
            self._waits.total = self.waited_s() + time.perf_counter() - started
            yield


def _quantise(network, device: str):
    """Opt-in ``fast`` mode: int8 dynamic quantisation of the encoder's Linear layers.

    The classification head stays in float32 so per-window scores keep using
    the exact head. CPU only: dynamic quantisation has no CUDA kernels.
    """
    import torch

    if device != "cpu":
        raise ModelUnavailable("model.mode fast (int8 dynamic quantisation) runs on the CPU only; use mode exact on CUDA")
    head = network.proj
    network.proj = None
    network = torch.ao.quantization.quantize_dynamic(network, {torch.nn.Linear}, dtype=torch.qint8)
    network.proj = head
    return network
