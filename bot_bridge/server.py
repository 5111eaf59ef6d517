"""``bot-bridge serve``: gunicorn in-process, one worker process per model.

Why gunicorn rather than Flask's development server: webhooks must be
answered within the platforms' limits (Slack 3 s) while a model runs, which
needs real threads, timeouts and graceful restarts. The single-box default
(role ``all``) is one worker process with threads: the model is loaded once
and shared by the web threads and the queue's worker threads.
"""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from .config import Settings
from .web import create_app

WEB_THREADS = 8


def run(settings: Settings) -> None:
    _Server(settings).run()


def build_app(settings: Settings):
    """The WSGI app for one process, with its background work started for its role."""
    app = create_app(settings)
    app.extensions["bot_bridge"].start_background(settings.server.role)
    return app


class _Server(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        self.cfg.set("bind", f"{server.host}:{server.port}")
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", WEB_THREADS)
        self.cfg.set("timeout", 120)
        self.cfg.set("graceful_timeout", 30)
        self.cfg.set("accesslog", "-")
        self.cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms')

    def load(self):
        return build_app(self.settings)
