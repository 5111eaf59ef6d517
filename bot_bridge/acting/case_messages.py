"""Each case's message at each target: sent once, then edited whenever the case changes.

A channel must never show a case acknowledged elsewhere as open. So every
change of a case (a note joined, someone acknowledged, resolved or snoozed
it, a snooze ended) makes each of its sent messages stale
(``bot_bridge.remembering.case_deliveries``), and ``update`` edits a stale
message to the case as it is now: Slack's ``chat.update``, Telegram's
``editMessageText``, WeCom's ``update_template_card``. Where a message
cannot be edited (a WeCom group robot, a WeCom card whose one-time
``response_code`` is spent or older than 72 hours, a message someone
deleted), a short follow-up message says what changed instead.

Updates are pushed right after a change (``CaseUpdates``, a thread of the
process that made it, so a button press is answered first) and caught up by
every sweep, so a failed or interrupted one is done later. Each is done to
the latest state, so doing one twice or late never adds a message, except a
follow-up that was sent when its process died before recording it.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import datetime
from typing import Callable, Protocol

from adapters.base import AlertSender, PostedCard

from ..chat.cards import CaseCard
from ..chat.outbound import MaybeDelivered, OutboundError
from ..remembering.case_deliveries import KEEP, CaseDeliveries
from ..remembering.case_store import CaseDeliveryRow, CaseStore, CaseView, DeliveryState
from ..remembering.store import Store
from .alerting import Target

log = logging.getLogger(__name__)

#: How many times one update follows a case that keeps changing while its message is edited.
MAX_ROUNDS = 5


class Renders(Protocol):
    """What writes a case's message (``Escalator``)."""

    def card(self, view: CaseView, target: Target, delivery_id: int, *, maybe_sent: bool = False) -> CaseCard: ...

    def follow_up(self, view: CaseView, target: Target) -> str: ...


class CaseMessages:
    """Sends and updates the messages of the cases of ``store`` at ``targets``."""

    def __init__(self, store: Store, targets: dict[str, Target], renders: Renders, max_attempts: int) -> None:
        self.cases = CaseStore(store)
        self.deliveries = CaseDeliveries(store)
        self.targets = targets
        self.renders = renders
        self.max_attempts = max_attempts

    def send_waiting(self, target: Target, now: datetime, *, severe_only: bool = False) -> int:
        """Send ``target`` the cases it has still to receive (``severe_only``: the severe ones not tried yet),
        one message each; how many went out. After a failure the target's later cases wait for the next sweep."""
        states = (DeliveryState.PENDING,) if severe_only else DeliveryState.OPEN
        sent = 0
        for delivery in self.deliveries.waiting(target.key, states, severe_only=severe_only):
            if not self.deliveries.claim(delivery.id, now, states):
                continue  # another process (a CLI sweep beside the scheduler's) took it
            view = self.cases.view(delivery.case_id)
            card = self.renders.card(view, target, delivery.id, maybe_sent=delivery.maybe_sent)
            try:
                posted = target.sender.send_case(target.settings.chat_id, card)
            except Exception as error:  # noqa: BLE001 - any failure leaves it for the next sweep
                self._failed(target, delivery, error, now)
                return sent
            self.deliveries.mark_sent(delivery.id, posted.ref, posted.edit_token, view.case.version, now)
            sent += 1
        if sent:
            log.info("escalation: %d case(s) sent to %s", sent, target.name)
        return sent

    def update_stale(self, now: datetime, case_id: int | None = None, *, severe_only: bool = False) -> None:
        """Update every message showing an older state of its case (of ``case_id``, or of any case; of severe cases
        only with ``severe_only``)."""
        for delivery in self.deliveries.stale(case_id, severe_only=severe_only):
            self.update(delivery.id, now)

    def update(self, delivery_id: int, now: datetime) -> None:
        """Bring one message up to its case's latest state, unless another process is at it; a failure is
        logged and left for the next sweep."""
        for _ in range(MAX_ROUNDS):
            held = self.deliveries.hold_for_update(delivery_id, now)
            if held is None:
                return  # being updated elsewhere; that process follows the case to its latest state
            view = self.cases.view(held.case_id)
            if held.shown_version >= view.case.version:
                self.deliveries.updated(held.id, held.shown_version, now)
                return
            target = self.targets.get(held.target)
            try:
                self._show(target, held, view, now)
            except Exception as error:  # noqa: BLE001 - platform down, a bug: tried again at the next sweep
                self.deliveries.release(held.id, f"{type(error).__name__}: {error}", now)
                log.warning("case %d: its message at %s not updated, tried again at the next sweep: %s", view.case.id,
                            held.target, error, exc_info=not isinstance(error, OutboundError))
                return

    def _show(self, target: Target | None, held: CaseDeliveryRow, view: CaseView, now: datetime) -> None:
        """Edit the message to show ``view``, or say what changed in a follow-up where it cannot be edited."""
        if target is None or target.sender is None:
            raise OutboundError(held.target, "this target's platform is not configured in this process",
                                retryable=True)
        sender, chat_id, version = target.sender, target.settings.chat_id, view.case.version
        token = KEEP
        if _can_edit(sender, held, now):
            try:
                left = sender.update_case(chat_id, PostedCard(held.message_ref, held.edit_token),
                                          self.renders.card(view, target, held.id))
                self.deliveries.updated(held.id, version, now, edit_token=left)
                return
            except OutboundError as error:
                if error.retryable:
                    raise
                log.warning("case %d: its message at %s cannot be edited (%s); a follow-up message says what changed",
                            view.case.id, target.name, error)
                token = None  # a refused edit spent or lost the permission
        try:
            sender.send_alert(chat_id, self.renders.follow_up(view, target))
        except MaybeDelivered as error:  # most likely shown: better than saying it twice
            log.warning("case %d: the follow-up at %s may not have arrived (%s); not sent again", view.case.id,
                        target.name, error)
        self.deliveries.updated(held.id, version, now, edit_token=token)

    def _failed(self, target: Target, delivery: CaseDeliveryRow, error: Exception, now: datetime) -> None:
        """The claimed, unsent message waits for the next sweep; one whose answer was lost is marked, since it may
        be in the chat already (a lost alert about an angry customer is worse than a labelled repeat)."""
        maybe = isinstance(error, MaybeDelivered)
        self.deliveries.mark_failed(delivery.id, f"{type(error).__name__}: {error}" if not maybe else str(error), now,
                                    self.max_attempts, maybe_sent=maybe)
        if maybe:
            log.warning("escalation: case %d may have reached %s (%s); sent again at the next sweep, marked as a "
                        "possible repeat", delivery.case_id, target.name, error)
        else:
            log.warning("escalation: case %d not sent to %s, tried again at the next sweep: %s", delivery.case_id,
                        target.name, error, exc_info=not isinstance(error, OutboundError))


class CaseUpdates:
    """A thread that brings a case's messages up to date soon after it changed, so whoever changed it is answered
    first (Slack wants its answer within 3 s). Started on first use; what it has not done at ``stop`` the next
    sweep does."""

    def __init__(self, update: Callable[[int], None]) -> None:
        self._update = update
        self._waiting: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def soon(self, case_id: int) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="case-updates", daemon=True)
                self._thread.start()
        self._waiting.put(case_id)

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._waiting.put(None)
            thread.join(timeout_s)

    def _run(self) -> None:
        while (case_id := self._waiting.get()) is not None:
            try:
                self._update(case_id)
            except Exception:  # noqa: BLE001 - the database away a moment: the next sweep catches up
                log.exception("case %d: updating its messages failed; the next sweep tries again", case_id)


def _can_edit(sender: AlertSender, held: CaseDeliveryRow, now: datetime) -> bool:
    """Whether the message can be edited: the platform edits, and any permission it needs is there and fresh."""
    if not sender.edits_cases or held.message_ref is None:
        return False
    lifetime = sender.edit_token_lifetime
    return lifetime is None or (held.edit_token is not None and now - held.edit_token_at < lifetime)
