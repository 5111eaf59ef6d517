"""What orchestrators and Prometheus ask every process: ``/healthz``, ``/readyz``, ``/metrics``.

These are the only routes of a worker process (role ``worker``), on its
own port, and are served by web processes too. None needs the API token or
the console sign-in: they say nothing about any recording, only counts and
timings, and an orchestrator or a scraper should not hold credentials that
can upload audio. Keep them off the public internet (docs/metrics.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..metrics import exposition
from .api import service

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    """Ready: the model is loaded (workers), or the database and queue answer (web processes)."""
    state = service().readiness()
    return jsonify(state), 200 if state["state"] == "ready" else 503


@health.get("/metrics")
def metrics():
    body, content_type = exposition(service())
    return Response(body, content_type=content_type)
