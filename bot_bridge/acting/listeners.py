"""Platforms reached without a public URL: pulled updates and long connections, recorded like webhooks.

Why: a webhook needs a public HTTPS address, which a laptop, a machine behind
a company NAT or a first try does not have. Telegram (``getUpdates``) and
Slack (Socket Mode) let a bot fetch its updates over a connection it opens
itself; an adapter says which it offers (``ChatAdapter.receives``), and this
module runs it, naming no platform.

* Pulling (``PULL``): exactly one process of a deployment pulls a platform,
  the holder of the lease ``pull:<platform>`` (the scheduler's ``Lease``),
  renewed by a heartbeat every third of ``inbound.lease_s``. When the holder
  dies another process takes over within ``inbound.lease_s`` (at once after
  a clean shutdown, which releases it). Two pullers would cut each other off
  (Telegram answers the older one 409). The new holder first lets the
  platform hand its updates over (``start_pulling``: Telegram's webhook is
  deleted, its pending updates kept).
* Each pulled batch is parsed and recorded update by update exactly as
  webhooks are (``ChatWorker.receive``: recorded, queued, answered once);
  only then is the cursor after it saved (``remembering.cursors``), and the
  next pull hands it to the platform, which only then forgets the batch. A
  crash in between pulls the batch again, and the updates already recorded
  are found by their delivery ids and not processed twice. An update that
  cannot be recorded (database down) ends the batch without saving the
  cursor: it all comes again after a pause. A process that is stopping
  records nothing more: what it pulled comes again to the next holder.
* Connections (``CONNECTION``): every background process holds one
  (``ChatAdapter.listen``); the platform gives each update to one of them and
  the adapter acknowledges it once ``receive`` has recorded it. Retries of an
  update carry its delivery id, so several connections need no lease (Slack
  allows ten per app and recommends more than one: adapters/slack.py).
* A failed pull or connection is logged and tried again after
  ``inbound.retry_delay_s``, doubled each time up to 5 minutes; the process
  keeps serving everything else.
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import timedelta

from adapters.base import CONNECTION, PULL, ChatAdapter

from ..chat.outbound import OutboundError
from ..config import InboundSettings
from ..remembering.cursors import Cursors
from ..remembering.store import Store
from .heartbeat import Heartbeat
from .scheduler import Clock, Lease, new_holder, utc_now
from .worker import ChatWorker

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 300.0
#: How long stopping waits for a listener; a long poll still in flight is left to end on its own.
STOP_WAIT_S = 2.0


class Listeners:
    """The pull loops and connections of this process, one thread per platform that needs one."""

    def __init__(self, chat: ChatWorker, store: Store, settings: InboundSettings, *, holder: str | None = None,
                 clock: Clock = utc_now) -> None:
        self.chat = chat
        self.store = store
        self.settings = settings
        self.holder = holder or new_holder()
        self.clock = clock
        self.cursors = Cursors(store)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._leases: list[Lease] = []

    def start(self) -> None:
        loops = {PULL: self._pull_forever, CONNECTION: self._listen_forever}
        for adapter in self.chat.adapters.values():
            loop = loops.get(adapter.receives)
            if loop is None:
                continue  # webhooks reach the web processes
            thread = threading.Thread(target=loop, args=(adapter,), name=f"{adapter.name}-{adapter.receives}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop pulling and listening; hand the pull leases over at once."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(STOP_WAIT_S)
        for lease in self._leases:
            try:
                lease.release(self.clock())
            except Exception:  # noqa: BLE001 - then the lease runs out on its own
                log.exception("releasing the lease %s failed; another process takes over when it runs out", lease.name)
        self._threads.clear()

    # -- pulling ------------------------------------------------------------------

    def _pull_forever(self, adapter: ChatAdapter) -> None:
        lease_s = self.settings.lease_s
        lease = Lease(self.store, self.holder, name=f"pull:{adapter.name}", ttl=timedelta(seconds=lease_s))
        self._leases.append(lease)
        while not self._stopping.is_set():
            if not self._holds(lease):
                self._stopping.wait(lease_s / 3)
                continue
            with Heartbeat(functools.partial(self._holds, lease), lease_s / 3, f"{lease.name} lease") as beat:
                self._pull_while_held(adapter, beat)
            if beat.lost.is_set() and not self._stopping.is_set():
                log.warning("%s: another process took over pulling updates (this one stalled for longer than "
                            "inbound.lease_s, %g s)", adapter.name, lease_s)

    def _holds(self, lease: Lease) -> bool:
        if self._stopping.is_set():
            return False  # a stopping process's heartbeat must not take back the lease it released
        try:
            return lease.acquire(self.clock())
        except Exception:  # noqa: BLE001 - a database that does not answer: not held, tried again soon
            log.exception("%s: taking or renewing the lease failed", lease.name)
            return False

    def _pull_while_held(self, adapter: ChatAdapter, beat: Heartbeat) -> None:
        backoff = _Backoff(self.settings.retry_delay_s)
        prepared = False
        while not self._stopping.is_set() and not beat.lost.is_set():
            try:
                if not prepared:
                    log.info("%s: this process now pulls its updates (%s)", adapter.name, adapter.start_pulling())
                    prepared = True
                self._pull_once(adapter)
                backoff.reset()
            except Exception as error:  # noqa: BLE001 - any failure: pause, then pull again from the saved cursor
                self._pause(adapter, "pulling updates failed", error, backoff)

    def _pull_once(self, adapter: ChatAdapter) -> None:
        name = f"pull:{adapter.name}"
        pulled = adapter.pull(self.cursors.get(name))
        if self._stopping.is_set():
            return  # the next holder pulls these again
        for update in pulled.updates:
            self.chat.receive(adapter, update)
        if pulled.cursor is not None:
            self.cursors.save(name, pulled.cursor)

    # -- connections --------------------------------------------------------------

    def _listen_forever(self, adapter: ChatAdapter) -> None:
        backoff = _Backoff(self.settings.retry_delay_s)
        while not self._stopping.is_set():
            try:
                adapter.listen(functools.partial(self.chat.receive, adapter), self._stopping)
            except Exception as error:  # noqa: BLE001 - bad credentials, the platform down: pause and try again
                self._pause(adapter, "cannot open its connection", error, backoff)

    def _pause(self, adapter: ChatAdapter, what: str, error: Exception, backoff: _Backoff) -> None:
        wait = backoff.next()
        # An OutboundError says what the platform answered, with no secret; anything else is unexpected here.
        log.error("%s: %s: %s; trying again in %.0f s", adapter.name, what,
                  error if isinstance(error, OutboundError) else f"{type(error).__name__}: {error}", wait,
                  exc_info=not isinstance(error, OutboundError))
        self._stopping.wait(wait)


class _Backoff:
    """``first``, then twice as long each time, up to ``MAX_RETRY_DELAY_S``; ``reset`` after a success."""

    def __init__(self, first: float) -> None:
        self.first = first
        self._next = first

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, MAX_RETRY_DELAY_S)
        return wait

    def reset(self) -> None:
        self._next = self.first
