"""``bot-bridge serve``: gunicorn in-process, for each of the three roles.

Why gunicorn rather than Flask's development server: webhooks must be
answered within the platforms' limits (Slack 3 s) while a model runs, which
needs real threads, timeouts, graceful restarts, and a parent that starts a
new process when one dies. Every role gets that supervision:

* ``all`` (the single-box default): one process with HTTP threads, the model
  and the queue's worker threads.
* ``web``: HTTP only, one process per core by default; never loads the model.
* ``worker``: the model and the queue's worker threads, one process by
  default; its port serves only ``/healthz``, ``/readyz`` and ``/metrics``.

``bot_bridge/layout.py`` says how many processes and threads, and why.
``config/gunicorn.conf.py`` gives an external ``gunicorn`` the same settings.
"""

from __future__ import annotations

import math

from gunicorn.app.base import BaseApplication

from .config import Settings
from .layout import process_layout
from .metrics import forget_instance, forget_process, start_process_sampler, use_instance_directory
from .remembering.store import Store
from .service import Service
from .storage import check_storage
from .web import create_app, create_worker_app

# Processes report to the parent from their event loop each second; this only catches a process that hangs.
WORKER_TIMEOUT_S = 120
# gunicorn's graceful_timeout: the queue's grace for notes in work, plus time to hand back and close.
SHUTDOWN_MARGIN_S = 20
# An idle kept-alive connection is closed after this, and a new request's headers must arrive within it.
KEEPALIVE_S = 5


def run(settings: Settings) -> None:
    prepare_instance(settings)
    _Server(settings).run()


def prepare_instance(settings: Settings) -> None:
    """In the parent, before any process is forked: storage that can be written, the schema migrated once,
    fresh metrics. Raises ``ConfigError`` naming the setting when the data or the database cannot be written."""
    check_storage(settings, lambda: Store(settings.resolved_database_url, settings.outputs_dir).close())
    use_instance_directory(settings)


def gunicorn_settings(settings: Settings) -> dict:
    """gunicorn's settings for a ``serve`` of ``settings.server.role``."""
    server = settings.server
    layout = process_layout(settings)
    return {
        "bind": f"{server.host}:{server.port}",
        "workers": layout.processes,
        "worker_class": "bot_bridge.http_worker.BufferingWorker",
        "threads": layout.http_threads,
        "timeout": WORKER_TIMEOUT_S,
        "graceful_timeout": math.ceil(settings.queue.shutdown_grace_s) + SHUTDOWN_MARGIN_S,
        "keepalive": KEEPALIVE_S,
        # gunicorn 27 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: a second service
        # on the host would take it over. bot-bridge is managed by signals (systemd, an orchestrator).
        "control_socket_disable": True,
        "proc_name": f"bot-bridge-{server.role}",
        "accesslog": "-",  # the worker logs each request in its own format (bot_bridge/http_worker.py)
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "on_exit": lambda _arbiter: forget_instance(settings),
    }


def build_app(settings: Settings):
    """The WSGI app of one process, with its background work started for its role."""
    layout = process_layout(settings)
    if layout.loads_model:
        settings.model.threads = layout.model_threads
    service = Service(settings)
    app = create_worker_app(service) if settings.server.role == "worker" else create_app(settings, service)
    service.start_background(settings.server.role)
    start_process_sampler(service, settings.server.role)
    return app


def _worker_exit(_arbiter, worker) -> None:
    """A process on its way out (SIGTERM, a restart): finish or hand back its notes, release its leases."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        app.extensions["bot_bridge"].close()


def _child_exit(_arbiter, worker) -> None:
    forget_process(worker.pid)


class _Server(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self.settings).items():
            self.cfg.set(name, value)

    def load(self):
        return build_app(self.settings)
