"""Retention: the sweep that deletes what is older than ``retention.*`` allows, and what it keeps.

The sweep runs under the scheduler's lease (one process of a deployment at
a time), first finishing deletions a killed process left marked
(``remembering/forgetting.py``), then deleting, in batches, results and
notes older than ``retention.results_days`` and the kept recordings older
than ``retention.audio_days``. A rule in ``retention.chats`` applies to its
chats on top of the deployment's: the shortest rule covering a note wins, so
a chat's rule can only be stricter. Each sweep leaves one audit entry
(``retention.sweep``, with the counts), which also tells ``/metrics`` and
the console when the next one runs, whichever process asks, and tells the
lease holder when a sweep is due, whichever process held the lease before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..config import RetentionSettings
from ..remembering.audit import AuditLog
from ..remembering.case_store import BOT_BRIDGE
from ..remembering.forgetting import Counted, Forgetting, Selection
from ..remembering.store import ResultRow, Store, VoiceNoteRow

log = logging.getLogger(__name__)

SWEEP_ACTION = "retention.sweep"
ACTOR = "retention"


@dataclass(frozen=True)
class Kept:
    """What the deployment holds now, and when the next sweep deletes what is due (None: at the next start)."""

    results: int
    notes: int
    recordings: int
    oldest_result: datetime | None
    last_sweep: datetime | None
    next_sweep: datetime | None


def has_rules(settings: RetentionSettings) -> bool:
    """Whether anything is ever deleted by age (all empty: everything is kept)."""
    rules = [settings, *settings.chats.values()]
    return any(rule.audio_days is not None or rule.results_days is not None for rule in rules)


class Retention:
    """The retention rules of one deployment, applied to its store."""

    def __init__(self, store: Store, settings: RetentionSettings) -> None:
        self.store = store
        self.settings = settings
        self.forgetting = Forgetting(store, batch=settings.batch)
        self.audit = AuditLog(store)

    def sweep_if_due(self, now: datetime) -> tuple[Counted, int] | None:
        """The scheduler's job, tried every minute by the lease holder: sweep once the deployment's last sweep
        is ``sweep_interval_h`` old (or there was none). The last sweep is read from the audit log, not this
        process's memory, so a sweep missed while bot-bridge was down, or while a dead holder's lease ran out,
        runs as soon as a process holds the lease again."""
        last = self._last_sweep()
        if last is not None and now < last + timedelta(hours=self.settings.sweep_interval_h):
            return None
        return self.sweep(now)

    def sweep(self, now: datetime) -> tuple[Counted, int]:
        """Delete what is due at ``now``: ``(results and notes deleted, recordings deleted)``."""
        finished = self.forgetting.finish()
        deleted = Counted()
        for selection in self._due(now, "results_days"):
            deleted += self.forgetting.forget(selection, actor=ACTOR, via=BOT_BRIDGE, audited=False)
        recordings = sum(self.forgetting.forget_audio(selection) for selection in self._due(now, "audio_days"))
        self.audit.record(ACTOR, BOT_BRIDGE, SWEEP_ACTION, detail={
            "notes": deleted.notes, "results": deleted.results, "recordings": recordings,
            "finished_after_a_crash": finished}, at=now)
        log.info("retention sweep: %d notes, %d results and %d recordings deleted", deleted.notes, deleted.results,
                 recordings)
        return deleted, recordings

    def kept(self) -> Kept:
        with self.store.session() as session:
            results, oldest, recordings = session.execute(select(
                func.count(ResultRow.id), func.min(ResultRow.created_at), func.count(ResultRow.audio_file))).one()
            notes = session.scalar(select(func.count(VoiceNoteRow.id)))
        last_sweep = self._last_sweep()
        interval = timedelta(hours=self.settings.sweep_interval_h)
        return Kept(results, notes, recordings, oldest, last_sweep, last_sweep and last_sweep + interval)

    def _last_sweep(self) -> datetime | None:
        last = self.audit.entries(action=SWEEP_ACTION, limit=1)
        return last[0].at if last else None

    def _due(self, now: datetime, rule: str) -> list[Selection]:
        """What ``rule`` (``results_days`` or ``audio_days``) makes due at ``now``: the deployment's, each chat's."""
        selections = []
        if (days := getattr(self.settings, rule)) is not None:
            selections.append(Selection.before(now - timedelta(days=days)))
        for source, chat_rule in self.settings.chats.items():
            if (days := getattr(chat_rule, rule)) is None:
                continue
            platform, _, chat_id = source.partition(":")
            selections.append(Selection.before(now - timedelta(days=days), platform=None if source == "*" else platform,
                                               chat_id=None if chat_id in ("", "*") else chat_id, uploads=False))
        return selections
