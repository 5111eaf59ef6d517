"""WSGI entry point for gunicorn: ``gunicorn -c config/gunicorn.conf.py wsgi:app``."""

from bot_bridge.config import load_settings
from bot_bridge.logs import configure_logging
from bot_bridge.server import build_app

settings = load_settings()
configure_logging(settings)
app = build_app(settings)
