"""Pacing for group robots whose platform allows a few messages a minute and then refuses (or mutes) the robot.

WeCom's group robot takes 20 messages a minute, DingTalk's custom robot 20 a
minute and then throttles it for 10 minutes: each robot's sends are paced
here, waiting for a free slot, so a long escalation or a digest with its
chart is not refused halfway. A send waits for its own robot only, and stops
waiting when the scheduler stops (``stop_waiting`` of the sender, which
raises ``Stopping`` in the waiting send). ``PacedRobot`` is what both
robots' senders are built on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import Callable, ClassVar

from bot_bridge.chat.outbound import OutboundError

from .base import AlertSender


class Stopping(OutboundError):
    """A send given up because the process is stopping; the next sweep (in whichever process) sends it."""

    def __init__(self, call: str) -> None:
        super().__init__(call, "bot-bridge is stopping; not sent, left for the next try", retryable=True)


class Pace:
    """At most ``count`` sends per ``window_s`` seconds for each key; a send over that waits for its turn.

    Each send books its turn under the lock (now, or a window after the
    ``count``-th send before it) and waits for it outside the lock, so a
    robot at its limit delays only its own sends. Counted in this process
    only: the scheduler sends every alert of a deployment from the one
    process that holds its lease. ``what`` names the robots in the log line
    of a wait, written to ``log``.
    """

    def __init__(self, count: int, window_s: float, clock: Callable[[], float], sleep: Callable[[float], bool | None],
                 *, log: logging.Logger, what: str) -> None:
        self.count = count
        self.window_s = window_s
        self.clock = clock
        self.sleep = sleep
        self.log = log
        self.what = what
        self._turns: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=count))  # each key's last turns
        self._lock = threading.Lock()

    def wait_for_turn(self, key: str) -> bool:
        """Wait until ``key`` may send; False when the wait was cut short (the process is stopping)."""
        with self._lock:
            now = self.clock()
            turns = self._turns[key]
            turn = now if len(turns) < self.count else max(now, turns[0] + self.window_s)
            turns.append(turn)
        wait = turn - now
        if wait <= 0:
            return True
        self.log.info("%s: %d messages a minute at most; waiting %.0f s", self.what, self.count, wait)
        return not self.sleep(wait)


class PacedRobot(AlertSender):
    """An alert-only group robot: at most ``messages_per_minute`` sends a minute per robot, each send waiting for
    its turn (``wait_for_turn``) and giving up when the process stops."""

    messages_per_minute: ClassVar[int] = 20

    def __init__(
        self,
        settings: dict,
        http=None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool | None] | None = None,
    ) -> None:
        """``sleep(seconds)`` waits for a turn; by default it returns early, and True, on ``stop_waiting``."""
        super().__init__(settings, http)
        self._stopping = threading.Event()
        self._pace = Pace(self.messages_per_minute, 60.0, clock, sleep or self._stopping.wait,
                          log=logging.getLogger(type(self).__module__), what=self.name.replace("_", " "))

    def stop_waiting(self) -> None:
        self._stopping.set()

    def wait_for_turn(self, robot: str, call: str) -> None:
        """Wait until ``robot`` (its key or token) may send; ``Stopping`` when the process stops meanwhile."""
        if not self._pace.wait_for_turn(robot) or self._stopping.is_set():
            raise Stopping(call)
