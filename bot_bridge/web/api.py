"""The HTTP API: ``/api/*`` for programs (health checks and metrics: ``health.py``).

When ``api.token`` is set, every ``/api/*`` call needs ``Authorization:
Bearer <token>``. Errors are JSON with a stable ``code`` and a ``message``
in English (``message_zh`` in Chinese). In a web process (role ``web``),
``POST /api/predict`` is analysed by a worker (``bot_bridge/acting/remote.py``).

The seed system's own clients keep working unchanged: its Python example
posts to ``/api/predict/`` (trailing slash) and its batch loop to
``/upload``; both are ``POST /api/predict`` under the same token.
"""

from __future__ import annotations

import hmac
import io
import logging
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from ..errors import AudioError, BotBridgeError
from ..hearing.audio import media_type
from ..metrics import count_error
from ..remembering.forgetting import Forgetting, Selection
from ..remembering.store import FRAME_EMBEDDINGS_FILE
from ..service import Service
from ..storage import is_storage_full, storage_full_error
from .openapi import openapi_document

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)

# What each granularity asks of the analysis: one result, 1 s windows, or the model's own frames.
GRANULARITIES = {"utterance": {}, "timeline": {"timeline": True}, "frame": {"frames": True}}
# Routes outside /api/ that are the API all the same (the seed system's batch endpoint).
SEED_API_ROUTES = ("/upload",)


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path in SEED_API_ROUTES


def service() -> Service:
    return current_app.extensions["bot_bridge"]


@api.before_request
def _require_token():
    token = service().settings.api.token
    if not token or not is_api_path(request.path) or request.path == "/api/openapi.json":
        return None
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(supplied.encode(), token.encode()):
        raise BotBridgeError("unauthorized", "missing or wrong API bearer token")
    return None


@api.get("/api/openapi.json")
def openapi():
    return jsonify(openapi_document())


@api.post("/api/predict")
@api.post("/api/predict/")
@api.post("/upload")
def predict():
    asked = analysis_request()
    result = service().analyse(**asked)
    return jsonify(result.to_dict(include_embedding=asked["embedding"])), 201


def analysis_request() -> dict:
    """The recording and options of this request, as ``Service.analyse`` takes them (the API's and the
    console's form); raises ``BotBridgeError`` ``invalid_request``."""
    upload = request.files.get("file")
    if upload is None:
        raise BotBridgeError("invalid_request", "no multipart field 'file'", problem="missing the 'file' field")
    granularity = request.form.get("granularity", "utterance")
    if granularity not in GRANULARITIES:
        raise BotBridgeError(
            "invalid_request",
            f"granularity={granularity!r}",
            problem="granularity must be utterance, timeline or frame",
        )
    transcribe = request.form.get("transcribe")
    return {
        "data": upload.read(),
        "file_name": upload.filename,
        "embedding": _flag(request.form.get("embedding", "false"), "embedding"),
        "origin": "console" if request.form.get("origin") == "console" else "api",
        "transcribe": None if transcribe is None else _flag(transcribe, "transcribe"),
        **GRANULARITIES[granularity],
    }


@api.get("/api/results/<result_id>")
def get_result(result_id: str):
    row = service().store.result_row(result_id)
    if row is None:
        raise BotBridgeError("not_found", f"result {result_id}")
    return jsonify(row.payload)


@api.delete("/api/results/<result_id>")
def delete_result(result_id: str):
    """Delete a result with all that holds it (its chat note, folder, recording, search words): how a voice
    product answers a person who asks. Only under ``api.token``: an open API may read, never delete."""
    if not service().settings.api.token:
        raise BotBridgeError("token_required", "DELETE /api/results needs api.token set")
    if service().store.result_row(result_id) is None:
        raise BotBridgeError("not_found", f"result {result_id}")
    forgetting = Forgetting(service().store, batch=service().settings.retention.batch)
    deleted = forgetting.forget(Selection.of_results([result_id]), actor="api", via="api")
    return jsonify(deleted={"notes": deleted.notes, "results": deleted.results})


@api.get("/api/results/<result_id>/embedding.npy")
def get_embedding(result_id: str):
    vector = service().store.embedding(result_id)
    if vector is None:
        raise BotBridgeError("not_found", f"embedding of result {result_id}")
    buffer = io.BytesIO()
    np.save(buffer, vector)
    buffer.seek(0)
    return send_file(buffer, mimetype="application/octet-stream", as_attachment=True, download_name="embedding.npy")


@api.get("/api/results/<result_id>/frame_embeddings.npy")
def get_frame_embeddings(result_id: str):
    path = service().store.result_file(result_id, FRAME_EMBEDDINGS_FILE)
    if path is None:
        raise BotBridgeError("not_found", f"frame embeddings of result {result_id}")
    return send_file(path, mimetype="application/octet-stream", as_attachment=True, download_name="frame_embeddings.npy")


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
    count_error(error.code, "api")
    log.log(error_log_level(error), "%s %s -> %s: %s", request.method, request.path, error.code, error.detail)
    return jsonify(error.to_dict()), error.http_status


def error_log_level(error: BotBridgeError) -> int:
    """Bad input is the sender's problem (a warning); the rest is ours (an error)."""
    return logging.WARNING if isinstance(error, AudioError) or error.http_status < 500 else logging.ERROR


@api.app_errorhandler(RequestEntityTooLarge)
def _too_large(_error):
    limit = service().settings.audio.max_bytes
    error = BotBridgeError("too_large", f"request body over {limit} bytes", limit_mb=round(limit / 1e6))
    return _bot_bridge_error(error)


@api.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    """``/api/*`` answers programs in JSON; elsewhere the error as Flask gives it (the console styles its 404)."""
    if not is_api_path(request.path):
        return error
    body = {"code": error.name.lower().replace(" ", "_"), "message": error.description}
    return jsonify(body), error.code


@api.app_errorhandler(Exception)
def _unexpected(error: Exception):
    if is_storage_full(error):  # a result folder, the database or the queue: 507, and space is what to fix
        return _bot_bridge_error(storage_full_error(service().settings, error))
    log.exception("%s %s failed", request.method, request.path)
    count_error("internal_error", "api")
    if not is_api_path(request.path):
        return InternalServerError()
    return jsonify(BotBridgeError("internal_error").to_dict()), 500


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise BotBridgeError("invalid_request", f"{name}={value!r}", problem=f"{name} must be true or false")
