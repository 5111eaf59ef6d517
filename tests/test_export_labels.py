"""``bot-bridge export-labels DIR`` end to end: notes analysed by the real (random-weight) model, labelled
on the console's result pages, exported by the command as a user runs it, and read back as a training
script would: ``labels.csv``, the audio as received, ``embeddings.npy`` row for row."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.remembering.label_export import CSV_COLUMNS
from tests.audio_fixtures import encode, silence, speech_clip
from tests.console_helpers import app, browser, csrf_from  # noqa: F401 - fixtures
from tests.test_console import chat_voice_note

PERSONAL = ("客服群 Support", "Alice", "alice", "call with Mr Wang.ogg", "-1001")


def export(data_dir, folder) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BOT_BRIDGE_")}, "BOT_BRIDGE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "bot_bridge", "export-labels", str(folder)], env=env,
                          capture_output=True, text=True, timeout=120)


def label(browser, result_id: str, **form) -> None:
    token = csrf_from(browser.get(f"/results/{result_id}").get_data(as_text=True))
    answer = browser.post(f"/results/{result_id}/label", data={"csrf_token": token, **form})
    assert answer.status_code == 303, answer.get_data(as_text=True)


@pytest.fixture
def labelled(browser, service):
    """Four analysed notes, three labelled: a chat note, an upload, and an upload without speech (so without
    an embedding) analysed with audio.keep_audio off; the fourth unlabelled."""
    ogg = encode(speech_clip(3.0), 16000, "ogg_opus")
    wav = encode(speech_clip(2.0), 16000, "wav_s16")
    chat = service.analyse(ogg, file_name="voice.ogg", timeline=True, embedding=True, origin="telegram")
    chat_voice_note(service, chat.id)
    upload = service.analyse(wav, file_name="call with Mr Wang.ogg", embedding=True, origin="console")
    service.settings.audio.keep_audio = False
    unkept = service.analyse(encode(silence(2.0), 16000, "wav_s16"), file_name="quiet.wav", origin="api")
    service.analyse(wav, file_name="never labelled.wav")
    label(browser, chat.id, emotion=chat.emotion, verdict="corrected", correct="angry")
    label(browser, upload.id, emotion=upload.emotion, verdict="rejected")
    label(browser, unkept.id, emotion=unkept.emotion, verdict="confirmed")
    return {"chat": (chat, ogg), "upload": (upload, wav), "unkept": (unkept, None)}


def test_the_export_holds_each_labelled_note_with_its_audio_label_scores_and_embedding(service, labelled, tmp_path):
    folder = tmp_path / "dataset"

    run = export(service.settings.data_dir, folder)

    assert run.returncode == 0, run.stderr
    assert "3 labelled note(s) written" in run.stdout and "2 recording(s) in audio/; 1 without" in run.stdout
    with (folder / "labels.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["result_id"] for row in rows] == [labelled[key][0].id for key in ("chat", "upload", "unkept")]
    chat, upload, unkept = rows

    assert (chat["verdict"], chat["labelled_emotion"], chat["true_emotion"]) == \
        ("corrected", labelled["chat"][0].emotion, "angry")
    assert (upload["verdict"], upload["true_emotion"], unkept["verdict"], unkept["true_emotion"]) == \
        ("rejected", "", "confirmed", labelled["unkept"][0].emotion)
    assert (chat["platform"], upload["platform"], unkept["platform"]) == ("telegram", "console", "api")
    assert chat["labelled_via"] == "console" and chat["random_weights"] == "true"
    assert [row["no_speech"] for row in rows] == ["false", "false", "true"]
    for row, key in zip(rows, ("chat", "upload", "unkept")):
        result = labelled[key][0]
        assert row["model_emotion"] == result.emotion
        assert [float(row[f"score_{emotion}"]) for emotion in EMOTION_KEYS] == \
            pytest.approx([result.scores[emotion] for emotion in EMOTION_KEYS], abs=1e-6)
        assert float(row["duration_s"]) == pytest.approx(result.duration_s)

    assert (folder / chat["audio_file"]).read_bytes() == labelled["chat"][1]
    assert chat["audio_file"] == f"audio/{chat['result_id']}.ogg"
    assert (folder / upload["audio_file"]).read_bytes() == labelled["upload"][1]
    assert unkept["audio_file"] == "" and sorted(os.listdir(folder / "audio")) == sorted(
        [chat["audio_file"][6:], upload["audio_file"][6:]])

    embeddings = np.load(folder / "embeddings.npy")
    assert embeddings.shape == (3, len(labelled["chat"][0].embedding)) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings[0], service.store.embedding(chat["result_id"]))
    np.testing.assert_allclose(embeddings[1], service.store.embedding(upload["result_id"]))
    assert np.isnan(embeddings[2]).all()
    assert [row["has_embedding"] for row in rows] == ["true", "true", "false"]

    written = (folder / "labels.csv").read_text(encoding="utf-8")
    assert not [name for name in PERSONAL if name in written]


def test_it_never_writes_into_a_folder_that_holds_something(service, labelled, tmp_path):
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "labels.csv").write_text("from before", encoding="utf-8")

    run = export(service.settings.data_dir, folder)

    assert run.returncode == 1 and "is not an empty folder" in run.stderr
    assert (folder / "labels.csv").read_text(encoding="utf-8") == "from before"


def test_with_no_labels_it_writes_an_empty_table_and_says_so(service, tmp_path):
    run = export(service.settings.data_dir, tmp_path / "none")

    assert run.returncode == 0, run.stderr
    assert "0 labelled note(s)" in run.stdout and "embeddings: none" in run.stdout
    assert (tmp_path / "none" / "labels.csv").read_text(encoding="utf-8").strip() == ",".join(CSV_COLUMNS)
