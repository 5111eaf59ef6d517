"""Storage faults: a read-only database or data directory stops the start with words; a full disk
stops nothing and loses nothing.

Real file systems (``tests/mounts.py``): a tmpfs of a few megabytes, remounted
read-only or filled with ``dd``, under a real ``bot-bridge serve``.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time

import requests
import yaml
from sqlalchemy.exc import OperationalError

from bot_bridge.config import load_settings
from bot_bridge.remembering.store import Store
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import platform_environment, running_bot
from tests.mounts import fill, make_read_only, tmpfs
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.processes import free_port, serve, wait_for

fake_telegram = fixtures.fake_telegram


def serve_until_it_stops(variables: dict, model_dir, timeout: float = 60) -> subprocess.CompletedProcess:
    """``bot-bridge serve`` with ``variables``, expected to stop by itself."""
    environ = {**os.environ, **variables, "BOT_BRIDGE_MODEL": str(model_dir), "BOT_BRIDGE_PORT": str(free_port()),
               "BOT_BRIDGE_CONFIG": "/nonexistent-bot-bridge.yaml"}
    return subprocess.run([sys.executable, "-m", "bot_bridge", "serve"], env=environ, capture_output=True, text=True,
                          timeout=timeout)


def test_a_read_only_data_dir_stops_the_start_naming_the_setting_and_path(tmp_path, tiny_model_dir):
    with tmpfs(tmp_path / "data") as data_dir:
        make_read_only(data_dir)

        run = serve_until_it_stops({"BOT_BRIDGE_DATA_DIR": str(data_dir)}, tiny_model_dir)

    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert f"data_dir {data_dir}: bot-bridge cannot write there (Read-only file system)" in run.stderr, run.stderr


def test_a_read_only_database_stops_the_start_naming_the_setting_and_path(tmp_path, tiny_model_dir):
    with tmpfs(tmp_path / "database") as directory:
        url = f"sqlite:///{directory / 'bot-bridge.db'}"
        Store(url, tmp_path / "outputs").close()
        make_read_only(directory)

        run = serve_until_it_stops({"BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_DATABASE_URL": url},
                                   tiny_model_dir)

    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert f"database_url {url}: the database cannot be opened and written" in run.stderr, run.stderr
    assert "its directory: Read-only file system" in run.stderr, run.stderr


DISK_FULL_QUEUE = {"retry_delay_s": 1.0, "lease_s": 2.0, "recovery_interval_s": 0.25, "max_attempts": 6}


def test_a_full_disk_stops_nothing_loses_nothing_and_everything_resumes_when_space_returns(
        tmp_path, tiny_model_dir, fake_telegram):
    """data_dir on an 8 MB tmpfs, filled with dd while a note is in work: the process stays up, the API says
    storage_full, /readyz says not ready, and once space returns the note and new ones are answered."""
    clip = encode(speech_clip(2), 16000, "wav_s16")
    port = free_port()
    log = tmp_path / "serve.log"
    with tmpfs(tmp_path / "data") as data_dir:
        config = tmp_path / "bot-bridge.yaml"
        config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "queue": DISK_FULL_QUEUE,
                                          "model": {"name": str(tiny_model_dir), "threads": 1}}))
        environ = {**os.environ, **platform_environment(fake_telegram), "BOT_BRIDGE_CONFIG": str(config),
                   "BOT_BRIDGE_PORT": str(port)}
        process = serve(environ, port, log, ready="/readyz")
        url = f"http://127.0.0.1:{port}"
        try:
            fake_telegram.delay_next("download", 3)  # the note is accepted now and analysed on a full disk
            first = tg.webhook_request(tg.voice_update(fake_telegram.add_file(encode(speech_clip(2), 16000,
                                                                                      "ogg_opus"))))
            assert first.send(f"{url}/webhooks/telegram").status_code == 200
            filler = fill(data_dir)

            full = predict(url, clip)
            not_audio = predict(url, b"this is not audio")
            readiness = requests.get(f"{url}/readyz", timeout=10)
            second = tg.webhook_request(tg.voice_update(fake_telegram.add_file(encode(speech_clip(2), 16000,
                                                                                       "ogg_opus"))))
            during = second.send(f"{url}/webhooks/telegram").status_code

            assert (full.status_code, full.json()["code"]) == (507, "storage_full")
            assert "storage" in full.json()["message"] and full.json()["message_zh"]
            assert (not_audio.status_code, not_audio.json()["code"]) == (415, "not_audio")
            assert readiness.status_code == 503 and "data_dir" in readiness.json()["detail"]
            assert during in (200, 503), "recorded, or refused so that Telegram delivers it again"
            time.sleep(4)  # the disk stays full a while: the queue and the note in work meet it  # noqa: the fault
            assert process.poll() is None

            filler.unlink()
            wait_for(lambda: requests.get(f"{url}/readyz", timeout=5).status_code == 200, 30, "ready again")
            if during != 200:
                assert second.send(f"{url}/webhooks/telegram").status_code == 200  # Telegram's redelivery
            sent = fake_telegram.wait_for_messages(2, timeout=60)
            after = predict(url, clip)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)

    assert [message["text"].count("%") > 0 for message in sent] == [True, True], "both analysed, no error reply"
    assert after.status_code == 201
    output = log.read_text()
    assert "SIGBUS" not in output and "Booting worker" in output and output.count("Booting worker") == 1
    assert f"storage full: {data_dir}" in output
    assert output.count("Error reading from queue") <= 2, "once a minute, not at every poll of the queue"


def predict(url: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/api/predict", files={"file": ("note.wav", data)}, timeout=60)


def test_a_webhook_that_cannot_be_recorded_on_a_full_disk_is_answered_503_for_a_redelivery(
        tmp_path, tiny_model_dir, tiny_model, fake_telegram, monkeypatch, caplog):
    """Whether SQLite needs a new page for a row depends on its WAL; here the insert meets ENOSPC for sure."""
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        disk_full_error = sqlite3.OperationalError("database or disk is full")
        disk_full_error.sqlite_errorcode = 13  # SQLITE_FULL, as sqlite3 sets it
        monkeypatch.setattr(bot.store, "record_voice_note", lambda _message: _raise(OperationalError(
            "INSERT INTO voice_notes ...", {"sender_name": "Alice"}, disk_full_error)))
        request = tg.webhook_request(tg.voice_update(fake_telegram.add_file(b"OggS")))

        answer = bot.deliver(request, "telegram")

    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "60")
    assert f"not recorded, answered 503 for a redelivery: storage full: {bot.service.settings.data_dir}" in caplog.text
    assert "Alice" not in caplog.text


def _raise(error: Exception):
    raise error


def test_a_note_whose_result_cannot_be_stored_is_tried_again_until_space_returns(
        tmp_path, tiny_model_dir, tiny_model, fake_telegram, monkeypatch):
    """The result folder meets ENOSPC on two tries (an unexpected error would get one more try only): the
    note waits and is answered with its emotion on the third."""
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        real_save, failures = bot.store.save_result, []

        def full_twice(*args, **kwargs):
            if len(failures) < 2:
                failures.append(1)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(*args, **kwargs)

        monkeypatch.setattr(bot.store, "save_result", full_twice)
        bot.deliver(tg.webhook_request(tg.voice_update(fake_telegram.add_file(encode(speech_clip(2), 16000,
                                                                                     "ogg_opus")))), "telegram")

        [sent] = fake_telegram.wait_for_messages(1, timeout=30)
        [note] = bot.wait_until_finished()

    assert (note.status, note.attempts, note.error_code) == ("replied", 3, None)
    assert "%" in sent["text"] and note.result_id is not None
