"""Renewing a lease while the work it guards goes on, from a thread of its own.

A lease that only the work renews would run out whenever one step of the
work takes long (a download, a 30 s long poll), and another process would
take over what is still being done. A heartbeat renews it every third of its
length instead, so the lease can stay short (a dead holder is replaced soon)
however long a step is. Voice notes (``worker``) and pulled platforms
(``listeners``) both use it.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``renew`` every ``every_s`` seconds while the ``with`` block runs.

    ``renew`` returns False when the lease was taken back (this holder
    stalled past it): the beating stops and ``lost`` is set, and the work
    finds out at its next conditional write. A ``renew`` that raises (a busy
    database) is logged and tried again at the next beat.
    """

    def __init__(self, renew: Callable[[], bool], every_s: float, name: str) -> None:
        self.renew = renew
        self.every_s = every_s
        self.name = name
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=name, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a busy database now is no reason to stop renewing
                log.exception("%s: renewing the lease failed", self.name)
