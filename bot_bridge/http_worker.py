"""The HTTP server inside each process: gunicorn supervises, hypercorn reads the requests.

Why: gunicorn's ``gthread`` worker reads a request inside one of its few
threads with no deadline, so a dozen clients sending a byte at a time held
every thread and ``/healthz`` went unanswered (issue 10). Here each process
runs hypercorn (a well-known asyncio HTTP/1.1 and HTTP/2 server, the one
Quart uses) on gunicorn's listening sockets. Its event loop reads headers and
bodies for any number of connections at once; the Flask app runs in a thread
only once its request is whole (hypercorn's WSGI support buffers the body),
so a slow client costs a socket, never a thread. Nothing waits forever:

* headers must be complete within ``KEEPALIVE_S`` of the connection opening
  (hypercorn's idle timer, which also ends kept-alive connections);
* a body must be complete within ``server.body_timeout_s`` of its headers,
  and no larger than its route allows (``web/request_limits.py``, which
  refuses an oversized body before reading it).

Why not the others (measured and read in ``docs/operations.md``): uvicorn's
gunicorn worker and gunicorn's own ``asgi`` worker also read on an event
loop but have no deadline for headers; asgiref's WSGI adapter runs every
request in one thread; waitress has no deadline that a byte every few
seconds does not renew, and no process supervision. gunicorn stays the
parent: it starts and restarts processes and runs the ``worker_exit`` and
``child_exit`` hooks that hand back notes and tidy metrics
(``bot_bridge/server.py``). SIGTERM stops accepting, lets requests in flight
finish for ``GRACE_S``, then the process hands back its work as before.
"""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from gunicorn.workers.base import Worker
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets

from .web.request_limits import RequestLimits

# How long requests in flight may go on after SIGTERM before the process moves on to handing back its work.
GRACE_S = 10.0
HEARTBEAT_S = 1.0


class BufferingWorker(Worker):
    """A gunicorn worker (process) that serves its WSGI app with hypercorn; ``server.threads`` threads run it."""

    def init_signals(self) -> None:
        # gunicorn's handlers would interrupt the event loop; the loop installs its own in _serve.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, lambda *_: self.log.reopen_files())

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="http"))
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()  # does not wait for a request still running in a thread: worker_exit comes next
            # Closing the loop put SIGTERM back to its default (end the process). The stop is under way, and
            # the parent's own SIGTERM may still come: it must not cut short the hand-back in worker_exit.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, stopping.set)
        heartbeat = loop.create_task(self._heartbeat(stopping))
        try:
            await worker_serve(RequestLimits.around(self.wsgi), self._hypercorn_config(),
                               sockets=Sockets([], [listener.sock for listener in self.sockets], []),
                               shutdown_trigger=stopping.wait)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, stopping: asyncio.Event) -> None:
        """Tell the gunicorn parent this process is alive; stop if the parent went away."""
        while not stopping.is_set():
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                stopping.set()
            await asyncio.sleep(HEARTBEAT_S)

    def _hypercorn_config(self) -> Config:
        config = Config()
        config.keep_alive_timeout = self.cfg.keepalive  # also the deadline for a request's headers
        config.graceful_timeout = GRACE_S
        config.wsgi_max_body_size = RequestLimits.largest_body(self.wsgi)
        config.accesslog = self.log.access_log
        config.access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
        config.errorlog = self.log.error_log
        return config
