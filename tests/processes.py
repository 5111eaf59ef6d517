"""Real bot-bridge processes for tests: ``python -m bot_bridge serve`` as an operator starts it.

Each runs in its own process group (gunicorn's parent and its workers die
together with ``os.killpg``), logs to a file the test can show, and is
waited for by polling its health endpoint with a deadline.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str = "the condition"):
    """Poll ``predicate`` every 0.1 s until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while not (outcome := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        time.sleep(0.1)
    return outcome


def serve(environ: dict, port: int, log_file: Path, *arguments: str, ready: str = "/healthz",
          timeout: float = 90) -> subprocess.Popen:
    """Start ``python -m bot_bridge serve ARGUMENTS`` and wait until ``ready`` answers 200 on ``port``."""
    process = start([sys.executable, "-m", "bot_bridge", "serve", *arguments], environ, log_file)
    wait_until_answering(process, port, ready, log_file, timeout)
    return process


def start(command: list[str], environ: dict, log_file: Path) -> subprocess.Popen:
    """``command`` in a process group of its own, its output in ``log_file``."""
    return subprocess.Popen(command, env=environ, stdout=open(log_file, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_until_answering(process: subprocess.Popen, port: int, path: str, log_file: Path, timeout: float) -> None:
    """Wait until ``path`` answers 200 on ``port``; fail with the log if the process exits first."""

    def answers():
        if process.poll() is not None:
            raise AssertionError(f"the server exited:\n{log_file.read_text()}")
        try:
            return requests.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200
        except requests.RequestException:  # not listening yet, or busy starting
            return False

    wait_for(answers, timeout, f"port {port} answering {path}")

def scrape(port: int) -> list:
    """The samples a Prometheus scrape of ``/metrics`` on ``port`` gets (name, labels, value)."""
    return parse_metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


def parse_metrics(text: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def sample_sum(samples: list, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())
