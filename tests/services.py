"""The real PostgreSQL and Redis on 127.0.0.1, for scale-out tests.

They run on loopback on this machine kind; a fixture reuses them, or starts
them with the machine's own commands when they are down, and gives each test
session a fresh database (PostgreSQL) or key prefix (Redis) of its own.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)

_START = {
    POSTGRES: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | tail -1) main start",
    REDIS: "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no "
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
}


def ensure_running(address: tuple[str, int], timeout_s: float = 30.0) -> None:
    """Reuse the server at ``address``, or start it; fail with the reason if that cannot be done."""
    if _listening(address):
        return
    program = _START[address].split()[0]
    if shutil.which(program) is None:
        raise RuntimeError(f"nothing listens on {address[0]}:{address[1]} and {program} is not installed")
    subprocess.run(_START[address], shell=True, check=True, capture_output=True)
    deadline = time.monotonic() + timeout_s
    while not _listening(address):
        if time.monotonic() > deadline:
            raise RuntimeError(f"started {program} but nothing listens on {address[0]}:{address[1]}")
        time.sleep(0.2)


def create_postgres_database() -> str:
    """A new, empty database; returns its SQLAlchemy URL."""
    import psycopg

    ensure_running(POSTGRES)
    name = f"bot_bridge_test_{secrets.token_hex(4)}"
    with psycopg.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"


def drop_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_url() -> str:
    ensure_running(REDIS)
    return f"redis://{REDIS[0]}:{REDIS[1]}/0"


def delete_redis_queue(name: str) -> None:
    """Every key of the Huey queue ``name`` in the loopback Redis: a run leaves nothing behind."""
    import redis

    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"huey.*{name}*"))
    if keys:
        client.delete(*keys)


def _listening(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=1).close()
        return True
    except OSError:
        return False


__all__ = ["create_postgres_database", "drop_postgres_database", "ensure_running", "redis_url"]
