"""What was said: SenseVoice-Small through funasr, loaded once per model process.

funasr's ``AutoModel`` builds the network, its fbank frontend and its BPE
tokenizer from the model directory, as for emotion2vec+; then we call the
network's own ``inference`` on the samples we already hold, never
``AutoModel.generate``. Why: ``generate`` sets torch's process-wide thread
count on every call (to its ``ncpu``), under the emotion model's feet, and
reads audio itself. ``inference`` is exactly what ``generate`` runs for each
input (``tests/test_transcripts.py`` checks the text and tags against
``generate``), and SenseVoice keeps no state between calls.

Two settings are forced: the frontend's dither is 0 (funasr's default 1.0
adds noise, so the same note would give different words each time), and
the thread count is the emotion model's (``funasr_loading.torch_threads``).
On the CPU the analysis calls the transcriber inside the note's turn with
the cores (``EmotionModel.cpu_turn``), right after emotion2vec: the two
models take turns with every core instead of splitting them, and neither
ever waits on the other holding threads idle.

SenseVoice tags each stretch of audio with a language, an emotion and an
audio event (``<|en|><|ANGRY|><|Speech|><|withitn|>...``); they are read
here, and the text is SenseVoice's own rich transcription
(``rich_transcription_postprocess``: tags out, event and emotion emoji in).
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelUnavailable
from ..remembering.results import Segment, Transcript
from .funasr_loading import (
    build_with_funasr,
    check_checkpoint_matches,
    release_load_memory,
    resolve_device,
    torch_threads,
)
from .model_files import SENSEVOICE, has_random_weights, resolve_model_dir

if TYPE_CHECKING:
    from ..config import ModelSettings, TranscribeSettings
    from .vad import SpeechMap

log = logging.getLogger(__name__)

TAG = re.compile(r"<\|([^|]*)\|>")
LANGUAGES = ("zh", "en", "yue", "ja", "ko", "nospeech")
EMOTIONS = {
    "HAPPY": "happy", "SAD": "sad", "ANGRY": "angry", "NEUTRAL": "neutral", "FEARFUL": "fearful",
    "DISGUSTED": "disgusted", "SURPRISED": "surprised", "EMO_UNKNOWN": "unknown",
}
EVENTS = ("Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing", "Speech_Noise",
          "Event_UNK", "GBG")
SAMPLE_RATE = 16000
ZH_TAG_ID = 24884  # funasr's SenseVoice code reads language tags at these ids of the tokenizer


@dataclass(frozen=True)
class Heard:
    """SenseVoice's answer for one stretch of audio."""

    raw: str  # the decoded tokens, tags included
    text: str  # SenseVoice's rich transcription of ``raw``
    language: str | None
    emotion: str | None  # an emotion key (``angry``), not SenseVoice's tag
    event: str | None


@dataclass(frozen=True)
class TranscriberInfo:
    name: str
    directory: str
    random_weights: bool
    device: str

    def to_dict(self) -> dict:
        return {"name": self.name, "random_weights": self.random_weights, "device": self.device}


class Transcriber:
    """The loaded SenseVoice network, its frontend and tokenizer: 16 kHz samples in, words and tags out."""

    def __init__(self, network, frontend, tokenizer, info: TranscriberInfo, language: str, itn: bool) -> None:
        import torch

        self._torch = torch
        self._network = network
        self._frontend = frontend
        self._tokenizer = tokenizer
        self.info = info
        self.language = language
        self.itn = itn

    @classmethod
    def load(cls, settings: TranscribeSettings, model: ModelSettings) -> "Transcriber":
        """Load ``transcribe.model`` on ``model.device``, or raise ``ModelUnavailable`` saying how to fix it."""
        started = time.perf_counter()
        _require_fbank_backend()
        directory = resolve_model_dir(settings.model, model.hub, SENSEVOICE)
        device = resolve_device(model.device)
        threads = torch_threads(model)
        automodel = build_with_funasr(directory, device, threads, frontend_conf={"dither": 0.0})
        network, frontend, tokenizer = automodel.model, automodel.kwargs["frontend"], automodel.kwargs["tokenizer"]
        check_checkpoint_matches(directory / "model.pt", network)
        _check_tokenizer(directory, tokenizer)
        frontend.dither = 0.0
        del automodel
        release_load_memory()

        info = TranscriberInfo(settings.model, str(directory), has_random_weights(directory), device)
        log.info("transcriber %s loaded from %s on %s (%d threads) in %.1f s",
                 settings.model, directory, device, threads, time.perf_counter() - started)
        if info.random_weights:
            log.warning("TRANSCRIBER %s HAS RANDOM WEIGHTS: every transcript it gives is MEANINGLESS "
                        "(written by `bot-bridge model make-random --kind sensevoice`)", directory)
        return cls(network, frontend, tokenizer, info, settings.language, settings.itn)

    def hear(self, samples: np.ndarray) -> Heard:
        """SenseVoice's words and tags for one stretch of 16 kHz mono float32 audio (30 s or less is best)."""
        with self._torch.no_grad():
            answers, _ = self._network.inference(
                data_in=[np.ascontiguousarray(samples, dtype=np.float32)],
                key=["note"],
                tokenizer=self._tokenizer,
                frontend=self._frontend,
                device=self.info.device,
                language=self.language,
                use_itn=self.itn,
                fs=SAMPLE_RATE,
            )
        return parse_output(answers[0]["text"])


def parse_output(raw: str) -> Heard:
    """SenseVoice's decoded tokens read: its tags, and its rich transcription of the words."""
    from funasr.utils.postprocess_utils import rich_transcription_postprocess

    tags = TAG.findall(raw)
    return Heard(
        raw=raw,
        text=rich_transcription_postprocess(raw) if raw else "",
        language=next((tag for tag in tags if tag in LANGUAGES), None),
        emotion=next((EMOTIONS[tag] for tag in tags if tag in EMOTIONS), None),
        event=next((tag for tag in tags if tag in EVENTS), None),
    )


def transcribe(
    transcriber: Transcriber, samples: np.ndarray, chunks: list[tuple[float, float]], speech: SpeechMap
) -> Transcript:
    """The transcript of a recording already cut into ``chunks`` (seconds) for the emotion model.

    Each chunk with speech in it is one segment, timed from its first
    speech to its last; chunks without speech are not transcribed. The
    transcript's language and emotion are those of the most speech.
    """
    segments = []
    for start, end in chunks:
        spoken = [(max(s, start), min(e, end)) for s, e in speech.segments if s < end and e > start]
        if not spoken:
            continue
        heard = transcriber.hear(samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
        segments.append(Segment(spoken[0][0], spoken[-1][1], heard.text, heard.language, heard.emotion, heard.event))
    events = list(dict.fromkeys(segment.event for segment in segments if segment.event))
    return Transcript(
        text=" ".join(segment.text for segment in segments if segment.text),
        language=_most_heard(segments, "language"),
        segments=segments,
        events=events,
        sensevoice_emotion=_most_heard(segments, "emotion"),
        model=transcriber.info.to_dict(),
    )


def _most_heard(segments: list[Segment], tag: str) -> str | None:
    """The value of ``tag`` over the longest total time, or None if no segment has one."""
    seconds: dict[str, float] = defaultdict(float)
    for segment in segments:
        value = getattr(segment, tag)
        if value is not None:
            seconds[value] += segment.end - segment.start
    return max(seconds, key=seconds.__getitem__) if seconds else None


def _require_fbank_backend() -> None:
    """SenseVoice's frontend needs kaldi-native-fbank (or torchaudio); funasr would fail at the first note."""
    try:
        import kaldi_native_fbank  # noqa: F401
    except ImportError:
        raise ModelUnavailable(
            "SenseVoice's feature extraction needs kaldi-native-fbank: pip install -r requirements.txt"
        ) from None


def _check_tokenizer(directory, tokenizer) -> None:
    """funasr reads SenseVoice's tags at fixed ids; a tokenizer without them gives tags that mean nothing."""
    piece = tokenizer.sp.IdToPiece(ZH_TAG_ID) if tokenizer.get_vocab_size() > ZH_TAG_ID else None
    if piece != "<|zh|>":
        raise ModelUnavailable(
            f"the tokenizer of {directory} is not SenseVoice's: id {ZH_TAG_ID} is {piece!r}, not '<|zh|>'"
        )
