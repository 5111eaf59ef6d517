"""The first admin's generated password, kept in ``<data_dir>/console-password`` while it still signs in.

A deployment without ``console.password`` generates the first admin's
password at its first start and keeps it in this file (mode 0600), so that
every process and restart, the login page's hint and ``make demo``'s banner
find the same one. The file must never name a password that no longer
works: ``users reset admin`` rewrites it, and admin choosing its own deletes
it. Everything that finds, rewrites or deletes it goes through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings reach the adapters, which sit above this stage
    from ..config import Settings

FILE = "console-password"


def path(settings: Settings) -> Path:
    """Where the generated password is, or would be, kept."""
    return settings.data_dir / FILE


def shown(settings: Settings) -> Path | None:
    """The file, when the console's password is the generated one and the file still holds it."""
    kept = path(settings)
    return kept if not settings.console.password and kept.exists() else None


def replace(settings: Settings, password: str) -> None:
    """Write admin's new password (``users reset admin``) where the old generated one was, if it was there."""
    kept = path(settings)
    if kept.exists():
        kept.write_text(password + "\n", encoding="utf-8")


def retire(settings: Settings) -> bool:
    """Delete the file once admin's password is its own choice; whether there was one."""
    try:
        path(settings).unlink()
    except FileNotFoundError:
        return False
    return True
