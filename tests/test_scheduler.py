"""The scheduler's lease: of any number of processes exactly one does the work, another takes over.

Each "process" here has its own ``Store`` (its own connections) on one
database (SQLite, then PostgreSQL), as separate processes would. Lease times come from the
test's clock; the threaded test starts real APScheduler schedulers whose
jobs get their ``now`` from a fixed clock.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event

from adapters.wecom_robot import WeComRobot
from bot_bridge.acting.scheduler import LEASE_TTL, Lease, Scheduler, build_scheduler
from bot_bridge.remembering.alert_store import AlertStore
from bot_bridge.remembering.store import Base, Store
from bot_bridge.service import Service
from tests.alert_helpers import NOON, Alerts, RecordingHttp, add_chat_note, alert_settings, texts
from tests.platforms import fixtures

fake_slack, fake_telegram = fixtures.fake_slack, fixtures.fake_telegram


@pytest.fixture
def settings(tmp_path, database_url, fake_slack, fake_telegram):
    """Each test runs on SQLite and on PostgreSQL: the lease must be atomic on both."""
    return alert_settings(tmp_path, slack=fake_slack, telegram=fake_telegram, digest={"targets": {"slack": {}}},
                          database_url=database_url)


def open_store(settings) -> Store:
    return Store(settings.resolved_database_url, settings.outputs_dir)


def test_one_holder_has_the_lease_until_it_expires_or_is_released(settings):
    first, second = open_store(settings), open_store(settings)
    a, b = Lease(first, "process-a"), Lease(second, "process-b")

    assert a.acquire(NOON) and not b.acquire(NOON)
    assert a.acquire(NOON + timedelta(seconds=60)), "the holder renews"
    assert not b.acquire(NOON + timedelta(seconds=60) + LEASE_TTL - timedelta(seconds=1))
    assert b.acquire(NOON + timedelta(seconds=60) + LEASE_TTL), "expired: another process takes over"
    assert not a.acquire(NOON + timedelta(seconds=61) + LEASE_TTL)

    b.release(NOON + timedelta(seconds=62) + LEASE_TTL)
    assert a.acquire(NOON + timedelta(seconds=62) + LEASE_TTL), "released: taken at once"
    first.close()
    second.close()


def test_only_the_lease_holder_sweeps_and_another_takes_over_when_it_dies(settings, fake_slack):
    processes = [Alerts(settings, open_store(settings)) for _ in range(2)]
    schedulers = [Scheduler(p.store, {"sweep": (timedelta(minutes=5), p.escalator.sweep)}, holder=f"p{n}")
                  for n, p in enumerate(processes)]
    first = add_chat_note(processes[0].store, received_at=NOON, emotions={"angry": 0.9})

    at = NOON + timedelta(minutes=5)
    assert [scheduler.run("sweep", at) for scheduler in schedulers] == [True, False]
    assert [scheduler.run("sweep", at + timedelta(minutes=1)) for scheduler in reversed(schedulers)] == [False, True]

    # The first process dies: no more renewals. After LEASE_TTL the second one sweeps.
    second = add_chat_note(processes[1].store, received_at=NOON + timedelta(minutes=7), emotions={"angry": 0.8},
                           sender_name="Bob")  # another sender: a case of its own
    assert not schedulers[1].run("sweep", at + timedelta(minutes=2))
    assert schedulers[1].run("sweep", at + timedelta(minutes=1) + LEASE_TTL)

    first_alert, second_alert = texts(fake_slack)
    assert first in first_alert and second in second_alert and first not in second_alert
    for process in processes:
        process.close()


def test_two_started_schedulers_send_each_case_and_digest_once(settings, fake_slack, fake_telegram):
    back_at = NOON.replace(hour=20)  # 20:00 in London: the 18:00 digest was missed, within the grace period
    services = [Service(settings) for _ in range(2)]
    add_chat_note(services[0].store, received_at=NOON, emotions={"happy": 0.9})  # in the digest, no case
    case = add_chat_note(services[0].store, received_at=back_at - timedelta(minutes=3), emotions={"angry": 0.9})
    schedulers = [build_scheduler(service.settings, service.store, service.chat.adapters, clock=lambda: back_at, holder=f"p{n}") for n, service in enumerate(services)]
    tried = [threading.Event(), threading.Event()]
    for scheduler, event in zip(schedulers, tried):
        scheduler.lease.acquire = _calling_back(scheduler.lease.acquire, event.set)

    for scheduler in schedulers:
        scheduler.start()
    try:
        assert all(event.wait(10) for event in tried), "both schedulers ran their first jobs"
        fake_slack.wait_for_messages(3)  # the alert, then the digest's text and chart
        fake_telegram.wait_for_messages(1)
    finally:
        for service, scheduler in zip(services, schedulers):
            scheduler.stop()
            service.close()

    alerts = [message for message in fake_slack.sent_messages if case in message["text"]]
    digests = [message for message in fake_slack.sent_messages if "Sent late" in message["text"]]
    charts = [message for message in fake_slack.sent_messages if message["images"]]
    assert (len(alerts), len(digests), len(charts), len(fake_slack.sent_messages)) == (1, 1, 1, 3)
    assert [case in text for text in texts(fake_telegram)] == [True]


def test_a_started_service_runs_the_scheduler_and_releases_the_lease_when_it_closes(settings, fake_slack, tiny_model):
    service = Service(settings, model=tiny_model)
    add_chat_note(service.store, received_at=NOON, emotions={"angry": 0.9})
    service.settings.escalation.max_age_h = 24 * 365 * 100  # the notes are from 2026, whatever today is
    service.start_background("worker")
    try:
        fake_slack.wait_for_messages(1)
    finally:
        service.close()
    other = Lease(open_store(settings), "another process")
    assert other.acquire(NOON), "released at close: taken at once"


def test_stopping_cuts_short_a_job_that_waits_for_a_robot(settings):
    store = open_store(settings)
    robot = WeComRobot({}, RecordingHttp(), clock=lambda: 0.0)  # time stands still: the 21st message waits
    waiting = threading.Event()

    def job(_now) -> None:
        for number in range(21):
            if number == 20:
                waiting.set()
            robot.send_alert("robot-key", f"message {number}")

    scheduler = Scheduler(store, {"alerts": (timedelta(minutes=5), job)}, holder="p", on_stop=[robot.stop_waiting])
    scheduler.start()
    assert waiting.wait(10)
    stopping_at = time.monotonic()
    scheduler.stop()
    assert time.monotonic() - stopping_at < 5, "not a minute"
    store.close()


#: The tables of the alerts: migration 0002's (in bot_bridge.remembering.alert_store), and the cases of 0011 that
#: replaced its per-note deliveries (case_store, case_changes).
ALERT_TABLES = {"escalations", "digests", "leases", "cases", "case_deliveries", "case_presses"}


def test_the_migration_creates_exactly_what_the_models_declare(settings):
    store = open_store(settings)
    assert ALERT_TABLES <= set(Base.metadata.tables)
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _alert_table})
        assert compare_metadata(context, Base.metadata) == []
    store.close()


def test_claims_that_lose_leave_no_error_in_the_database_log(settings):
    """A lost claim is an INSERT ... ON CONFLICT DO NOTHING or a conditional UPDATE, never a failed statement:
    PostgreSQL logs each of those as an ERROR, and the scheduler claims every minute."""
    store = open_store(settings)
    errors = []
    event.listen(store.engine, "handle_error", lambda context: errors.append(context.original_exception))
    alerts = Alerts(settings, store)
    add_chat_note(store, received_at=NOON, emotions={"angry": 0.9})
    escalator = alerts.escalator
    [(matched, steps)] = escalator.new_cases(NOON + timedelta(minutes=1))
    levels = [(step.target, step.level) for step in steps]
    assert escalator.cases.record_note(matched, levels, NOON, escalator.window) == 1
    assert escalator.cases.record_note(matched, levels, NOON, escalator.window) is None, "recorded once"

    digests = AlertStore(store)
    assert digests.claim_digest("slack", NOON.date(), NOON) is not None
    assert digests.claim_digest("slack", NOON.date(), NOON + timedelta(minutes=1)) is None, "being sent"
    other = open_store(settings)
    first, second = Lease(store, "first"), Lease(other, "second")
    assert second.acquire(NOON) and not first.acquire(NOON), "the first time ever, then taken"
    assert errors == []
    store.close()
    other.close()


def test_no_scheduler_without_targets(tmp_path):
    from bot_bridge.config import load_settings

    service = Service(load_settings(environ={}, data_dir=str(tmp_path)))
    assert build_scheduler(service.settings, service.store, service.chat.adapters) is None
    service.close()


def _alert_table(item, name, kind, _reflected, _compare_to) -> bool:
    table = item if kind == "table" else getattr(item, "table", None)
    return table is None or table.name in ALERT_TABLES


def _calling_back(function, callback):
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            callback()

    return wrapped
