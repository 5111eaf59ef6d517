"""The result of analysing one recording, and its JSON form.

The JSON form is a public contract (HTTP API, CLI ``--json``, ``result.json``
in the output folder, chat replies and the web console all read it), so its
keys only ever gain members. The embedding is kept out of the JSON unless
asked for: 1024 floats would dwarf everything else, and it is also offered
as ``embedding.npy``.

The transcript (what was said, by SenseVoice) lives in the same JSON, so it
is stored with its result and deleted with it, and nowhere else. It is
``null`` when no transcript was asked for or SenseVoice is not available.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..emotions import BY_KEY, EMOTION_KEYS

NO_SPEECH = "no_speech"
# A timeline window tells how the voice sounds only when the voice is most of it. Its scores are the
# model's head applied to the mean of the window's frames, so in a window that is mostly pause they
# are mostly the model's reading of silence (a 3-minute note had 75 windows of pure silence read as
# "fearful"). Below this share of speech (by the voice activity detector) a window is "no speech".
WINDOW_MIN_SPEECH = 0.5
NO_SPEECH_SCORES = {key: float(key == "unknown") for key in EMOTION_KEYS}
RANDOM_TRANSCRIPT = "RANDOM WEIGHTS: SenseVoice was not trained, these words are MEANINGLESS"


@dataclass
class Window:
    """One step of the timeline: scores of the frames between ``start`` and ``end`` seconds.

    A window without speech (``has_speech`` false) holds ``NO_SPEECH_SCORES``: unknown, as a whole
    recording without speech is.
    """

    start: float
    end: float
    scores: dict[str, float]
    speech: float  # fraction of the window the voice activity detector marked as speech

    @property
    def emotion(self) -> str:
        return top_emotion(self.scores)[0]

    @property
    def has_speech(self) -> bool:
        return self.speech >= WINDOW_MIN_SPEECH

    def to_dict(self) -> dict:
        emotion, confidence = top_emotion(self.scores)
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "emotion": emotion,
            "confidence": round(confidence, 6),
            "speech": round(self.speech, 3),
            "reason": None if self.has_speech else NO_SPEECH,
            "scores": _rounded(self.scores),
        }


@dataclass
class Frames:
    """The model's own frames (50 a second), each scored by the model's head alone: ``granularity=frame``.

    ``scores`` has one row per frame and one column per emotion of ``EMOTION_KEYS``. A frame the
    voice activity detector did not hear as speech is ``unknown`` in ``emotions``, as a timeline
    window without speech is; its scores are still the model's, for whoever studies them.
    """

    times: np.ndarray  # (T,) centre of each frame, seconds from the start of the recording
    scores: np.ndarray  # (T, 9) probabilities
    speech: np.ndarray  # (T,) bool

    RATE_HZ = 50

    @property
    def emotions(self) -> list[str]:
        tops = [EMOTION_KEYS[column] for column in np.argmax(self.scores, axis=1)] if len(self.scores) else []
        return [top if spoken else "unknown" for top, spoken in zip(tops, self.speech)]

    def to_dict(self) -> dict:
        return {
            "rate_hz": self.RATE_HZ,
            "emotions": list(EMOTION_KEYS),
            "times": [round(float(t), 4) for t in self.times],
            "speech": [int(spoken) for spoken in self.speech],
            "emotion": self.emotions,
            "scores": [[round(float(v), 4) for v in row] for row in self.scores],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Frames":
        columns = [data["emotions"].index(key) for key in EMOTION_KEYS]
        scores = np.asarray(data["scores"], dtype=np.float64).reshape(-1, len(data["emotions"]))[:, columns]
        return cls(np.asarray(data["times"], dtype=np.float64), scores, np.asarray(data["speech"], dtype=bool))

@dataclass
class Segment:
    """What was said in one stretch of the recording (a pause-split chunk), with SenseVoice's tags for it."""

    start: float
    end: float
    text: str
    language: str | None = None
    emotion: str | None = None  # one of EMOTION_KEYS, as SenseVoice heard it
    event: str | None = None  # SenseVoice's audio event: Speech, Laughter, BGM, Applause, Cry, ...

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "language": self.language,
            "emotion": self.emotion,
            "event": self.event,
        }


@dataclass
class Transcript:
    """The words of a recording: its segments' text joined, with the language, emotion and events heard."""

    text: str
    language: str | None
    segments: list[Segment]
    events: list[str]
    sensevoice_emotion: str | None
    model: dict

    @property
    def random_weights(self) -> bool:
        return bool(self.model.get("random_weights"))

    def to_dict(self) -> dict:
        data = {
            "text": self.text,
            "language": self.language,
            "segments": [segment.to_dict() for segment in self.segments],
            "events": self.events,
            "sensevoice_emotion": self.sensevoice_emotion,
            "model": self.model,
            "random_weights": self.random_weights,
        }
        if self.random_weights:
            data["warning"] = RANDOM_TRANSCRIPT
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Transcript":
        return cls(
            text=data["text"],
            language=data.get("language"),
            segments=[
                Segment(s["start"], s["end"], s["text"], s.get("language"), s.get("emotion"), s.get("event"))
                for s in data.get("segments", [])
            ],
            events=list(data.get("events", [])),
            sensevoice_emotion=data.get("sensevoice_emotion"),
            model=data.get("model", {}),
        )


@dataclass
class Result:
    scores: dict[str, float]
    duration_s: float
    speech_ratio: float
    model: dict
    audio: dict = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    timeline: list[Window] | None = None
    frames: Frames | None = None
    embedding: np.ndarray | None = None
    # (T, D) float32 encoder frames, beside ``frames``: too big for the JSON, kept as frame_embeddings.npy.
    # Only the process that analysed the recording holds them; ``has_frame_embeddings`` tells the others.
    frame_embeddings: np.ndarray | None = None
    has_frame_embeddings: bool = False
    transcript: Transcript | None = None
    file_name: str | None = None
    origin: str = "api"
    log: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def emotion(self) -> str:
        return top_emotion(self.scores)[0]

    @property
    def confidence(self) -> float:
        return top_emotion(self.scores)[1]

    @property
    def random_weights(self) -> bool:
        return bool(self.model.get("random_weights"))

    def runner_up(self) -> tuple[str, float]:
        ranked = sorted(self.scores.items(), key=lambda item: item[1], reverse=True)
        return ranked[1]

    def to_dict(self, include_embedding: bool = False) -> dict:
        emotion = BY_KEY[self.emotion]
        data = {
            "id": self.id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "origin": self.origin,
            "file_name": self.file_name,
            "emotion": emotion.key,
            "emoji": emotion.emoji,
            "label_zh": emotion.zh,
            "label_en": emotion.en,
            "confidence": round(self.confidence, 6),
            "scores": _rounded(self.scores),
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
            "speech_ratio": round(self.speech_ratio, 3),
            "random_weights": self.random_weights,
            "model": self.model,
            "audio": self.audio,
            "timings_ms": {stage: round(ms, 1) for stage, ms in self.timings_ms.items()},
            "log": self.log,
            "has_embedding": self.embedding is not None,
            "has_frame_embeddings": self.has_frame_embeddings or self.frame_embeddings is not None,
            "transcript": None if self.transcript is None else self.transcript.to_dict(),
        }
        if self.timeline is not None:
            data["timeline"] = [window.to_dict() for window in self.timeline]
        if self.frames is not None:
            data["frames"] = self.frames.to_dict()
        if include_embedding and self.embedding is not None:
            data["embedding"] = [round(float(v), 7) for v in self.embedding]
        return data

    @classmethod
    def from_dict(cls, data: dict, embedding: np.ndarray | None = None) -> "Result":
        timeline = data.get("timeline")
        transcript = data.get("transcript")
        return cls(
            id=data["id"],
            created_at=datetime.fromisoformat(data["created_at"]),
            origin=data.get("origin", "api"),
            file_name=data.get("file_name"),
            scores={key: float(data["scores"][key]) for key in EMOTION_KEYS},
            reason=data.get("reason"),
            duration_s=data["duration_s"],
            speech_ratio=data["speech_ratio"],
            model=data["model"],
            audio=data.get("audio", {}),
            timings_ms=data.get("timings_ms", {}),
            log=data.get("log", []),
            timeline=None
            if timeline is None
            else [Window(w["start"], w["end"], w["scores"], w.get("speech", 1.0)) for w in timeline],
            frames=Frames.from_dict(data["frames"]) if "frames" in data else None,
            embedding=embedding,
            has_frame_embeddings=bool(data.get("has_frame_embeddings")),
            transcript=None if transcript is None else Transcript.from_dict(transcript),
        )


def top_emotion(scores: dict[str, float]) -> tuple[str, float]:
    """The highest-scoring emotion; ties go to the earlier one in ``EMOTION_KEYS``."""
    key = max(EMOTION_KEYS, key=lambda k: scores.get(k, 0.0))
    return key, float(scores.get(key, 0.0))


def scores_from_vector(vector: np.ndarray) -> dict[str, float]:
    return {key: float(value) for key, value in zip(EMOTION_KEYS, vector)}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {key: round(float(scores[key]), 6) for key in EMOTION_KEYS}
