"""The seed system's own client code, run unchanged against bot-bridge on a real HTTP server.

The article bot-bridge grew from (``/work/shared/notes/seed-system.md``) shows a Python client
posting to ``/api/predict/`` (with the trailing slash) and reading ``emotion`` and ``confidence``,
a shell loop that posts every MP3 of a folder to ``/upload`` with curl, and a "frame" mode with
per-frame scores and a frame-level embedding. Each is exercised here as its users wrote it.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading

import numpy as np
import pytest
import requests
from werkzeug.serving import make_server

from bot_bridge.web import create_app
from tests import audio_fixtures as af

FRAMES_PER_S = 50


@pytest.fixture
def base_url(service):
    """bot-bridge on 127.0.0.1, a free port, as ``bot-bridge serve`` answers on 7860."""
    http = make_server("127.0.0.1", 0, create_app(service=service), threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()


def test_the_seed_python_client_with_its_trailing_slash(base_url, tmp_path):
    customer = tmp_path / "customer.mp3"
    customer.write_bytes(af.encode(af.speech_clip(4.0), 16000, "mp3"))

    # The article's code, with only the host changed.
    with open(customer, "rb") as f:
        resp = requests.post(
            f"{base_url}/api/predict/",
            files={"file": f},
            data={"granularity": "utterance"}
        )
    result = resp.json()
    line = f"情绪: {result['emotion']}, 置信度: {result['confidence']:.1%}"

    assert resp.ok and result["emotion"] in line and result["scores"][result["emotion"]] == result["confidence"]
    assert result["file_name"] == "customer.mp3"


def test_the_seed_batch_loop_posts_every_file_to_upload(base_url, service, tmp_path):
    batch = tmp_path / "audio_batch"
    batch.mkdir()
    for number, seconds in enumerate((3.0, 4.0, 5.0)):
        (batch / f"call-{number}.mp3").write_bytes(af.encode(af.speech_clip(seconds), 16000, "mp3"))

    # The article's loop, as a shell runs it.
    script = f'for file in audio_batch/*.mp3; do\n  curl -sS -F "file=@$file" {base_url}/upload\n  echo\ndone\n'
    printed = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)

    answers = [json.loads(line) for line in printed.stdout.splitlines() if line.strip()]
    assert [a["file_name"] for a in answers] == ["call-0.mp3", "call-1.mp3", "call-2.mp3"]
    for answer in answers:
        folder = next(service.settings.outputs_dir.glob(f"*_{answer['id']}"))  # "按时间戳分目录保存"
        assert json.loads((folder / "result.json").read_text(encoding="utf-8"))["emotion"] == answer["emotion"]
        assert answer["duration_s"] > 2.5


def test_upload_needs_the_api_token_like_every_api_route(settings, service, base_url):
    settings.api.token = "batch-token"
    wav = af.encode(af.speech_clip(3.0), 16000, "wav_s16")
    refused = requests.post(f"{base_url}/upload", files={"file": ("a.wav", wav)})
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    allowed = requests.post(f"{base_url}/upload", files={"file": ("a.wav", wav)}, headers={"Authorization": "Bearer batch-token"})
    assert allowed.status_code == 201


def test_frame_granularity_gives_the_models_own_frames(client, tiny_model):
    speech = af.speech_clip(6.0)
    response = client.post("/api/predict", data={"file": (io.BytesIO(af.encode(speech, 16000, "wav_f32")), "f.wav"),
                                                 "granularity": "frame"})

    result = response.json
    assert response.status_code == 201, result
    frames = result["frames"]
    assert frames["rate_hz"] == FRAMES_PER_S and frames["emotions"] == list(result["scores"])
    count = len(frames["times"])
    assert count == pytest.approx(6.0 * FRAMES_PER_S, abs=2)
    assert len(frames["scores"]) == len(frames["emotion"]) == len(frames["speech"]) == count
    assert np.allclose(np.diff(frames["times"]), 1 / FRAMES_PER_S, atol=1e-3)

    # Each frame's scores are the model's head on that frame, nothing pooled.
    expected = tiny_model.classify(tiny_model.frame_features(speech))
    assert np.allclose(frames["scores"], expected, atol=1e-4)
    keys = frames["emotions"]
    for label, row, spoken in zip(frames["emotion"], frames["scores"], frames["speech"]):
        assert label == (keys[int(np.argmax(row))] if spoken else "unknown")
    assert 0 < sum(frames["speech"]) < count  # the clip has pauses
    assert "timeline" not in result  # the 1 s timeline is its own granularity
    assert client.get(f"/api/results/{result['id']}").json["frames"] == frames


def test_frame_embeddings_on_request_as_a_frames_by_dimensions_npy(client):
    long_note = af.speech_clip(40.0)  # over 30 s: analysed in chunks, frames from every chunk
    response = client.post("/api/predict", data={
        "file": (io.BytesIO(af.encode(long_note, 16000, "wav_s16")), "long.wav"), "granularity": "frame", "embedding": "true"})

    result = response.json
    assert response.status_code == 201, result
    assert result["has_frame_embeddings"] is True
    download = client.get(f"/api/results/{result['id']}/frame_embeddings.npy")
    assert download.status_code == 200
    frames = np.load(io.BytesIO(download.data))
    assert frames.shape == (len(result["frames"]["times"]), result["model"]["embedding_dim"]) and frames.dtype == np.float32
    assert frames.shape[0] == pytest.approx(40.0 * FRAMES_PER_S, abs=6)
    assert len(result["embedding"]) == frames.shape[1]  # the utterance embedding as before

    plain = client.post("/api/predict", data={"file": (io.BytesIO(af.encode(af.speech_clip(3.0), 16000, "wav_s16")), "u.wav"),
                                              "embedding": "true"}).json
    assert plain["has_frame_embeddings"] is False
    assert client.get(f"/api/results/{plain['id']}/frame_embeddings.npy").json["code"] == "not_found"


def test_frames_of_a_recording_without_speech_are_unknown(client):
    response = client.post("/api/predict", data={"file": (io.BytesIO(af.encode(af.silence(3.0), 16000, "wav_s16")), "q.wav"),
                                                 "granularity": "frame"})
    frames = response.json["frames"]
    assert response.json["reason"] == "no_speech"
    assert len(frames["times"]) == pytest.approx(3.0 * FRAMES_PER_S, abs=2)
    assert set(frames["emotion"]) == {"unknown"} and not any(frames["speech"])


def test_the_openapi_document_describes_frames_and_the_seed_routes(client):
    document = client.get("/api/openapi.json").json
    assert {"/upload", "/api/results/{result_id}/frame_embeddings.npy"} <= set(document["paths"])
    form = document["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["granularity"]["enum"] == ["utterance", "timeline", "frame"]
    result = document["paths"]["/api/predict"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert {"frames", "has_frame_embeddings"} <= set(result["properties"])
