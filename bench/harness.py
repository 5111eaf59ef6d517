"""What the chat benchmarks share: the platforms, their voice notes, and bot-bridge in real processes.

Everything stays on 127.0.0.1: the loopback fakes of Telegram, Slack and
WeCom (``tests/platforms``) host the audio and record the replies, and
bot-bridge runs as ``bot-bridge serve`` processes, as an operator starts it:

* ``all``: one ``serve --role all`` (the single-box default), SQLite under a
  temporary data directory;
* ``split``: ``serve --role web`` and ``serve --role worker`` sharing that
  data directory (SQLite database and queue);
* ``scale-out``: the same two roles on a fresh database of the loopback
  PostgreSQL and a queue of its own on the loopback Redis.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot_bridge.remembering.store import Store  # noqa: E402
from tests import services  # noqa: E402
from tests.audio_fixtures import encode  # noqa: E402
from tests.chat_helpers import FINISHED, VOICE_FORMATS, platform_environment, voice_note_webhook  # noqa: E402
from tests.platforms.slack import FakeSlack  # noqa: E402
from tests.platforms.telegram import FakeTelegram  # noqa: E402
from tests.platforms.wecom import FakeWeCom  # noqa: E402
from tests.processes import free_port, scrape, serve, wait_for  # noqa: E402

# funasr sets the root logger to INFO in this process; the store's migration chatter is not a figure.
logging.getLogger("alembic").setLevel(logging.WARNING)

LAYOUTS = ("all", "split", "scale-out")


@dataclass(frozen=True)
class Delivery:
    """One webhook request as its platform sends it, and where it goes."""

    platform: str
    request: object  # tests.platforms.server.InboundRequest
    path: str

    def send(self, base_url: str) -> int:
        return self.request.send(f"{base_url}/webhooks/{self.path}", timeout=30).status_code


class Platforms:
    """The three platform fakes, running; ``with Platforms() as platforms: ...``."""

    def __enter__(self) -> Platforms:
        self.fakes = {"telegram": FakeTelegram().start(), "slack": FakeSlack().start(), "wecom": FakeWeCom().start()}
        return self

    def __exit__(self, *exc_info) -> None:
        for fake in self.fakes.values():
            fake.stop()

    def environment(self) -> dict[str, str]:
        return platform_environment(self.fakes["telegram"], self.fakes["slack"], self.fakes["wecom"])

    def voice_note(self, platform: str, samples) -> Delivery:
        """A webhook carrying ``samples`` (16 kHz) as a voice note in ``platform``'s own format."""
        audio = encode(samples, 16000, VOICE_FORMATS[platform])
        return Delivery(platform, *voice_note_webhook(platform, self.fakes[platform], audio))

    def replies(self) -> dict[str, int]:
        return {name: len(fake.sent_messages) for name, fake in self.fakes.items()}

    def last_reply_at(self) -> float:
        """``time.monotonic()`` of the latest reply any platform accepted."""
        return max((m["received_at"] for fake in self.fakes.values() for m in fake.sent_messages), default=0.0)

    def wait_for_replies(self, count: int, timeout: float) -> None:
        wait_for(lambda: sum(self.replies().values()) >= count, timeout, f"{count} replies")


class Deployment:
    """bot-bridge in ``serve`` processes of one of ``LAYOUTS``, answering the platforms' webhooks."""

    def __init__(self, layout: str, model_dir: Path, platforms: Platforms, root: Path, **environment: str) -> None:
        self.layout = layout
        self.root = root
        self.data_dir = root / "data"
        self.database_url = services.create_postgres_database() if layout == "scale-out" else None
        self.queue_name = f"bench_{secrets.token_hex(4)}"
        self.environ = {**os.environ, **platforms.environment(), "BOT_BRIDGE_DATA_DIR": str(self.data_dir),
                        "BOT_BRIDGE_MODEL": str(model_dir), "BOT_BRIDGE_QUEUE_NAME": self.queue_name,
                        "BOT_BRIDGE_CONSOLE_PASSWORD": secrets.token_urlsafe(12), **environment}
        if self.database_url:
            self.environ.update(BOT_BRIDGE_DATABASE_URL=self.database_url, BOT_BRIDGE_QUEUE_URL=services.redis_url())
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def __enter__(self) -> Deployment:
        roles = ["all"] if self.layout == "all" else ["web", "worker"]
        for role in roles:
            self.ports[role] = free_port()
            # Ready: a model process once its model is loaded; a web process once database and queue answer.
            self.processes[role] = serve(self.environ, self.ports[role], self.root / f"{role}.log",
                                         "--role", role, "--port", str(self.ports[role]), ready="/readyz", timeout=300)
        self.store = Store(self.database_url or f"sqlite:///{self.data_dir / 'bot-bridge.db'}", self.data_dir / "outputs")
        return self

    def __exit__(self, *exc_info) -> None:
        for process in self.processes.values():
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            process.wait(60)
        self.store.close()
        if self.database_url:
            services.drop_postgres_database(self.database_url)
            services.delete_redis_queue(self.queue_name)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['all' if self.layout == 'all' else 'web']}"

    def wait_until_answered(self, count: int, timeout: float) -> list:
        """Every note in a final state (``count`` of them); the notes."""

        def answered():
            notes = self.store.voice_notes(limit=count + 1)
            return notes if len(notes) >= count and all(n.status in FINISHED for n in notes) else None

        return wait_for(answered, timeout, f"{count} notes answered")

    def memory(self) -> dict[str, list[tuple[int, int, int]]]:
        """Per role, each process's (pid, resident bytes now, peak resident bytes), parents included."""
        memory = {}
        for role, port in self.ports.items():
            pids = [int(s.labels["pid"]) for s in scrape(port) if s.name == "bot_bridge_process_resident_memory_bytes"]
            memory[role] = [(pid, *_resident(pid)) for pid in [self.processes[role].pid, *pids]]
        return memory


def _resident(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def machine_load() -> str:
    """The load average, printed with every figure: another busy process on the machine skews them all."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} cores"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def print_memory(deployment: Deployment) -> None:
    for role, processes in deployment.memory().items():
        for number, (pid, now, peak) in enumerate(processes):
            what = "gunicorn parent" if number == 0 else "process"
            print(f"  {role:>6} {what:<16} pid {pid:>7}: RSS {now / 2**20:7.0f} MiB (peak {peak / 2**20:7.0f} MiB)")
