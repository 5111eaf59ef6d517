"""What the chat tests share: settings wired to the platform fakes, and a running bot.

``chat_settings`` points each platform's conventional environment variables
(``TELEGRAM_API_BASE`` ...) at a loopback fake, with queue timings short
enough for tests. ``ChatBot`` is the service with its queue workers running
in this process, receiving webhooks through Flask's test client; waits poll
the database or the fakes with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bot_bridge.config import Settings, load_settings
from bot_bridge.remembering.store import NoteStatus, Store
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.platforms import feishu, slack, wecom
from tests.platforms import telegram as tg
from tests.processes import free_port, serve, wait_for

FINISHED = (NoteStatus.REPLIED, NoteStatus.FAILED, NoteStatus.UNCONFIRMED, NoteStatus.SILENT)
# Each platform's own voice note format: Telegram Ogg/Opus, Slack clips M4A/AAC, WeCom AMR-NB 8 kHz.
VOICE_FORMATS = {"telegram": "ogg_opus", "slack": "m4a_aac_moov_end", "wecom": "amr"}
# Short queue timings: retries after 0.2 s, 0.6 s ...; a dead worker's note is taken back after 2 s.
TEST_QUEUE = {"retry_delay_s": 0.2, "lease_s": 2.0, "recovery_interval_s": 0.25, "max_attempts": 3}
# A dead puller is replaced after 2 s; a failed pull or connection is tried again after 0.2 s, 0.4 s ...
TEST_INBOUND = {"lease_s": 2.0, "retry_delay_s": 0.2}


def platform_environment(telegram=None, slack_fake=None, wecom_fake=None, feishu_fake=None) -> dict[str, str]:
    """The variables an operator would set, pointing the API bases at the given fakes."""
    environ = {}
    if telegram is not None:
        environ.update(
            TELEGRAM_BOT_TOKEN=telegram.token,
            TELEGRAM_WEBHOOK_SECRET=tg.DEFAULT_SECRET_TOKEN,
            TELEGRAM_API_BASE=telegram.base_url,
        )
    if slack_fake is not None:
        environ.update(
            SLACK_BOT_TOKEN=slack_fake.bot_token,
            SLACK_SIGNING_SECRET=slack.DEFAULT_SIGNING_SECRET,
            SLACK_API_BASE=slack_fake.base_url + "/api/",
        )
    if wecom_fake is not None:
        environ.update(
            WECOM_CORP_ID=wecom_fake.corp_id,
            WECOM_CORP_SECRET=wecom_fake.corp_secret,
            WECOM_AGENT_ID=str(wecom_fake.agent_id),
            WECOM_TOKEN=wecom.DEFAULT_CALLBACK_TOKEN,
            WECOM_ENCODING_AES_KEY=wecom.DEFAULT_ENCODING_AES_KEY,
            WECOM_API_BASE=wecom_fake.base_url,
        )
    if feishu_fake is not None:
        environ.update(
            FEISHU_APP_ID=feishu_fake.app_id,
            FEISHU_APP_SECRET=feishu_fake.app_secret,
            FEISHU_VERIFICATION_TOKEN=feishu.DEFAULT_VERIFICATION_TOKEN,
            FEISHU_ENCRYPT_KEY=feishu.DEFAULT_ENCRYPT_KEY,
            FEISHU_API_BASE=feishu_fake.base_url,
        )
    return environ


def one_note_each(fakes, voice: dict[str, bytes]):
    """A webhook request per platform, each carrying a voice note the fake hosts: [(request, path)].

    ``fakes`` is (telegram, slack, wecom); ``voice`` has ``ogg_opus``, ``m4a_aac_moov_end`` and ``amr`` bytes.
    """
    return [voice_note_webhook(platform, fake, voice[VOICE_FORMATS[platform]])
            for platform, fake in zip(VOICE_FORMATS, fakes)]


def voice_note_webhook(platform: str, fake, audio: bytes):
    """The webhook request of ``platform`` carrying ``audio`` as a voice note hosted by ``fake``: (request, path)."""
    if platform == "telegram":
        return tg.webhook_request(tg.voice_update(fake.add_file(audio))), "telegram"
    if platform == "slack":
        return slack.event_request(slack.voice_clip_message(fake.add_file(audio))), "slack/events"
    return wecom.voice_callback(fake.add_media(audio)), "wecom"


def without_webhooks(telegram=None, slack_fake=None) -> dict[str, str]:
    """The variables of a bot on a laptop: Telegram by token alone (polling), Slack in Socket Mode."""
    environ = {}
    if telegram is not None:
        environ.update(TELEGRAM_BOT_TOKEN=telegram.token, TELEGRAM_API_BASE=telegram.base_url)
    if slack_fake is not None:
        environ.update(SLACK_BOT_TOKEN=slack_fake.bot_token, SLACK_APP_TOKEN=slack_fake.app_token,
                       SLACK_API_BASE=slack_fake.base_url + "/api/")
    return environ


def chat_settings(data_dir: Path, model_dir: Path, environ: dict[str, str], **overrides) -> Settings:
    queue = {f"queue__{key}": value for key, value in TEST_QUEUE.items()}
    inbound = {f"inbound__{key}": value for key, value in TEST_INBOUND.items()}
    return load_settings(
        environ=environ,
        data_dir=str(data_dir),
        model__name=str(model_dir),
        model__threads=2,
        **{**queue, **inbound, **overrides},
    )


class ChatBot:
    """The service answering webhooks (and polling, or holding connections), its queue workers in this process."""

    def __init__(self, settings: Settings, model, transcriber=None) -> None:
        self.service = Service(settings, model=model, transcriber=transcriber)
        self.store = self.service.store
        self.client = create_app(service=self.service).test_client()
        self.answer_times: list[float] = []
        self.service.chat.start()
        self.service.start_listening()

    def deliver(self, inbound, path: str):
        """Send a platform's webhook request (``tests.platforms.server.InboundRequest``); times the answer."""
        started = time.perf_counter()
        response = self.client.open(f"/webhooks/{path}", **inbound.werkzeug_kwargs())
        self.answer_times.append(time.perf_counter() - started)
        return response

    def notes(self):
        return self.store.voice_notes()

    def wait_until_finished(self, count: int = 1, timeout: float = 30.0):
        """Wait until ``count`` notes are recorded and every recorded note has reached an end state."""
        deadline = time.monotonic() + timeout
        while True:
            notes = self.notes()
            if len(notes) >= count and all(note.status in FINISHED for note in notes):
                return notes
            if time.monotonic() > deadline:
                raise AssertionError(f"notes not finished after {timeout} s: {[(n.id, n.status) for n in notes]}")
            time.sleep(0.05)

    def close(self) -> None:
        self.service.close()


@contextlib.contextmanager
def running_bot(tmp_path: Path, model_dir: Path, model, *, fakes: dict, environ: dict | None = None,
                transcriber=None, **overrides):
    """A ``ChatBot`` for the fakes given as ``platform_environment`` takes them (or for ``environ``), closed
    afterwards; with ``transcriber``, its notes are transcribed."""
    environ = platform_environment(**fakes) if environ is None else environ
    bot = ChatBot(chat_settings(tmp_path, model_dir, environ, **overrides), model, transcriber)
    try:
        yield bot
    finally:
        bot.close()


def delivered_after_retries(bot: ChatBot, fake, method: str) -> list[dict]:
    """Wait for the note's one reply; returns the calls made to ``method`` on the way, in order."""
    fake.wait_for_messages(1, timeout=30)
    assert bot.wait_until_finished()[0].status == NoteStatus.REPLIED
    assert len(fake.sent_messages) == 1
    return fake.calls(method)


def killed_mid_download_then_restarted(tmp_path: Path, model_dir: Path, environ: dict[str, str],
                                       deliver: Callable[[str], None], held: list[tuple[object, str]],
                                       notes: int = 1, settings: dict | None = None) -> tuple[list, str]:
    """A real ``bot-bridge serve`` with the platforms of ``environ``, SIGKILLed mid-note, then started again.

    ``deliver(base_url)`` sends the webhooks. Each ``(fake, call)`` of ``held``
    is held back (the first process never gets its audio); once every one has
    been asked for, the process is killed and a second one started. Returns the
    ``notes`` finished notes, after a full lease and recovery sweep more (room
    for a wrong repeat to show itself), and both processes' logs. ``settings``
    adds to the configuration file.
    """
    port = free_port()
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "model": {"name": str(model_dir), "threads": 1},
        "server": {"host": "127.0.0.1", "port": port},
        "queue": {**TEST_QUEUE, "worker_threads": max(2, notes)},
        **(settings or {}),
    }))
    environ = {**os.environ, **environ, "BOT_BRIDGE_CONFIG": str(config)}
    for fake, call in held:
        fake.delay_next(call, 120)
    # Web up (/healthz) is enough: a worker downloads before it needs the model, which goes on loading.
    first = serve(environ, port, tmp_path / "first.log")
    try:
        deliver(f"http://127.0.0.1:{port}")
        for fake, call in held:
            fake.wait_until(lambda f=fake, c=call: f.calls(c), timeout=60, what=f"the held {call}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    second = serve(environ, port, tmp_path / "second.log")
    try:
        store = Store(f"sqlite:///{tmp_path / 'data' / 'bot-bridge.db'}", tmp_path / "data" / "outputs")
        wait_for(lambda: _finished(store, notes), timeout=90)
        time.sleep(TEST_QUEUE["lease_s"] + TEST_QUEUE["recovery_interval_s"] * 2)
        finished = store.voice_notes()
        store.close()
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
    return finished, (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()


def _finished(store: Store, count: int) -> list | None:
    notes = store.voice_notes()
    return notes if len(notes) >= count and all(note.status in FINISHED for note in notes) else None
