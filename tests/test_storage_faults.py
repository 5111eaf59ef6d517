"""Storage faults: a read-only database or data directory stops the start with words; a full disk
stops nothing and loses nothing.

Real file systems (``tests/mounts.py``): a tmpfs of a few megabytes, remounted
read-only or filled with ``dd``, under a real ``bot-bridge serve``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from bot_bridge.config import load_settings
from bot_bridge.remembering.store import Store
from tests.mounts import make_read_only, tmpfs
from tests.processes import free_port


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
