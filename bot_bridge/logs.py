"""Logging for operators: one line per event, and no secret ever printed.

Code never logs secrets on purpose; the redacting filter is the belt to that
brace. It masks every configured secret value (bot tokens, signing secrets,
AES keys, passwords) wherever it appears in a formatted line, including in
URLs of exceptions raised by HTTP libraries (Telegram puts the bot token in
the path).

Libraries' chatter stays out of the way: alembic's plugin set-up, and
funasr's progress lines on the root logger ("download models from model hub"
for a local directory), show only at DEBUG.
"""

from __future__ import annotations

import logging
import os
import sys

from .config import Settings

SECRET_WORDS = ("token", "secret", "password", "key", "aes")
MASK = "[REDACTED]"


def configure_logging(settings: Settings, level: int | str | None = None) -> None:
    """Log to stderr at ``level`` (default ``settings.log_level``), secrets masked."""
    root = logging.getLogger()
    root.setLevel(level or settings.log_level)
    for handler in list(root.handlers):
        if getattr(handler, "_bot_bridge", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._bot_bridge = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secret_values(settings)))
    handler.addFilter(_quiet_funasr)
    root.addHandler(handler)
    for noisy in ("urllib3", "modelscope", "numba", "matplotlib", "httpx", "huey.consumer.Scheduler",
                  "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, longest first (so a secret containing another is masked whole).

    Besides tokens and keys, the chat id of a target whose platform says it is
    secret: a WeCom group robot's chat id is its webhook key.
    """
    from adapters import adapter_classes, alert_only_classes

    values = [settings.api.token, settings.console.password, settings.console.secret_key,
              settings.console.sso.client_secret]
    for platform in settings.platforms.values():
        values += [str(v) for k, v in platform.items() if any(word in k.lower() for word in SECRET_WORDS)]
    classes = {**adapter_classes(), **alert_only_classes()}
    values += [t.chat_id for t in settings.targets.values() if t.platform in classes and classes[t.platform].chat_id_is_secret]
    return sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True)


def _quiet_funasr(record: logging.LogRecord) -> bool:
    """funasr logs on the root logger, below ERROR mostly what it is doing: shown at DEBUG only."""
    from_funasr = record.name == "root" and f"{os.sep}funasr{os.sep}" in record.pathname
    return not from_funasr or record.levelno >= logging.ERROR or logging.getLogger().level <= logging.DEBUG


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self._redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text
