"""The Flask application: the HTTP API, chat webhooks and the web console.

``create_app`` is the entry point of web processes (roles ``all`` and
``web``; ``wsgi.py`` and ``bot-bridge serve`` use it); each area is a
blueprint that calls the shared ``Service``. A worker process (role
``worker``) serves only the health checks and metrics (``create_worker_app``).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings, load_settings
from ..service import Service
from .api import api
from .console import init_console
from .console_accounts import admin
from .console_cases import cases
from .console_data import data
from .console_password import password
from .console_sso import init_sso
from .health import health
from .request_limits import upload_limit
from .webhooks import webhooks


def create_app(settings: Settings | None = None, service: Service | None = None) -> Flask:
    settings = settings or (service.settings if service else load_settings())
    service = service or Service(settings)

    app = _flask_app(service)
    app.config["MAX_CONTENT_LENGTH"] = upload_limit(settings)  # the server refuses more before reading it
    app.register_blueprint(api)
    app.register_blueprint(webhooks)
    init_console(app, service)  # the web console's pages, signed sessions and password
    app.register_blueprint(cases)  # its Cases pages
    app.register_blueprint(data)  # its Data page: retention and deleting on request
    app.register_blueprint(admin)  # its admin pages: accounts and the audit log
    app.register_blueprint(password)  # each person's own password
    init_sso(app, settings)  # and single sign-on, where a provider is set
    if hops := settings.console.trusted_proxies:  # behind reverse proxies: the client's own address and scheme
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    return app


def create_worker_app(service: Service) -> Flask:
    """``/healthz``, ``/readyz`` and ``/metrics``, nothing else: a worker has no public HTTP."""
    return _flask_app(service)


def _flask_app(service: Service) -> Flask:
    app = Flask(__name__)
    app.json.ensure_ascii = False  # 恐惧 and 😨 as they are, not as \u escapes (JSON is UTF-8)
    app.extensions["bot_bridge"] = service
    app.register_blueprint(health)
    return app
