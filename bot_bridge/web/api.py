"""The HTTP API: ``/api/*`` for programs (health checks and metrics: ``health.py``).

When ``api.token`` is set, every ``/api/*`` call needs ``Authorization:
Bearer <token>``. Errors are JSON with a stable ``code`` and a ``message``
in English (``message_zh`` in Chinese). In a web process (role ``web``),
``POST /api/predict`` is analysed by a worker (``bot_bridge/acting/remote.py``).
"""

from __future__ import annotations

import hmac
import io
import logging
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from ..chat.messages import clean_file_name
from ..errors import AudioError, BotBridgeError
from ..hearing.audio import media_type
from ..metrics import count_error
from ..service import Service
from ..storage import is_storage_full, storage_full_error
from .openapi import openapi_document

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)

GRANULARITIES = {"utterance": False, "timeline": True, "frame": True}  # "frame" as the seed system said


def service() -> Service:
    return current_app.extensions["bot_bridge"]


@api.before_request
def _require_token():
    token = service().settings.api.token
    if not token or not request.path.startswith("/api/") or request.path == "/api/openapi.json":
        return None
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(supplied.encode(), token.encode()):
        raise BotBridgeError("unauthorized", "missing or wrong API bearer token")
    return None


@api.get("/api/openapi.json")
def openapi():
    return jsonify(openapi_document())


@api.post("/api/predict")
def predict():
    upload = request.files.get("file")
    if upload is None:
        raise BotBridgeError("invalid_request", "no multipart field 'file'", problem="missing the 'file' field")
    granularity = request.form.get("granularity", "utterance")
    if granularity not in GRANULARITIES:
        raise BotBridgeError(
            "invalid_request",
            f"granularity={granularity!r}",
            problem="granularity must be utterance or timeline",
        )
    embedding = _flag(request.form.get("embedding", "false"), "embedding")
    data = upload.read()
    result = service().analyse(
        data,
        file_name=clean_file_name(upload.filename),
        timeline=GRANULARITIES[granularity],
        embedding=embedding,
        origin="console" if request.form.get("origin") == "console" else "api",
    )
    return jsonify(result.to_dict(include_embedding=embedding)), 201


@api.get("/api/results/<result_id>")
def get_result(result_id: str):
    row = service().store.result_row(result_id)
    if row is None:
        raise BotBridgeError("not_found", f"result {result_id}")
    return jsonify(row.payload)


@api.get("/api/results/<result_id>/embedding.npy")
def get_embedding(result_id: str):
    vector = service().store.embedding(result_id)
    if vector is None:
        raise BotBridgeError("not_found", f"embedding of result {result_id}")
    buffer = io.BytesIO()
    np.save(buffer, vector)
    buffer.seek(0)
    return send_file(buffer, mimetype="application/octet-stream", as_attachment=True, download_name="embedding.npy")


@api.get("/api/results/<result_id>/audio")
def get_audio(result_id: str):
    row = service().store.result_row(result_id)
    if row is None or row.audio_file is None:
        raise BotBridgeError("not_found", f"audio of result {result_id}")
    suffix, mimetype = media_type(row.payload["audio"].get("container", ""))
    name = f"{Path(row.file_name).stem}{suffix}" if row.file_name else f"audio{suffix}"
    return send_file(row.audio_file, mimetype=mimetype, as_attachment=not mimetype.startswith("audio/"), download_name=name)


@api.after_request
def _no_active_content(response):
    """Nothing under /api/ is a page: browsers must not sniff it into one or run it."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@api.app_errorhandler(BotBridgeError)
def _bot_bridge_error(error: BotBridgeError):
    level = logging.WARNING if isinstance(error, AudioError) or error.http_status < 500 else logging.ERROR
    count_error(error.code, "api")
    log.log(level, "%s %s -> %s: %s", request.method, request.path, error.code, error.detail)
    return jsonify(error.to_dict()), error.http_status


@api.app_errorhandler(RequestEntityTooLarge)
def _too_large(_error):
    limit = service().settings.audio.max_bytes
    error = BotBridgeError("too_large", f"request body over {limit} bytes", limit_mb=round(limit / 1e6))
    return _bot_bridge_error(error)


@api.app_errorhandler(HTTPException)
def _http_error(error: HTTPException):
    if not request.path.startswith("/api/"):
        return error
    body = {"code": error.name.lower().replace(" ", "_"), "message": error.description}
    return jsonify(body), error.code


@api.app_errorhandler(Exception)
def _unexpected(error: Exception):
    if is_storage_full(error):  # a result folder, the database or the queue: 507, and space is what to fix
        return _bot_bridge_error(storage_full_error(service().settings, error))
    log.exception("%s %s failed", request.method, request.path)
    count_error("internal_error", "api")
    if not request.path.startswith("/api/"):
        return InternalServerError()
    return jsonify(BotBridgeError("internal_error").to_dict()), 500


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise BotBridgeError("invalid_request", f"{name}={value!r}", problem=f"{name} must be true or false")
