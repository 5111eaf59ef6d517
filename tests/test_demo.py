"""``make demo`` as a newcomer meets it: a banner with the console's address and password, sample voice
notes that arrive through the real Telegram webhook from the demo's stand-in of Telegram's Bot API and fill
every page, the command line on the demo's model with its results in the demo's console, and empty pages
that say what to configure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from bot_bridge.config import load_settings
from bot_bridge.remembering.store import NoteStatus, Store
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests import audio_fixtures as af
from tests.alert_helpers import alert_settings
from tests.platforms import fixtures
from tests.processes import free_port, start, wait_for
from tests.test_console import PASSWORD, sign_in

fake_telegram = fixtures.fake_telegram
ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = "config/demo.yaml"


def demo_environment(model_dir, data_dir, **extra) -> dict[str, str]:
    """What ``make demo`` runs with, on the tests' model and data directory instead of var/."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_BRIDGE_", "TELEGRAM_", "SLACK_", "WECOM_"))}
    return {**keep, "BOT_BRIDGE_CONFIG": DEMO_CONFIG, "BOT_BRIDGE_MODEL": str(model_dir),
            "BOT_BRIDGE_DATA_DIR": str(data_dir), **extra}


DEMO_MODELS = ("var/demo-model/configuration.json", "var/demo-sensevoice/configuration.json")


def make_dry_run(target: str, *variables: str, made: tuple[str, ...] = (".venv/.runtime", *DEMO_MODELS)) -> list[str]:
    """The commands ``make TARGET`` would run (even when TARGET is up to date), taking the files ``made`` as made.

    ``--no-print-directory``: under ``make test`` the inner make would otherwise say which directory it enters."""
    assume_made = [option for path in made for option in ("-o", path)]
    run = subprocess.run(["make", "-n", "-B", "--no-print-directory", *assume_made, target, *variables],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in run.stdout.splitlines() if line.strip()]


def signed_in_session(base: str, password: str) -> requests.Session:
    browser = requests.Session()
    token = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(f"{base}/login").text).group(1)
    assert browser.post(f"{base}/login", data={"password": password, "csrf_token": token}).status_code == 200
    return browser


# --- 11 and 17: the demo's banner, and its chat side ---


def test_make_demo_says_how_to_sign_in_and_shows_the_chat_side_with_samples(tmp_path, tiny_model_dir,
                                                                          tiny_sensevoice_dir):
    assert make_dry_run("demo")[-1].endswith(f"BOT_BRIDGE_CONFIG={DEMO_CONFIG} .venv/bin/python -m demo"), \
        "the test runs the demo as make does"
    sensevoice = make_dry_run(DEMO_MODELS[1], made=(".venv/.runtime",))
    assert sensevoice[-1].endswith("bot-bridge model make-random --kind sensevoice --preset small var/demo-sensevoice")
    assert load_settings(ROOT / DEMO_CONFIG, environ={}).transcribe.model == "./var/demo-sensevoice"
    port, data_dir, log_file = free_port(), tmp_path / "demo", tmp_path / "demo.log"
    base = f"http://127.0.0.1:{port}"
    demo = start([sys.executable, "-m", "demo"], demo_environment(tiny_model_dir, data_dir, BOT_BRIDGE_PORT=str(port),
                                                                  BOT_BRIDGE_TRANSCRIBE_MODEL=str(tiny_sensevoice_dir)),
                 log_file)
    try:
        banner = wait_for(lambda: re.search(r"Password +(\S+) +\(kept in (\S+)\)", log_file.read_text()), 180,
                          "the demo's banner")
        password, kept_in = banner.groups()
        assert kept_in == str((data_dir / "console-password").resolve())
        assert Path(kept_in).read_text().strip() == password
        shown = log_file.read_text()
        assert f"Console    {base}" in shown and "RANDOM WEIGHTS" in shown and "4 messages" in shown
        assert "Account    admin" in shown, "the generated password is the admin account's"

        store = Store(f"sqlite:///{data_dir / 'bot-bridge.db'}", data_dir / "outputs")
        notes = wait_for(lambda: (found := store.voice_notes()) and len(found) == 4
                         and all(note.status == NoteStatus.REPLIED for note in found) and found, 120,
                         "the samples answered")
        assert {note.chat_name for note in notes} == {"示例群 Sample chat (make demo)"}
        assert sum(note.result_id is not None for note in notes) == 3  # three recordings and a /start
        for note in (note for note in notes if note.result_id is not None):  # each reply says what was said
            assert store.result(note.result_id).transcript.random_weights
            assert re.search(r"\n💬 \((随机权重，文字没有意义|random weights: these words are meaningless)\) \S",
                             note.reply_text), note.reply_text  # in the sender's language
        store.close()

        browser = signed_in_session(base, password)
        wait_for(lambda: browser.get(f"{base}/escalations?state=sent").text.count("Sample support chat") == 3, 90,
                 "every sample's case sent to the sample support chat")
        assert "Sample chat (make demo)" in browser.get(f"{base}/voice-notes").text
        assert "Voice notes: 3" in browser.get(f"{base}/digest").text
        shown = log_file.read_text()
        assert "[stand-in Telegram] to 示例群 Sample chat (make demo)" in shown
        assert "[stand-in Telegram] to 示例支持群 Sample support chat (make demo)" in shown
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        code = demo.wait(timeout=90)
    assert code == 0, log_file.read_text()[-3000:]


# --- 12: the command line on the demo's model, its results in the demo's console ---


def test_the_cli_runs_on_the_demo_model_and_its_results_show_in_the_demo_console(tmp_path, tiny_model_dir):
    command = make_dry_run("demo-predict", "FILES=note.ogg calls/")[-1]
    assert command == f"BOT_BRIDGE_CONFIG={DEMO_CONFIG} .venv/bin/bot-bridge predict note.ogg calls/"
    note = tmp_path / "note.ogg"
    note.write_bytes(af.encode(af.speech_clip(3.0), 16000, "ogg_opus"))
    environ = demo_environment(tiny_model_dir, tmp_path / "demo")

    run = subprocess.run([sys.executable, "-m", "bot_bridge", "predict", str(note)], cwd=ROOT, env=environ,
                         capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr
    link = re.search(r"http://127\.0\.0\.1:7860/results/(\w+)", run.stdout)
    assert link, run.stdout
    settings = load_settings(environ={k: v for k, v in environ.items() if k.startswith("BOT_BRIDGE_")})
    settings.console.password = PASSWORD
    service = Service(settings)
    browser = create_app(service=service).test_client()
    sign_in(browser)
    page = browser.get(f"/results/{link.group(1)}")
    assert page.status_code == 200 and "note.ogg" in page.get_data(as_text=True)
    service.close()


# --- 17: every empty page says what to configure ---


@pytest.fixture
def empty_console(settings, service):
    settings.console.password = PASSWORD
    browser = create_app(service=service).test_client()
    sign_in(browser)
    return browser


def test_empty_pages_name_what_to_configure(empty_console):
    voice_notes = empty_console.get("/voice-notes").get_data(as_text=True)
    for needed in ("TELEGRAM_BOT_TOKEN", "SLACK_SIGNING_SECRET", "WECOM_CORP_ID", "docs/platforms/", "make demo"):
        assert needed in voice_notes, needed
    escalations = empty_console.get("/escalations").get_data(as_text=True)
    for needed in ("targets", "routes", "config/escalation.example.yaml", "docs/escalations-and-digests.md"):
        assert needed in escalations, needed
    digest = empty_console.get("/digest").get_data(as_text=True)
    for needed in ("digest.targets", "docs/escalations-and-digests.md"):
        assert needed in digest, needed


def test_once_configured_the_empty_pages_say_what_would_fill_them(tmp_path, tiny_model, fake_telegram):
    settings = alert_settings(tmp_path, telegram=fake_telegram, digest={"targets": {"telegram": {"at": "09:30"}}})
    settings.console.password = PASSWORD
    service = Service(settings, model=tiny_model)
    browser = create_app(service=service).test_client()
    sign_in(browser)

    assert "/webhooks/telegram" in browser.get("/voice-notes").get_data(as_text=True)
    assert "angry ≥ 0.50" in browser.get("/escalations").get_data(as_text=True)
    assert "09:30" in browser.get("/digest?date=2026-03-04").get_data(as_text=True)
    service.close()

