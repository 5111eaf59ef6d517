"""One recording in, one ``Result`` out: decode -> voice activity -> model -> transcriber.

A voice note of up to ``max_chunk_s`` (30 s) goes to the model whole, so its
utterance scores are exactly funasr's. Longer audio is cut at pauses into
chunks of at most 30 s, because emotion2vec's attention cost and its cached
ALiBi bias grow with the square of the length (~2.3 GB at 120 s). The
utterance scores and the embedding of a long recording are then the
duration-weighted means over its chunks.

The timeline pools the encoder's frames (50 per second) into 1 s windows
with a 0.5 s hop and applies the model's own linear head to each window:
one forward pass for the whole recording, not one per window. A window that
is less than half speech is "no speech" (unknown), as a silent recording is:
its scores would be the model's reading of the pause. ``frames`` scores each
encoder frame with the head alone (the API's ``granularity=frame``).

A long recording takes a while; ``progress`` hears of each stage as it starts
(chunk n of m for the model), so the console can say what is going on.

The transcriber (SenseVoice, when given) hears the same decoded samples and
the same chunks: one decode and one voice activity pass serve both models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..emotions import EMOTION_KEYS
from ..remembering.results import NO_SPEECH, NO_SPEECH_SCORES, Frames, Result, Window, scores_from_vector
from .audio import AudioLimits, DecodedAudio, decode
from .model import EmotionModel
from .transcriber import Transcriber, transcribe
from .vad import SpeechMap, detect_speech, split_at_pauses

WINDOW_S = 1.0
HOP_S = 0.5
# emotion2vec's frame i sees samples [320 i, 320 i + 400) of 16 kHz audio: 50 frames a second.
FRAME_HOP = 320
FRAME_WIDTH = 400
# Less speech than this in the whole recording is "no speech": a cough or a click, not a voice.
MIN_SPEECH_S = 0.25

# Told each stage as it starts: ("decode"), ("vad"), ("model", chunk n, of m chunks), then ("transcribe").
Progress = Callable[..., None]


def no_progress(stage: str, step: int = 0, steps: int = 0) -> None:
    """The ``Progress`` of an analysis nobody watches."""


@dataclass(frozen=True)
class AnalysisOptions:
    timeline: bool = False
    embedding: bool = False  # the utterance embedding; with ``frames``, the frame embeddings too
    frames: bool = False
    max_chunk_s: float = 30.0
    limits: AudioLimits = AudioLimits()


def analyse(
    source: bytes | str,
    model: EmotionModel,
    options: AnalysisOptions = AnalysisOptions(),
    *,
    file_name: str | None = None,
    origin: str = "api",
    progress: Progress = no_progress,
    transcriber: Transcriber | None = None,
) -> Result:
    """Analyse one recording, and transcribe it when a ``transcriber`` is given.

    Raises ``AudioError`` for input that cannot be used. Decoding, voice
    activity and both models run in this thread's turn with the cores
    (``EmotionModel.cpu_turn``); the wait for it is ``model_wait``.
    ``progress`` hears of each stage as it starts, for people watching a long one.
    """
    started, waited_s = time.perf_counter(), model.waited_s()
    with model.cpu_turn():
        timings = {"model_wait": (model.waited_s() - waited_s) * 1000.0}
        result = _analyse(source, model, transcriber, options, file_name, origin, timings, progress)
    timings["total"] = _ms_since(started)
    result.timings_ms = timings
    return result


def _analyse(
    source: bytes | str, model: EmotionModel, transcriber: Transcriber | None, options: AnalysisOptions,
    file_name: str | None, origin: str, timings: dict[str, float], progress: Progress,
) -> Result:
    started = time.perf_counter()
    progress("decode")
    audio = decode(source, options.limits)
    timings["decode"] = _ms_since(started)

    mark = time.perf_counter()
    progress("vad")
    speech = detect_speech(audio.samples, audio.sample_rate)
    timings["vad"] = _ms_since(mark)

    log = [
        f"decoded {audio.duration_s:.1f} s of {audio.codec} "
        f"({audio.source_rate} Hz, {audio.source_channels} ch) -> 16 kHz mono",
        f"speech {speech.ratio:.0%} of the recording",
    ]
    result = Result(
        scores={},
        duration_s=audio.duration_s,
        speech_ratio=speech.ratio,
        model=model.info.to_dict(),
        audio=_describe(audio),
        file_name=file_name,
        origin=origin,
        log=log,
    )
    chunks = split_at_pauses(speech, audio.duration_s, options.max_chunk_s)
    if speech.ratio * audio.duration_s < MIN_SPEECH_S:
        result.scores = dict(NO_SPEECH_SCORES)
        result.reason = NO_SPEECH
        if options.timeline:
            result.timeline = [
                Window(start, end, dict(NO_SPEECH_SCORES), _speech_share(speech, start, end))
                for start, end in _windows(audio.duration_s)
            ]
        if options.frames:
            result.frames = _silent_frames(len(audio.samples), audio.sample_rate)
        log.append("no speech heard: emotion unknown, model not run")
    else:
        mark = time.perf_counter()
        _run_model(audio, speech, chunks, model, options, result, progress)
        timings["model"] = _ms_since(mark)
    if transcriber is not None:
        mark = time.perf_counter()
        progress("transcribe")
        heard = speech if result.reason is None else SpeechMap(0.0, [])
        result.transcript = transcribe(transcriber, audio.samples, chunks, heard)
        timings["transcribe"] = _ms_since(mark)
        _log_transcript(result)
    return result


def _run_model(
    audio: DecodedAudio, speech: SpeechMap, chunks: list[tuple[float, float]], model: EmotionModel,
    options: AnalysisOptions, result: Result, progress: Progress,
) -> None:
    frame_features, frame_times, chunk_means, chunk_seconds = [], [], [], []
    for number, (start, end) in enumerate(chunks, start=1):
        progress("model", number, len(chunks))
        samples = audio.samples[int(start * audio.sample_rate) : int(end * audio.sample_rate)]
        features = model.frame_features(samples)
        frame_features.append(features)
        frame_times.append(start + (np.arange(len(features)) * FRAME_HOP + FRAME_WIDTH / 2) / audio.sample_rate)
        chunk_means.append(features.mean(axis=0))
        chunk_seconds.append(end - start)

    weights = np.asarray(chunk_seconds) / sum(chunk_seconds)
    chunk_scores = model.classify(np.stack(chunk_means))
    result.scores = scores_from_vector(weights @ chunk_scores)
    result.embedding = (weights @ np.stack(chunk_means)).astype(np.float32)
    if len(chunks) > 1:
        result.log.append(f"split at pauses into {len(chunks)} chunks of at most {options.max_chunk_s:.0f} s")
    result.log.append(f"model {result.model['name']} on {model.info.device}: {result.emotion}")

    if not (options.timeline or options.frames):
        return
    features, times = np.concatenate(frame_features), np.concatenate(frame_times)
    if options.timeline:
        result.timeline = _timeline(features, times, audio.duration_s, speech, model)
    if options.frames:
        result.frames = Frames(times, model.classify(features), _in_speech(speech, times))
        if options.embedding:
            result.frame_embeddings = features.astype(np.float32)


def _timeline(
    features: np.ndarray, times: np.ndarray, duration_s: float, speech: SpeechMap, model: EmotionModel
) -> list[Window]:
    windows = _windows(duration_s)
    pooled = []
    for start, end in windows:
        inside = (times >= start) & (times < end)
        if not inside.any():  # a window shorter than one frame at the very end
            inside = np.abs(times - (start + end) / 2) == np.abs(times - (start + end) / 2).min()
        pooled.append(features[inside].mean(axis=0))
    scores = model.classify(np.stack(pooled))
    timeline = []
    for (start, end), row in zip(windows, scores):
        window = Window(start, end, scores_from_vector(row), _speech_share(speech, start, end))
        if not window.has_speech:
            window.scores = dict(NO_SPEECH_SCORES)
        timeline.append(window)
    return timeline


def _log_transcript(result: Result) -> None:
    """Say how much was transcribed, never what: the words are personal data."""
    transcript = result.transcript
    line = (f"transcript: {len(transcript.text)} characters in {len(transcript.segments)} segment(s)"
            f", language {transcript.language or 'not heard'} (SenseVoice {transcript.model['name']})")
    if transcript.random_weights:
        line += "; RANDOM WEIGHTS: the words are MEANINGLESS"
    if transcript.sensevoice_emotion not in (None, result.emotion) and result.reason is None:
        line += f"; SenseVoice hears {transcript.sensevoice_emotion}, emotion2vec {result.emotion}"
    result.log.append(line)


def _windows(duration_s: float) -> list[tuple[float, float]]:
    """1 s windows every 0.5 s from 0 to the end; the last one ends exactly at ``duration_s``."""
    if duration_s <= WINDOW_S:
        return [(0.0, duration_s)]
    starts = np.arange(0.0, duration_s - WINDOW_S + 1e-9, HOP_S)
    windows = [(float(s), float(s) + WINDOW_S) for s in starts]
    if windows[-1][1] < duration_s - 1e-9:
        windows.append((duration_s - WINDOW_S, duration_s))
    return windows


def _in_speech(speech: SpeechMap, times: np.ndarray) -> np.ndarray:
    """Which of ``times`` fall inside a speech segment."""
    inside = np.zeros(len(times), dtype=bool)
    for start, end in speech.segments:
        inside |= (times >= start) & (times < end)
    return inside


def _silent_frames(samples: int, sample_rate: int) -> Frames:
    """The frames the model would have made of a recording without speech, all unknown."""
    count = max(0, (samples - FRAME_WIDTH) // FRAME_HOP + 1)
    unknown = np.array([NO_SPEECH_SCORES[key] for key in EMOTION_KEYS])
    times = (np.arange(count) * FRAME_HOP + FRAME_WIDTH / 2) / sample_rate
    return Frames(times, np.tile(unknown, (count, 1)), np.zeros(count, dtype=bool))


def _speech_share(speech: SpeechMap, start: float, end: float) -> float:
    overlap = sum(max(0.0, min(end, e) - max(start, s)) for s, e in speech.segments)
    return overlap / (end - start) if end > start else 0.0


def _describe(audio: DecodedAudio) -> dict:
    return {
        "container": audio.container,
        "codec": audio.codec,
        "sample_rate": audio.source_rate,
        "channels": audio.source_channels,
        "size_bytes": audio.size_bytes,
    }


def _ms_since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000.0
