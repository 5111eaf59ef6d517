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
            "reason": {"type": ["string", "null"], "enum": ["no_speech", None],
                       "description": "no_speech: less than half the window is speech; emotion unknown"},
            "scores": scores,
        },
    }
    frames = {
        "type": "object",
        "description": "granularity=frame: the model's own frames, each scored by its head alone",
        "properties": {
            "rate_hz": {"type": "integer", "const": 50},
            "emotions": {"type": "array", "items": emotion, "description": "the column order of scores"},
            "times": {"type": "array", "items": {"type": "number"}, "description": "centre of each frame, s"},
            "speech": {"type": "array", "items": {"type": "integer", "enum": [0, 1]},
                       "description": "1 where voice activity detection heard speech"},
            "emotion": {"type": "array", "items": emotion, "description": "top emotion; unknown outside speech"},
            "scores": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                       "description": "probabilities per frame, in the order of emotions"},
        },
    }
    segment = {
        "type": "object",
        "properties": {
            "start": {"type": "number", "description": "seconds: the first speech of the segment"},
            "end": {"type": "number", "description": "seconds: the last speech of the segment"},
            "text": {"type": "string"},
            "language": {"type": ["string", "null"], "description": "zh, en, yue, ja, ko or nospeech"},
            "emotion": {"type": ["string", "null"], "enum": [*EMOTION_KEYS, None]},
            "event": {"type": ["string", "null"], "description": "SenseVoice's event tag: Speech, Laughter, BGM, ..."},
        },
    }
    transcript = {
        "type": ["object", "null"],
        "description": "what was said, by SenseVoice-Small; null when not asked for or not available "
                       "(then /readyz says why). Never logged: stored only with its result",
        "required": ["text", "language", "segments", "events", "sensevoice_emotion", "model"],
        "properties": {
            "text": {"type": "string", "description": "SenseVoice's rich transcription, segments joined"},
            "language": {"type": ["string", "null"], "description": "the language of the most speech"},
            "segments": {"type": "array", "items": segment, "description": "one per pause-split chunk with speech"},
            "events": {"type": "array", "items": {"type": "string"}, "description": "audio events heard, in order"},
            "sensevoice_emotion": {"type": ["string", "null"], "enum": [*EMOTION_KEYS, None],
                                   "description": "SenseVoice's own emotion tag; `emotion` (emotion2vec+) may differ"},
            "model": {"type": "object"},
            "random_weights": {"type": "boolean", "description": "true: the words are meaningless"},
            "warning": {"type": "string", "description": "present when the words are meaningless"},
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
            "frames": frames,
            "transcript": transcript,
            "embedding": {"type": "array", "items": {"type": "number"},
                          "description": "utterance mean of the frame features (1024-d large, 768-d base)"},
            "has_embedding": {"type": "boolean"},
            "has_frame_embeddings": {"type": "boolean",
                                     "description": "frame_embeddings.npy (frames x dimensions) can be downloaded"},
        },
    }
    errors = {"description": "error", "content": {"application/json": {"schema": error}}}
    result_response = {"content": {"application/json": {"schema": result}}}
    result_id = [{"name": "result_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    predict = {
        "summary": "Analyse one recording",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "granularity": {"type": "string", "enum": ["utterance", "timeline", "frame"], "default": "utterance",
                                "description": "timeline: 1 s windows every 0.5 s; frame: the model's 50 frames a second"},
                "embedding": {"type": "boolean", "default": False,
                              "description": "the utterance embedding; with granularity=frame also frame_embeddings.npy"},
                "transcribe": {"type": "boolean",
                               "description": "add the transcript; default: the transcribe.enabled setting"},
            },
        }}}},
        "responses": {"201": {"description": "the result", **result_response}, "4XX": errors, "503": errors,
                      "504": errors, "507": errors},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "bot-bridge", "version": __version__,
                 "description": "Speech emotion recognition with emotion2vec+ (9 classes), "
                                "and transcripts with SenseVoice-Small."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/api/predict": {"post": predict},
            "/api/predict/": {"post": {**predict, "summary": "The same, as the seed system's clients call it"}},
            "/upload": {"post": {**predict, "summary": "The same, for the seed system's batch loop (curl -F file=@...)"}},
            "/api/results/{result_id}": {
                "get": {"summary": "A stored result", "parameters": result_id,
                        "responses": {"200": {"description": "the result", **result_response}, "404": errors}},
                "delete": {"summary": "Delete a result with its chat note, folder, recording and search words "
                                      "(needs api.token set on the server)",
                           "parameters": result_id,
                           "responses": {"200": {"description": "how many notes and results went", "content": {
                               "application/json": {"schema": {"type": "object", "properties": {"deleted": {
                                   "type": "object", "properties": {"notes": {"type": "integer"},
                                                                    "results": {"type": "integer"}}}}}}}},
                               "401": errors, "403": errors, "404": errors}},
            },
            "/api/results/{result_id}/embedding.npy": {
                "get": {"summary": "The embedding as a NumPy .npy file", "parameters": result_id,
                        "responses": {"200": {"description": "float32 vector",
                                              "content": {"application/octet-stream": {}}}, "404": errors}}
            },
            "/api/results/{result_id}/frame_embeddings.npy": {
                "get": {"summary": "The frame embeddings (granularity=frame, embedding=true) as a NumPy .npy file",
                        "parameters": result_id,
                        "responses": {"200": {"description": "float32 array, frames x dimensions",
                                              "content": {"application/octet-stream": {}}}, "404": errors}}
            },
            "/api/results/{result_id}/audio": {
                "get": {"summary": "The analysed recording, when kept", "parameters": result_id,
                        "responses": {"200": {"description": "the uploaded bytes"}, "404": errors}}
            },
            "/healthz": {"get": {"summary": "The process is up", "security": [],
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "The model is loaded (the transcriber's state is told beside it)",
                                "security": [],
                                "responses": {"200": {"description": "ready"}, "503": {"description": "loading or failed"}}}},
        },
    }
