"""The store keeps results the same way on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timezone

import numpy as np
import pytest

from bot_bridge.remembering.results import Result, Window
from bot_bridge.remembering.store import Store


def sample_result(**changes) -> Result:
    scores = {"angry": 0.6, "disgusted": 0.05, "fearful": 0.05, "happy": 0.05, "neutral": 0.1,
              "other": 0.05, "sad": 0.05, "surprised": 0.04, "unknown": 0.01}
    values = dict(
        scores=scores,
        duration_s=12.5,
        speech_ratio=0.9,
        model={"name": "test", "random_weights": True},
        timeline=[Window(0.0, 1.0, scores, 1.0)],
        embedding=np.arange(8, dtype=np.float32) / 8,
        file_name="电话录音.amr",
        origin="cli",
    )
    return Result(**{**values, **changes})


def test_a_result_round_trips_with_its_embedding(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    result = sample_result()

    folder = store.save_result(result, audio=b"#!AMR\n...", audio_suffix=".amr", embedding_file=True)
    loaded = store.result(result.id)

    assert loaded.to_dict() == result.to_dict()
    assert loaded.created_at.tzinfo == timezone.utc
    assert np.array_equal(store.embedding(result.id), result.embedding)
    assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["id"] == result.id
    assert np.array_equal(np.load(folder / "embedding.npy"), result.embedding)
    assert (folder / "audio.amr").read_bytes() == b"#!AMR\n..."
    assert folder.name.endswith(f"_{result.id}") and folder.name[:15].replace("_", "").isdigit()
    store.close()


def test_opening_a_store_again_keeps_its_data_and_migrations_are_idempotent(database_url, tmp_path):
    first = Store(database_url, tmp_path / "outputs")
    result = sample_result()
    first.save_result(result)
    first.close()

    second = Store(database_url, tmp_path / "outputs")

    assert second.result(result.id).emotion == "angry"
    second.close()


def test_a_result_without_speech_has_no_embedding(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    silent = sample_result(embedding=None, reason="no_speech",
                           scores={k: float(k == "unknown") for k in sample_result().scores})
    store.save_result(silent)

    assert store.embedding(silent.id) is None
    assert store.result(silent.id).emotion == "unknown"
    store.close()


def test_naive_timestamps_are_refused_and_leave_nothing_behind(tmp_path):
    from datetime import datetime

    store = Store(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "o")
    with pytest.raises(Exception, match="naive"):
        store.save_result(sample_result(created_at=datetime(2026, 1, 1)))
    assert list((tmp_path / "o").iterdir()) == [], "no folder is left without its row"


def test_names_longer_than_their_column_are_cut_not_refused(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    long_name = "语音" * 400 + ".amr"
    result = sample_result(file_name=long_name)

    store.save_result(result)

    row = store.result_row(result.id)
    assert len(row.file_name) == 512 and row.file_name.endswith("…")
    assert store.result(result.id).file_name == long_name  # the result itself keeps the whole name
    store.close()

