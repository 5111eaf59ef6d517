"""A case's message at each target: sent once, then kept up to date.

Exactly once, as far as platforms without idempotency keys allow it:

* A case is written with one ``case_deliveries`` row per target before
  anything is sent (``case_store``), unique per (case, target).
* Sending first claims the row (``pending``/``retrying`` -> ``sending`` in
  one conditional UPDATE ... RETURNING): a row another process claimed
  first is not in the answer and is not sent. Right after the platform
  answers, the send is recorded (``sent``, the message's reference and the
  case version it shows) in its own commit. A failed send puts the row back
  to ``retrying`` for the next sweep, counting the attempt; other targets'
  rows are never touched by it. The urgent job takes ``pending`` rows only:
  what failed waits for the sweep, so ``escalation.max_attempts`` tries span
  that many sweeps.
* The crash window is one HTTP call: claimed, sent, not yet recorded. Rows
  left ``sending`` for ``SENDING_TIMEOUT`` (far longer than any send with
  its retries takes) were claimed by a process that died; they are sent
  again, marked ``maybe_sent`` so the message says it may repeat. For an
  angry customer a labelled duplicate costs a glance, a lost alert costs the
  customer.

Updates are idempotent: a sent message showing an older version of its case
(``shown_version`` < the case's ``version``) is edited to the case as it is
*now*, whichever change made it stale, so a repeated or late update never
adds a message. One process at a time updates a message (``updating_until``,
a short lease taken with a conditional UPDATE), so an edit made from an
older reading cannot land after a newer one. Platforms that need a one-time
permission to edit a message (WeCom's ``response_code``) have it kept in
``edit_token``; it is used at most once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy import case as sql_case

from .case_store import CaseDeliveryRow, CaseRow, DeliveryState
from .store import Store

#: A row still ``sending`` after this long was claimed by a process that died mid-send.
SENDING_TIMEOUT = timedelta(minutes=10)
#: How long one process may hold a message to update it (an edit with its retries takes seconds).
UPDATE_HOLD = timedelta(minutes=2)
#: Keeps a delivery's edit token as it is.
KEEP = object()


class CaseDeliveries:
    """The ``case_deliveries`` rows of ``store``: claims, sends, failures and updates."""

    def __init__(self, store: Store) -> None:
        self.session = store.session

    # -- first sends ---------------------------------------------------------------------

    def waiting(self, target: str, states: tuple[str, ...] = DeliveryState.OPEN, *,
                severe_only: bool = False) -> list[CaseDeliveryRow]:
        """The messages ``target`` has still to receive (in ``states``), oldest case first."""
        query = (select(CaseDeliveryRow).join(CaseRow, CaseDeliveryRow.case_id == CaseRow.id)
                 .where(CaseDeliveryRow.target == target, CaseDeliveryRow.state.in_(states))
                 .order_by(CaseRow.opened_at, CaseRow.id))
        if severe_only:
            query = query.where(CaseRow.severe.is_(True))
        with self.session() as session:
            return list(session.scalars(query))

    def claim(self, delivery_id: int, now: datetime, states: tuple[str, ...] = DeliveryState.OPEN) -> bool:
        """Take the row for sending if it is still in ``states``; whether this call won it."""
        statement = (
            update(CaseDeliveryRow)
            .where(CaseDeliveryRow.id == delivery_id, CaseDeliveryRow.state.in_(states))
            .values(state=DeliveryState.SENDING, claimed_at=now, attempts=CaseDeliveryRow.attempts + 1,
                    updated_at=now)
            .returning(CaseDeliveryRow.id)
        )
        return bool(self._returning(statement))

    def mark_sent(self, delivery_id: int, message_ref: str, edit_token: str | None, version: int,
                  now: datetime) -> None:
        self._update(delivery_id, state=DeliveryState.SENT, sent_at=now, message_ref=message_ref,
                     edit_token=edit_token, edit_token_at=now if edit_token else None, shown_version=version,
                     last_error=None, updated_at=now)

    def mark_failed(self, delivery_id: int, error: str, now: datetime, max_attempts: int, *,
                    maybe_sent: bool = False) -> None:
        """Back to ``retrying`` for the next sweep, or ``gave_up`` after ``max_attempts`` tries.

        ``maybe_sent``: the message left but its answer never came; the next one says it may repeat.
        """
        given_up = sql_case((CaseDeliveryRow.attempts >= max_attempts, DeliveryState.GAVE_UP),
                            else_=DeliveryState.RETRYING)
        values = {"maybe_sent": True} if maybe_sent else {}
        self._update(delivery_id, state=given_up, last_error=error, updated_at=now, **values)

    def recover_stale(self, now: datetime) -> list[int]:
        """Rows whose sender died mid-send go back to be sent again, marked as maybe sent."""
        statement = (
            update(CaseDeliveryRow)
            .where(CaseDeliveryRow.state == DeliveryState.SENDING, CaseDeliveryRow.claimed_at < now - SENDING_TIMEOUT)
            .values(state=DeliveryState.RETRYING, maybe_sent=True, updated_at=now,
                    last_error="bot-bridge stopped while sending this alert; sent again, marked as a possible repeat")
            .returning(CaseDeliveryRow.id)
        )
        return self._returning(statement)

    def expire(self, last_note_before: datetime, reason: str, now: datetime) -> list[int]:
        """Give up the open rows of cases whose latest note came before ``last_note_before``: too old to send."""
        old_cases = select(CaseRow.id).where(CaseRow.last_note_at < last_note_before)
        statement = (
            update(CaseDeliveryRow)
            .where(CaseDeliveryRow.state.in_(DeliveryState.OPEN), CaseDeliveryRow.case_id.in_(old_cases))
            .values(state=DeliveryState.GAVE_UP, last_error=reason, updated_at=now)
            .returning(CaseDeliveryRow.id)
        )
        return self._returning(statement)

    # -- updates -------------------------------------------------------------------------

    def stale(self, case_id: int | None = None, *, severe_only: bool = False) -> list[CaseDeliveryRow]:
        """Sent messages that show an older version of their case (of ``case_id``, or of any case; only of severe
        cases with ``severe_only``)."""
        query = (select(CaseDeliveryRow).join(CaseRow, CaseDeliveryRow.case_id == CaseRow.id)
                 .where(CaseDeliveryRow.state == DeliveryState.SENT, CaseDeliveryRow.shown_version < CaseRow.version)
                 .order_by(CaseDeliveryRow.id))
        if case_id is not None:
            query = query.where(CaseDeliveryRow.case_id == case_id)
        if severe_only:
            query = query.where(CaseRow.severe.is_(True))
        with self.session() as session:
            return list(session.scalars(query))

    def hold_for_update(self, delivery_id: int, now: datetime) -> CaseDeliveryRow | None:
        """Take the message for updating unless another process is updating it; the row as it is then."""
        statement = (
            update(CaseDeliveryRow)
            .where(CaseDeliveryRow.id == delivery_id, CaseDeliveryRow.state == DeliveryState.SENT,
                   (CaseDeliveryRow.updating_until.is_(None)) | (CaseDeliveryRow.updating_until < now))
            .values(updating_until=now + UPDATE_HOLD)
            .returning(CaseDeliveryRow)
            .execution_options(synchronize_session=False)
        )
        with self.session.begin() as session:
            return session.scalar(statement)

    def updated(self, delivery_id: int, version: int, now: datetime, *, edit_token=KEEP,
                error: str | None = None) -> None:
        """The message now shows ``version`` (or, with ``error``, will not be made to: it was given up);
        released for the next update. ``edit_token``: what is left of the permission to edit it."""
        values = {} if edit_token is KEEP else {"edit_token": edit_token}
        self._update(delivery_id, shown_version=sql_case((CaseDeliveryRow.shown_version < version, version),
                                                         else_=CaseDeliveryRow.shown_version),
                     updating_until=None, last_error=error, updated_at=now, **values)

    def release(self, delivery_id: int, error: str, now: datetime) -> None:
        """An update that failed for now: the next sweep tries again."""
        self._update(delivery_id, updating_until=None, last_error=error, updated_at=now)

    def keep_edit_token(self, case_id: int, message_ref: str, token: str, now: datetime) -> bool:
        """A press on the message ``message_ref`` came with a fresh permission to edit it; whether it was kept."""
        statement = (
            update(CaseDeliveryRow)
            .where(CaseDeliveryRow.case_id == case_id, CaseDeliveryRow.message_ref == message_ref)
            .values(edit_token=token, edit_token_at=now)
            .returning(CaseDeliveryRow.id)
        )
        return bool(self._returning(statement))

    # -- helpers -------------------------------------------------------------------------

    def _update(self, delivery_id: int, **values) -> None:
        with self.session.begin() as session:
            session.execute(update(CaseDeliveryRow).where(CaseDeliveryRow.id == delivery_id).values(**values)
                            .execution_options(synchronize_session=False))

    def _returning(self, statement) -> list[int]:
        with self.session.begin() as session:
            return list(session.scalars(statement.execution_options(synchronize_session=False)))
