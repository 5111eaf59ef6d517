"""Before a ``serve`` starts: can it write where its settings say it keeps things?

A data directory on a read-only mount, or a database file nobody may write,
used to end the start with a raw ``sqlite3.OperationalError`` traceback, or
worse, let gunicorn start workers that died one after another. A place that
cannot be written is a bad setting like any other: the start stops with one
message naming the setting (``data_dir``, ``database_url``), its value (a
database password masked) and what the operating system or the database said.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigError, Settings


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
        database_file = make_url(url).database if url.startswith("sqlite") else None
        where = _unwritable(Path(database_file).parent) if database_file else None
        raise ConfigError(
            f"database_url {shown}: the database cannot be opened and written "
            f"({type(reason).__name__}: {reason}{'; its directory: ' + where if where else ''}). "
            "Make it writable, or set database_url (BOT_BRIDGE_DATABASE_URL) to one that is."
        ) from None


def _unwritable(directory: Path) -> str | None:
    """Why a file cannot be created in ``directory`` (created if missing), or None if it can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as error:
        return os.strerror(error.errno) if error.errno else str(error)
    return None
