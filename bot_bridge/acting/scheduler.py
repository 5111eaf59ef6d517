"""The periodic work of a deployment (escalation sweeps, daily digests, retention), run by one process at a time.

Every bot-bridge process starts a ``Scheduler`` (APScheduler's
``BackgroundScheduler``), and every job first takes or renews the
deployment's *lease*: one row of the ``leases`` table, held by one process
until it expires. Taking it is a single conditional UPDATE (``holder`` is us,
or the lease has expired), with an ``INSERT ... ON CONFLICT DO NOTHING`` for
the very first time: atomic on SQLite and PostgreSQL alike, so of any number
of processes exactly one does the work, and another takes over within
``LEASE_TTL`` of its death
(at once after a clean shutdown, which releases it). A heartbeat job, on an
executor of its own, renews the lease while a long job runs. Clocks of the
hosts must agree to well within ``LEASE_TTL`` (NTP does). Stopping tells
the senders to stop waiting for rate limits (``AlertSender.stop_waiting``),
so a job paced by a WeCom robot does not hold up a shutdown.

The lease is for tidiness (one sweep at a time, no wasted work);
exactly-once does not depend on it: every send claims its rows first
(``bot_bridge.remembering.case_deliveries``, ``alert_store`` for digests).

Jobs are plain functions of ``now``; ``Scheduler.run(job, now)`` is what
APScheduler calls and what tests call with a clock of their own.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import or_, update

from adapters.base import ChatAdapter

from ..config import DIGEST_CHECK_MINUTES, Settings
from ..remembering.alert_store import LeaseRow, insert_new
from ..remembering.store import Store
from .alerting import build_targets
from .digest import Digests
from .escalation import Escalator
from .retention import Retention, has_rules

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=90)
HEARTBEAT = LEASE_TTL / 3
DIGEST_CHECK = timedelta(minutes=DIGEST_CHECK_MINUTES)
#: How often the lease holder asks whether the deployment's retention sweep is due (``Retention.sweep_if_due``).
RETENTION_CHECK = timedelta(minutes=1)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_holder() -> str:
    """A lease holder's name: unique per process and per object holding leases (host, pid, random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """A named lease in the database, held by at most one ``holder`` until ``expires_at``."""

    def __init__(self, store: Store, holder: str, *, name: str = LEASE_NAME, ttl: timedelta = LEASE_TTL) -> None:
        self.session = store.session
        self.holder = holder
        self.name = name
        self.ttl = ttl

    def acquire(self, now: datetime) -> bool:
        """Take the lease, or renew it if ours, until ``now + ttl``; False while another holder has it."""
        with self.session.begin() as session:
            taken = session.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == self.name,
                    or_(LeaseRow.holder == self.holder, LeaseRow.holder.is_(None), LeaseRow.expires_at <= now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            ).rowcount
        if taken:
            return True
        with self.session.begin() as session:  # the first time ever: nobody has the row to update
            new = {"name": self.name, "holder": self.holder, "expires_at": now + self.ttl}
            return insert_new(session, LeaseRow, new, ["name"]) is not None

    def release(self, now: datetime) -> None:
        """Let another process take over at once (on a clean shutdown)."""
        with self.session.begin() as session:
            session.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(holder=None, expires_at=now)
            )


class Scheduler:
    """The jobs of one process; only the lease holder's do any work."""

    def __init__(self, store: Store, jobs: dict[str, tuple[timedelta, Callable[[datetime], object]]], *,
                 clock: Clock = utc_now, holder: str | None = None,
                 on_stop: Iterable[Callable[[], None]] = ()) -> None:
        """``on_stop``: called first when stopping, to cut short a running job's waits."""
        self.jobs = jobs
        self.clock = clock
        self.on_stop = list(on_stop)
        self.lease = Lease(store, holder or new_holder())
        self.apscheduler: BackgroundScheduler | None = None

    def run(self, job: str, now: datetime | None = None) -> bool:
        """Run ``job`` at ``now`` if this process holds the lease; whether it ran."""
        now = now or self.clock()
        if not self.lease.acquire(now):
            return False
        _, work = self.jobs[job]
        try:
            work(now)
        except Exception:  # noqa: BLE001 - a failed run (database busy, a bug) must not stop the next
            log.exception("scheduled job %r failed; it runs again at its next time", job)
        return True

    def heartbeat(self) -> None:
        """Renew the lease between and during jobs, so a long job keeps it and a dead holder is replaced soon."""
        try:
            self.lease.acquire(self.clock())
        except Exception:  # noqa: BLE001 - the next beat tries again
            log.exception("scheduler lease: renewing failed")

    def start(self) -> None:
        """Run every job now, then at its interval, in a background thread."""
        scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            executors={"default": ThreadPoolExecutor(1), "lease": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        first = self.clock()
        for name, (interval, _) in self.jobs.items():
            scheduler.add_job(self.run, IntervalTrigger(seconds=interval.total_seconds()), args=(name,),
                              id=name, name=name, next_run_time=first)
        scheduler.add_job(self.heartbeat, IntervalTrigger(seconds=HEARTBEAT.total_seconds()), id="lease heartbeat",
                          executor="lease")
        scheduler.start()
        self.apscheduler = scheduler
        log.info("scheduler started (%s); the lease holder among bot-bridge's processes runs them",
                 ", ".join(self.jobs))

    def stop(self) -> None:
        if self.apscheduler is not None:
            for interrupt in self.on_stop:
                interrupt()
            self.apscheduler.shutdown(wait=True)
            self.apscheduler = None
            self.lease.release(self.clock())


def build_scheduler(settings: Settings, store: Store, chat_adapters: dict[str, ChatAdapter], *,
                    clock: Clock = utc_now, holder: str | None = None) -> Scheduler | None:
    """The scheduler of a deployment, or None when it has neither a target nor a retention rule."""
    jobs: dict[str, tuple[timedelta, Callable[[datetime], object]]] = {}
    senders = set()
    if settings.targets:
        targets = build_targets(settings, chat_adapters)
        escalator = Escalator(store, settings, targets)
        escalation = settings.escalation
        jobs["escalation sweep"] = (timedelta(minutes=escalation.sweep_interval_min), escalator.sweep)
        jobs["daily digests"] = (DIGEST_CHECK, Digests(store, settings, targets).send_due)
        if escalation.immediate:
            jobs["urgent escalations"] = (timedelta(seconds=escalation.immediate_check_s),
                                          lambda now: escalator.sweep(now, severe_only=True))
        senders = {target.sender for target in targets.values() if target.sender is not None}
    if has_rules(settings.retention):
        jobs["retention sweep"] = (RETENTION_CHECK, Retention(store, settings.retention).sweep_if_due)
    if not jobs:
        return None
    return Scheduler(store, jobs, clock=clock, holder=holder, on_stop=[sender.stop_waiting for sender in senders])
