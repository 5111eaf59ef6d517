"""``export-labels``: the labelled notes as a data set, to fine-tune a classifier head on a team's own voices.

What people said about the notes they listened to is the one data set no
public corpus has: these speakers, these phones, this line of work. The
export is a folder a training script reads with two calls
(``csv.DictReader``/``pandas.read_csv`` and ``numpy.load``):

* ``labels.csv``: one row per labelled result, oldest first, with its newest
  label (``CSV_COLUMNS``): what the label says, what the model said (its
  emotion, confidence and the nine scores), where and when the note came
  from, its length. No personal data: no names of senders, chats or
  labellers, no file names people chose, no chat or user ids.
* ``audio/<result id><suffix>``: the recording as received, where it was kept
  (``audio.keep_audio``) and this host holds it; otherwise the row's
  ``audio_file`` is empty.
* ``embeddings.npy`` (float32, one row per CSV row, in the same order): the
  utterance embedding the model computed for each result (the database keeps
  it whether or not ``embedding=true`` asked for the file). Rows of results
  without one (no speech was heard, so the model did not run) or with one of
  another size (another model) are NaN, and their ``has_embedding`` is
  ``false``. No file when no result has one.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..emotions import EMOTION_KEYS
from .labels import Labels, LabelledResult
from .results import NO_SPEECH
from .store import Store, _embedding

CSV_FILE = "labels.csv"
EMBEDDINGS_FILE = "embeddings.npy"
AUDIO_DIR = "audio"
CSV_COLUMNS = (
    "result_id",
    "audio_file",  # relative to the export folder; empty when the recording was not kept
    "verdict",  # confirmed, rejected or corrected
    "labelled_emotion",  # what the label is about: the emotion the note was flagged or labelled with
    "true_emotion",  # the emotion people said it is; empty when they only said what it is not
    "labelled_at",
    "labelled_via",  # console, cli or a chat platform
    "model_emotion",
    "model_confidence",
    *(f"score_{key}" for key in EMOTION_KEYS),
    "no_speech",  # true when no speech was heard (the scores then mean nothing)
    "platform",  # the chat platform the note came from; for an upload, how: api, console or cli
    "received_at",  # when the chat note arrived; for uploads, when it was analysed
    "duration_s",
    "speech_ratio",
    "model_name",
    "random_weights",
    "has_embedding",
)


class ExportError(Exception):
    """The export cannot be written where asked; the message says why."""


@dataclass(frozen=True)
class ExportSummary:
    folder: Path
    rows: int
    with_audio: int
    with_embedding: int
    embedding_dim: int | None
    other_embeddings: int  # results whose embedding had another size, left out of embeddings.npy


def export_labels(store: Store, folder: Path) -> ExportSummary:
    """Write the labelled results into ``folder`` (new, or empty); what was written."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportError(f"{folder} is not an empty folder; name a new one, so that no earlier export is mixed in")
    labelled = Labels(store).labelled(embeddings=True)
    (folder / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    embeddings = [_embedding(item.result) for item in labelled]
    sizes = Counter(len(vector) for vector in embeddings if vector is not None)
    dim = sizes.most_common(1)[0][0] if sizes else None
    kept = [vector is not None and len(vector) == dim for vector in embeddings]
    with_audio = 0
    with (folder / CSV_FILE).open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for item, has_embedding in zip(labelled, kept):
            audio = _copy_audio(item, folder)
            with_audio += bool(audio)
            writer.writerow(_row(item, audio, has_embedding))
    if dim is not None:
        matrix = np.full((len(labelled), dim), np.nan, dtype=np.float32)
        for index, (vector, has_embedding) in enumerate(zip(embeddings, kept)):
            if has_embedding:
                matrix[index] = vector
        np.save(folder / EMBEDDINGS_FILE, matrix)
    return ExportSummary(folder, len(labelled), with_audio, sum(kept), dim,
                         sum(vector is not None for vector in embeddings) - sum(kept))


def _copy_audio(item: LabelledResult, folder: Path) -> str:
    """The recording's path in the export, or "" when it was not kept (or this host does not hold it)."""
    source = Path(item.result.audio_file) if item.result.audio_file else None
    if source is None or not source.is_file():
        return ""
    name = f"{AUDIO_DIR}/{item.result.id}{source.suffix}"
    shutil.copyfile(source, folder / name)
    return name


def _row(item: LabelledResult, audio: str, has_embedding: bool) -> dict:
    label, result, note = item.label, item.result, item.note
    return {
        "result_id": result.id,
        "audio_file": audio,
        "verdict": label.verdict,
        "labelled_emotion": label.emotion,
        "true_emotion": label.correct or "",
        "labelled_at": label.at.isoformat(),
        "labelled_via": label.via,
        "model_emotion": result.emotion,
        "model_confidence": result.confidence,
        **{f"score_{key}": result.scores.get(key, 0.0) for key in EMOTION_KEYS},
        "no_speech": _flag(result.reason == NO_SPEECH),
        "platform": note.platform if note is not None else result.origin,
        "received_at": (note.received_at if note is not None else result.created_at).isoformat(),
        "duration_s": result.duration_s,
        "speech_ratio": result.speech_ratio,
        "model_name": result.model_name,
        "random_weights": _flag(result.random_weights),
        "has_embedding": _flag(has_embedding),
    }


def _flag(value: bool) -> str:
    return "true" if value else "false"
