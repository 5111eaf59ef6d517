"""``make demo``: the whole product on one machine, offline, with a random-weight model.

``python -m demo`` (run by ``make demo`` with ``BOT_BRIDGE_CONFIG=config/demo.yaml``,
random-weight emotion2vec+ and SenseVoice models written beforehand)
starts ``bot-bridge serve`` as ``make run`` does, and beside it a stand-in for
Telegram's Bot API on 127.0.0.1 (``demo/telegram_stand_in.py``). It then
delivers sample voice notes (``demo/samples.py``) through the real Telegram
webhook, with its real secret header, so that the Voice notes, Escalations
and Digest pages show what a chat deployment shows: every step after the
webhook is the product's own. The samples' chat says it holds samples, and the
model's random weights are said on every page and reply.

When the service answers, a banner says where the console is and how to sign
in. Ctrl-C stops both (the terminal sends it to the whole process group).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import requests

from adapters import environment_variables
from adapters.telegram import SECRET_HEADER
from bot_bridge.config import ConfigError, load_settings
from bot_bridge.remembering import first_password

from . import samples
from .telegram_stand_in import TelegramStandIn

READY_TIMEOUT_S = 180  # the base model loads in 10-30 s on a laptop
SHOWN_CHARACTERS = 160  # of each message the stand-in received, on the demo's terminal
POLL_S = 1.0


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"make demo: {error}", file=sys.stderr)
        return 2
    recordings, missing = samples.synthesise()
    token, secret = f"999000:{secrets.token_urlsafe(24)}", secrets.token_urlsafe(24)
    stand_in = TelegramStandIn(token, recordings, _message_printer(settings))
    stand_in.start()
    service_url = f"http://{settings.server.host}:{settings.server.port}"
    child = subprocess.Popen([sys.executable, "-m", "bot_bridge", "serve"],
                             env=_service_environment(stand_in, token, secret, service_url))
    try:
        if not _wait_until(child, f"{service_url}/healthz"):
            return child.wait()
        delivered = _deliver(service_url, secret, samples.updates(recordings))
        ready = _wait_until(child, f"{service_url}/readyz")
        print(_banner(settings, service_url, delivered, missing, ready), flush=True)
        return child.wait()
    except KeyboardInterrupt:  # the service got the same Ctrl-C and is stopping
        return _stopped(child)
    finally:
        stand_in.stop()


def _service_environment(stand_in: TelegramStandIn, token: str, secret: str, service_url: str) -> dict[str, str]:
    """The demo's environment, with only the stand-in Telegram on: no real platform's secrets come along."""
    platform_variables = {name for variables in environment_variables().values() for name in variables.values()}
    environ = {key: value for key, value in os.environ.items() if key not in platform_variables}
    environ.setdefault("BOT_BRIDGE_PUBLIC_URL", service_url)
    return {**environ, "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_WEBHOOK_SECRET": secret,
            "TELEGRAM_API_BASE": stand_in.base_url}


def _wait_until(child: subprocess.Popen, url: str) -> bool:
    """Poll ``url`` until it answers 200; False if the service exits or does not answer in time."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while child.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(POLL_S)
    return False


def _deliver(service_url: str, secret: str, updates: list[dict]) -> int:
    """Post each update to the Telegram webhook as Telegram does; how many were accepted."""
    accepted = 0
    for update in updates:
        answer = requests.post(f"{service_url}/webhooks/telegram", json=update, headers={SECRET_HEADER: secret},
                               timeout=10)
        accepted += answer.status_code == 200
    return accepted


def _message_printer(settings):
    """Shows on the terminal what bot-bridge sent to the stand-in: the chat by name, the text on one line."""
    names = {str(samples.SAMPLE_CHAT["id"]): samples.SAMPLE_CHAT["title"]}
    names.update({target.chat_id: target.name or key for key, target in settings.targets.items()})

    def show(chat_id: str, text: str, chart: bool) -> None:
        line = " | ".join(part.strip() for part in text.splitlines() if part.strip())
        if len(line) > SHOWN_CHARACTERS:
            line = line[: SHOWN_CHARACTERS - 1] + "…"
        print(f"[stand-in Telegram] to {names.get(chat_id, chat_id)}{' (with a chart)' if chart else ''}: {line}",
              flush=True)

    return show


def _banner(settings, service_url: str, delivered: int, missing: str | None, ready: bool) -> str:
    """What to open and how to sign in: the generated password while its file is there (the service's first
    start wrote it; it goes once admin chooses its own)."""
    password_file = first_password.shown(settings)
    if password_file is None:
        sign_in = ("the password you set or chose (console.password or BOT_BRIDGE_CONSOLE_PASSWORD, the console's "
                   "Password page, or users reset admin)")
    else:
        sign_in = f"{password_file.read_text(encoding='utf-8').strip()}   (kept in {password_file.resolve()})"
    chat = samples.SAMPLE_CHAT["title"]
    lines = [
        "bot-bridge demo: RANDOM WEIGHTS, every emotion and every word it shows is meaningless",
        f"  Console    {service_url}",
        "  Account    admin",
        f"  Password   {sign_in}",
        f"  Samples    {missing}" if missing else
        f"  Samples    {delivered} messages from a stand-in Telegram, in the chat \"{chat}\"",
        "  CLI        make demo-predict FILES=\"note.ogg calls/\"   (its results show in this console)",
        "  Stop       Ctrl-C",
    ]
    if not ready:
        lines.insert(1, "  (the model is still loading: the console says when it is ready)")
    rule = "=" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def _stopped(child: subprocess.Popen) -> int:
    try:
        return child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.terminate()
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
