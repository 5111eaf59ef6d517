"""The command line, run as a user runs it: a real process, many files, good and bad together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata

from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from bot_bridge.chat.messages import ChatMessage, Media
from bot_bridge.cli import cli
from bot_bridge.hearing.model_files import random_bias
from bot_bridge.remembering.store import Store
from tests import audio_fixtures as af
from tests.test_api import BAD_INPUTS, GOOD_FORMATS, assert_valid_result


def bot_bridge(*arguments: str, model_dir, data_dir, **extra_env) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BOT_BRIDGE_")},
        "BOT_BRIDGE_MODEL": str(model_dir),
        "BOT_BRIDGE_DATA_DIR": str(data_dir),
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot_bridge", *arguments], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Every good format and every bad input, as files a user would point the CLI at."""
    folder = tmp_path_factory.mktemp("inputs")
    speech = af.speech_clip(3.0)
    files = {}
    for fmt in GOOD_FORMATS:
        files[f"good-{fmt}.audio"] = (af.encode(speech, 16000, fmt), None)
    for name, (build, code) in BAD_INPUTS.items():
        files[f"bad-{name.replace(' ', '_')}.audio"] = (build(), code)
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return folder, {name: code for name, (_, code) in files.items()}


def test_predict_json_gives_one_object_per_file_and_keeps_going_past_bad_ones(tmp_path, tiny_model_dir, mixed_folder):
    folder, expected = mixed_folder
    paths = [str(folder / name) for name in expected] + [str(folder / "missing.ogg")]

    run = bot_bridge("predict", "--json", *paths, model_dir=tiny_model_dir, data_dir=tmp_path)

    assert run.returncode == 1, run.stderr
    lines = run.stdout.strip().split("\n")
    assert len(lines) == len(paths)  # nothing else on stdout: no funasr banner, no progress bar
    by_file = {os.path.basename(obj["file"]): obj for obj in map(json.loads, lines)}
    for name, code in expected.items():
        if code is None:
            assert_valid_result(by_file[name])
        else:
            assert by_file[name]["error"]["code"] == code, name
            assert by_file[name]["error"]["message"]
    assert by_file["missing.ogg"]["error"]["code"] == "invalid_request"
    assert "file/s" in run.stderr or "%" in run.stderr  # progress bar for many files, on stderr


def test_predict_prints_a_table_row_with_the_result_folder_and_exits_0_when_all_succeed(tmp_path, tiny_model_dir):
    note = tmp_path / "note.ogg"
    note.write_bytes(af.encode(af.speech_clip(3.0), 16000, "ogg_opus"))

    run = bot_bridge("predict", "--granularity", "timeline", "--embedding", str(note), model_dir=tiny_model_dir, data_dir=tmp_path / "d")

    assert run.returncode == 0, run.stderr
    header, row = run.stdout.strip().split("\n")
    assert header.split() == ["EMOTION", "CONFIDENCE", "LENGTH", "FILE", "RESULT"]
    folder = next((tmp_path / "d" / "outputs").iterdir())
    assert row.endswith(str(folder)) and str(note) in row and "%" in row and " s " in row
    saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert saved["timeline"] and (folder / "embedding.npy").exists()


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes: Chinese characters and emoji two, variation selectors none."""
    return sum(0 if char == "\ufe0f" else 2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@pytest.fixture(scope="module")
def a_user_folder(tmp_path_factory):
    """What a user points the CLI at: speech, silence and a text file, and a folder of voice notes with a
    sub-folder and a file that is no audio."""
    root = tmp_path_factory.mktemp("user")
    speech = af.encode(af.speech_clip(3.0), 16000, "ogg_opus")
    (root / "speech.ogg").write_bytes(speech)
    (root / "silence.wav").write_bytes(af.encode(af.silence(2.0), 16000, "wav_s16"))
    (root / "notes.ogg").write_bytes(af.text_as_audio())
    (root / "calls" / "monday").mkdir(parents=True)
    (root / "calls" / "first.m4a").write_bytes(af.encode(af.speech_clip(2.0), 16000, "m4a_aac"))
    (root / "calls" / "monday" / "second.OGG").write_bytes(speech)
    (root / "calls" / "monday" / "transcript.txt").write_text("not audio, not analysed", encoding="utf-8")
    return root


def test_predict_is_quiet_shows_a_table_and_walks_folders(tmp_path, tiny_model_dir, a_user_folder):
    root = a_user_folder
    names = [str(root / "speech.ogg"), str(root / "silence.wav"), str(root / "notes.ogg"), str(root / "calls")]

    run = bot_bridge("predict", *names, model_dir=tiny_model_dir, data_dir=tmp_path / "d")

    assert run.returncode == 1, run.stderr  # notes.ogg is no audio
    for noise in ("setup plugin", "ffmpeg", "model hub", "funasr", " INFO "):
        assert noise not in run.stderr, noise
    assert run.stderr.count("RANDOM WEIGHTS") == 1, run.stderr  # one notice per run, on stderr
    lines = run.stdout.rstrip("\n").split("\n")
    header, rows = lines[0], {line.split()[-1] if "not_audio" not in line else "notes.ogg": line for line in lines[1:]}
    assert header.split()[0] == "EMOTION" and len(lines) == 1 + 5, run.stdout
    assert "RANDOM" not in run.stdout and "TEST MODEL" not in run.stdout and "audio refused" not in run.stdout
    folders = sorted((tmp_path / "d" / "outputs").iterdir())
    assert len(folders) == 4  # speech, silence, and the two in calls/; not the text file nor transcript.txt
    for folder in folders:
        row = rows[str(folder)]
        saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        assert saved["file_name"] in row
        assert ("No speech" in row) == (saved["reason"] == "no_speech")
    assert any("calls/monday/second.OGG" in row for row in rows.values())
    assert "not_audio" in rows["notes.ogg"] and "This is not an audio file" in rows["notes.ogg"]
    columns = {cells(line[: line.index(" s ")]) for line in lines[1:] if " s " in line}
    assert len(columns) == 1, "the table's columns line up, whatever the width of the Chinese names and emoji"


def test_predict_v_shows_what_it_does_and_json_walks_folders_too(tmp_path, tiny_model_dir, a_user_folder):
    run = bot_bridge("predict", "-v", "--json", str(a_user_folder / "calls"), model_dir=tiny_model_dir, data_dir=tmp_path)

    assert run.returncode == 0, run.stderr
    assert " INFO bot_bridge.hearing.model: " in run.stderr
    objects = [json.loads(line) for line in run.stdout.strip().split("\n")]
    assert sorted(os.path.basename(obj["file"]) for obj in objects) == ["first.m4a", "second.OGG"]


def test_a_folder_without_audio_is_said_not_silently_passed(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    run = bot_bridge("predict", str(tmp_path / "empty"), model_dir=tiny_model_dir, data_dir=tmp_path / "d")
    assert run.returncode == 2
    assert "no audio files" in run.stderr and str(tmp_path / "empty") in run.stderr


def test_a_model_that_cannot_be_loaded_is_reported_with_its_fix(tmp_path):
    note = tmp_path / "note.wav"
    note.write_bytes(af.encode(af.speech_clip(1.0), 16000, "wav_s16"))

    run = bot_bridge("predict", str(note), model_dir=tmp_path / "absent", data_dir=tmp_path)

    assert run.returncode == 1
    assert "the model cannot be loaded" in run.stderr and "does not exist" in run.stderr


def test_invalid_settings_name_the_setting(tmp_path, tiny_model_dir):
    run = bot_bridge("predict", "x.wav", model_dir=tiny_model_dir, data_dir=tmp_path, BOT_BRIDGE_DEVICE="gpu")
    assert run.returncode != 0
    assert "BOT_BRIDGE_DEVICE" in run.stderr and "model.device" in run.stderr


def test_make_random_writes_a_marked_model_biased_as_asked(tmp_path):
    run = bot_bridge("model", "make-random", "--preset", "tiny", "--bias", "angry=3", "--bias", "Sad=-1.5",
                     str(tmp_path / "m"), model_dir="unused", data_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "RANDOM-WEIGHT" in run.stdout and "biased angry=3, Sad=-1.5" in run.stdout
    marker = (tmp_path / "m" / "RANDOM_WEIGHTS").read_text(encoding="utf-8")
    assert "MEANINGLESS" in marker and "angry +3, sad -1.5" in marker
    assert random_bias(tmp_path / "m") == {"angry": 3.0, "sad": -1.5}


@pytest.mark.parametrize(("bias", "named"), [("angri=3", "not an emotion; choose from angry, disgusted"),
                                             ("angry=loud", "'angry=loud' is not EMOTION=OFFSET")])
def test_make_random_refuses_a_bias_it_cannot_apply_and_writes_nothing(tmp_path, bias, named):
    run = CliRunner().invoke(cli, ["model", "make-random", "--preset", "tiny", "--bias", bias, str(tmp_path / "m")])

    assert run.exit_code == 2 and "--bias" in run.output and named in run.output
    assert not (tmp_path / "m").exists()


def test_chat_status_counts_notes_per_platform_and_state_then_lists_the_failures(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bot-bridge.db'}", tmp_path / "outputs")
    replied, failed, _queued = (store.record_voice_note(_message(platform, n))[0]
                                for n, platform in enumerate(("telegram", "slack", "telegram")))
    store.claim_voice_note(replied, "w", lease_s=60)
    store.save_reply(replied, "w", "😐 Neutral · 60%", result_id=None, error_code=None, error_detail=None)
    store.mark_sending(replied, "w")
    store.mark_replied(replied, "m1")
    store.claim_voice_note(failed, "w", lease_s=60)
    store.fail_voice_note(failed, "w", "send_failed", "slack chat.postMessage: HTTP 500 after 4 tries")
    store.close()

    run = CliRunner().invoke(cli, ["chat", "status"], env={"BOT_BRIDGE_DATA_DIR": str(tmp_path)})

    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert lines[:3] == ["slack      failed       1", "telegram   queued       1", "telegram   replied      1"]
    assert lines[3].startswith(f"failed slack note {failed} (chat C2, ")
    assert lines[3].endswith("send_failed: slack chat.postMessage: HTTP 500 after 4 tries") and len(lines) == 4


def _message(platform: str, number: int) -> ChatMessage:
    return ChatMessage(platform=platform, delivery_id=f"d{number}", kind="voice", chat_id=f"C{number + 1}",
                       media=Media(ref=f"file-{number}"), received_at=datetime.now(timezone.utc))
