"""The command line, run as a user runs it: a real process, many files, good and bad together."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_predict_prints_a_friendly_line_and_exits_0_when_all_succeed(tmp_path, tiny_model_dir):
    note = tmp_path / "note.ogg"
    note.write_bytes(af.encode(af.speech_clip(3.0), 16000, "ogg_opus"))

    run = bot_bridge("predict", "--granularity", "timeline", "--embedding", str(note), model_dir=tiny_model_dir, data_dir=tmp_path / "d")

    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{note}: ")
    assert "TEST MODEL" in run.stdout and "·" in run.stdout
    folder = next((tmp_path / "d" / "outputs").iterdir())
    saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert saved["timeline"] and (folder / "embedding.npy").exists()


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
