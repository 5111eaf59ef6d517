"""The OpenAPI 3.1 description of ``/api/*``, served at ``/api/openapi.json``."""

from __future__ import annotations

from .. import __version__
from ..emotions import EMOTION_KEYS
from ..errors import ERROR_KINDS


def openapi_document() -> dict:
    scores = {
        "type": "object",
        "properties": {key: {"type": "number", "minimum": 0, "maximum": 1} for key in EMOTION_KEYS},
        "required": list(EMOTION_KEYS),
        "description": "probability of each emotion; the nine sum to 1",
    }
    emotion = {"type": "string", "enum": list(EMOTION_KEYS)}
    error = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "enum": sorted(ERROR_KINDS)},
            "message": {"type": "string"},
            "message_zh": {"type": "string"},
        },
        "required": ["code", "message"],
    }
    window = {
        "type": "object",
        "properties": {
            "start": {"type": "number"},
            "end": {"type": "number"},
            "emotion": emotion,
            "confidence": {"type": "number"},
            "speech": {"type": "number", "description": "share of the window that is speech"},
            "scores": scores,
        },
    }
    result = {
        "type": "object",
        "required": ["id", "emotion", "emoji", "label_zh", "label_en", "confidence", "scores",
                     "duration_s", "speech_ratio", "model", "timings_ms"],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "emotion": emotion,
            "emoji": {"type": "string"},
            "label_zh": {"type": "string"},
            "label_en": {"type": "string"},
            "confidence": {"type": "number"},
            "scores": scores,
            "reason": {"type": ["string", "null"], "enum": ["no_speech", None]},
            "duration_s": {"type": "number"},
            "speech_ratio": {"type": "number"},
            "random_weights": {"type": "boolean", "description": "true: the labels are meaningless"},
            "model": {"type": "object"},
            "audio": {"type": "object"},
            "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
            "log": {"type": "array", "items": {"type": "string"}},
            "timeline": {"type": "array", "items": window},
            "embedding": {"type": "array", "items": {"type": "number"},
                          "description": "utterance mean of the frame features (1024-d large, 768-d base)"},
        },
    }
    errors = {"description": "error", "content": {"application/json": {"schema": error}}}
    result_response = {"content": {"application/json": {"schema": result}}}
    result_id = [{"name": "result_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "bot-bridge", "version": __version__,
                 "description": "Speech emotion recognition with emotion2vec+ (9 classes)."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/predict": {
                "post": {
                    "summary": "Analyse one recording",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "granularity": {"type": "string", "enum": ["utterance", "timeline"], "default": "utterance"},
                            "embedding": {"type": "boolean", "default": False},
                        },
                    }}}},
                    "responses": {"201": {"description": "the result", **result_response},
                                  "4XX": errors, "503": errors, "504": errors, "507": errors},
                }
            },
            "/api/results/{result_id}": {
                "get": {"summary": "A stored result", "parameters": result_id,
                        "responses": {"200": {"description": "the result", **result_response}, "404": errors}}
            },
            "/api/results/{result_id}/embedding.npy": {
                "get": {"summary": "The embedding as a NumPy .npy file", "parameters": result_id,
                        "responses": {"200": {"description": "float32 vector",
                                              "content": {"application/octet-stream": {}}}, "404": errors}}
            },
            "/api/results/{result_id}/audio": {
                "get": {"summary": "The analysed recording, when kept", "parameters": result_id,
                        "responses": {"200": {"description": "the uploaded bytes"}, "404": errors}}
            },
            "/healthz": {"get": {"summary": "The process is up", "security": [],
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "The model is loaded", "security": [],
                                "responses": {"200": {"description": "ready"}, "503": {"description": "loading or failed"}}}},
        },
    }
