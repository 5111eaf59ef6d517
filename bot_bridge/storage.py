"""Where bot-bridge writes, and what happens when it cannot: read-only at start, full while running.

Read-only (or otherwise unwritable) at start: a data directory on a
read-only mount, or a database file nobody may write, used to end the start
with a raw ``sqlite3.OperationalError`` traceback, or let gunicorn start
processes that died one after another. A place that cannot be written is a
bad setting like any other: ``check_storage`` stops the start with one
message naming the setting (``data_dir``, ``database_url``), its value (a
database password masked) and what the system said.

Full while running: the disk of ``data_dir`` (results, the SQLite database
and queue) fills up. Nothing crashes (the metrics files that used to live
there now live in memory, ``bot_bridge/metrics.py``); what could not be
stored is refused with ``storage_full`` (507) by the API and 503 by the
webhooks (the platform delivers again), notes in work are retried, and
``/readyz`` says not ready. Nothing needs restarting when space returns.
The operator's log names the full path; ``/readyz`` is unauthenticated and
names only the setting.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigError, Settings
from .errors import BotBridgeError

# Below this much free space a writing process is not ready: a note's result and kept audio may not fit.
FREE_BYTES_NEEDED = 1_000_000
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# SQLite's SQLITE_FULL; PostgreSQL's SQLSTATE disk_full.
_SQLITE_FULL = 13
_POSTGRES_DISK_FULL = "53100"


def check_storage(settings: Settings, open_store) -> None:
    """Raise ``ConfigError`` unless ``data_dir`` can be written and ``open_store()`` (opening and migrating the
    database) works."""
    problem = _unwritable(settings.data_dir)
    if problem:
        raise ConfigError(
            f"data_dir {settings.data_dir.resolve()}: bot-bridge cannot write there ({problem}); it keeps its "
            "queue, results and console files there. Make it writable, or set data_dir (BOT_BRIDGE_DATA_DIR) "
            "to a directory that is."
        )
    url = settings.resolved_database_url
    try:
        open_store()
    except SQLAlchemyError as error:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = getattr(error, "orig", None) or error
        database_dir = _sqlite_directory(url)
        where = _unwritable(database_dir) if database_dir else None
        raise ConfigError(
            f"database_url {shown}: the database cannot be opened and written "
            f"({type(reason).__name__}: {reason}{'; its directory: ' + where if where else ''}). "
            "Make it writable, or set database_url (BOT_BRIDGE_DATABASE_URL) to one that is."
        ) from None


def is_storage_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says a disk is full: ENOSPC, SQLite's or PostgreSQL's disk full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        if getattr(error, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
    return False


def full_places(settings: Settings) -> list[tuple[str, Path]]:
    """The settings (``data_dir``, ``database_url``) whose disk has less than ``FREE_BYTES_NEEDED`` free."""
    places = [("data_dir", settings.data_dir)]
    database_dir = _sqlite_directory(settings.resolved_database_url)
    if database_dir is not None and database_dir != settings.data_dir:
        places.append(("database_url", database_dir))
    return [(setting, path) for setting, path in places if _free_bytes(path) < FREE_BYTES_NEEDED]


def storage_full_error(settings: Settings, error: BaseException) -> BotBridgeError:
    """``storage_full``, its detail (for the operator's log) naming where the disk is full and what failed."""
    # The driver's own words: SQLAlchemy's would add the statement and its parameters (names people chose).
    reason = getattr(error, "orig", None) or error
    return BotBridgeError("storage_full", f"storage full: {describe_full(settings)} ({type(reason).__name__}: {reason})")


def describe_full(settings: Settings) -> str:
    """The full places, as the log names them: ``/srv/var (data_dir, 0 bytes free)``."""
    full = full_places(settings) or [("data_dir", settings.data_dir)]
    return ", ".join(f"{path} ({setting}, {_free_bytes(path)} bytes free)" for setting, path in full)


def _free_bytes(path: Path) -> int:
    try:
        found = os.statvfs(path)
    except OSError:
        return 0
    return found.f_bavail * found.f_frsize


def _sqlite_directory(url: str) -> Path | None:
    database = make_url(url).database if url.startswith("sqlite") else None
    return Path(database).resolve().parent if database else None


def _unwritable(directory: Path) -> str | None:
    """Why a file cannot be created in ``directory`` (created if missing), or None if it can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as error:
        return os.strerror(error.errno) if error.errno else str(error)
    return None
