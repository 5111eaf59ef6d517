"""The HTTP API, as a program sees it: every good format gives a result, every bad input a
stable error code, and the service keeps serving through all of them."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bot_bridge.emotions import EMOTION_KEYS
from tests import audio_fixtures as af

GOOD_FORMATS = [
    "amr", "3gp_amr", "ogg_opus", "webm_opus", "m4a_aac", "m4a_aac_moov_end", "m4a_alac",
    "mp3", "flac16", "flac24", "wav_s16", "wav_s24", "wav_f32", "mp4_video", "webm_video", "silk",
]

BAD_INPUTS = {
    "empty file": (af.empty_file, "empty_file"),
    "text renamed as audio": (af.text_as_audio, "not_audio"),
    "image renamed as audio": (af.png_as_audio, "not_audio"),
    "truncated Ogg": (af.truncated_ogg, "truncated_audio"),
    "MP4 without moov": (af.mp4_without_moov, "truncated_audio"),
    "truncated MP4": (af.truncated_mp4, "truncated_audio"),
    "zero samples": (af.zero_sample_wav, "no_samples"),
    "header-only AMR": (af.amr_header_only, "no_samples"),
    "WAV claiming 2 GiB": (af.wav_claiming_2gib, "truncated_audio"),
    "NaN samples": (af.nan_wav, "invalid_samples"),
    "Inf samples": (af.inf_wav, "invalid_samples"),
    "video without audio": (af.video_without_audio, "no_audio_stream"),
    "too short": (lambda: af.encode(af.speech_clip(3.0)[:1600], 16000, "wav_s16"), "too_short"),
}


def post(client, data: bytes, name: str = "note.bin", **form):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), name), **form}, content_type="multipart/form-data")


def assert_valid_result(result: dict) -> None:
    assert result["emotion"] in EMOTION_KEYS
    assert set(result["scores"]) == set(EMOTION_KEYS)
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["confidence"] == max(result["scores"].values())
    assert result["emoji"] and result["label_zh"] and result["label_en"]
    assert result["random_weights"] is True  # the tests' tiny model
    assert {"decode", "vad", "total"} <= set(result["timings_ms"])


@pytest.fixture(scope="module")
def speech_3s():
    return af.speech_clip(3.0)


@pytest.mark.parametrize("fmt", GOOD_FORMATS)
def test_every_good_format_gives_a_result(client, speech_3s, fmt):
    response = post(client, af.encode(speech_3s, 16000, fmt), f"note.{fmt}")

    assert response.status_code == 201, response.json
    result = response.json
    assert_valid_result(result)
    assert result["duration_s"] == pytest.approx(3.0, rel=0.02)
    assert result["speech_ratio"] > 0.5
    assert result["reason"] is None


def test_a_stereo_48k_upload_is_mixed_to_mono_and_resampled_to_16k(client):
    """A voice on the left channel only, silence on the right, at 48 kHz: the voice survives the mix and the
    3 s stay 3 s (at 16 kHz a 48 kHz stream read as is would last 9 s)."""
    voice = af.speech_clip(3.0, sample_rate=48000)
    stereo = np.stack([voice, np.zeros_like(voice)], axis=1)

    response = post(client, af.encode(stereo, 48000, "wav_s24"), "stereo.wav")

    assert response.status_code == 201, response.json
    result = response.json
    assert (result["audio"]["sample_rate"], result["audio"]["channels"]) == (48000, 2)
    assert result["duration_s"] == pytest.approx(3.0, abs=0.01)
    assert result["speech_ratio"] > 0.5 and result["reason"] is None
    assert "(48000 Hz, 2 ch) -> 16 kHz mono" in result["log"][0]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_every_bad_input_gets_its_own_error_code_and_the_service_keeps_serving(client, speech_3s, name):
    build, code = BAD_INPUTS[name]

    response = post(client, build(), "upload.ogg")

    assert 400 <= response.status_code < 500
    assert response.json["code"] == code
    assert response.json["message"] and response.json["message_zh"]
    assert post(client, af.encode(speech_3s, 16000, "ogg_opus"), "ok.ogg").status_code == 201


@pytest.mark.parametrize("variant", ["with_length", "no_length"])
def test_an_audio_bomb_is_refused_as_too_long(client, flac_bombs, variant):
    response = post(client, flac_bombs[variant].read_bytes(), "bomb.flac")
    assert response.status_code == 413
    assert response.json["code"] == "too_long"
    assert "300" in response.json["message"]


def test_an_upload_over_the_byte_limit_is_refused(client, service):
    limit = service.settings.audio.max_bytes
    response = post(client, b"\0" * (limit + 2_000_000), "huge.wav")
    assert response.status_code == 413
    assert response.json["code"] == "too_large"


@pytest.mark.parametrize(
    "signal",
    [lambda: af.silence(4.0), lambda: af.pink_noise(4.0, level=0.3), lambda: af.chord(4.0)],
    ids=["silence", "noise", "music"],
)
def test_no_speech_comes_back_unknown_with_the_speech_ratio(client, signal):
    response = post(client, af.encode(signal(), 16000, "ogg_opus"), "quiet.ogg")

    result = response.json
    assert response.status_code == 201
    assert result["emotion"] == "unknown" and result["reason"] == "no_speech"
    assert result["confidence"] == 1.0
    assert result["speech_ratio"] < 0.05
    assert "model" not in result["timings_ms"]


def test_a_three_minute_voice_note_gets_a_timeline_covering_all_of_it(client):
    response = post(client, af.encode(af.speech_clip(180.0), 16000, "amr"), "long.amr", granularity="timeline")

    result = response.json
    assert response.status_code == 201, result
    timeline = result["timeline"]
    assert timeline[0]["start"] == 0.0
    assert timeline[-1]["end"] == pytest.approx(result["duration_s"], abs=1e-3)
    assert result["duration_s"] == pytest.approx(180.0, rel=0.02)
    starts = [w["start"] for w in timeline]
    assert np.allclose(np.diff(starts[:-1]), 0.5)
    assert all(w["end"] - w["start"] == pytest.approx(1.0) for w in timeline)
    assert any("chunks" in line for line in result["log"])
    for window in (timeline[0], timeline[len(timeline) // 2], timeline[-1]):
        assert sum(window["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def test_windows_without_speech_are_unknown_no_speech_in_the_timeline_and_its_chart(client, service):
    """Long silences between speech: their windows are "no speech", not an emotion the model read into silence."""
    from bot_bridge.acting.charts import timeline_chart
    from bot_bridge.remembering.results import WINDOW_MIN_SPEECH

    audio = np.concatenate([af.speech_clip(6.0), af.silence(14.0), af.speech_clip(5.0), af.silence(12.0)])
    response = post(client, af.encode(audio, 16000, "ogg_opus"), "pauses.ogg", granularity="timeline")

    result = response.json
    assert response.status_code == 201, result
    silent = [w for w in result["timeline"] if w["speech"] < WINDOW_MIN_SPEECH]
    spoken = [w for w in result["timeline"] if w["speech"] >= WINDOW_MIN_SPEECH]
    assert len(silent) >= 40 and len(spoken) >= 10
    assert sum(w["speech"] == 0.0 for w in silent) >= 40
    for window in silent:
        assert (window["emotion"], window["reason"], window["confidence"]) == ("unknown", "no_speech", 1.0)
        assert window["scores"]["unknown"] == 1.0
    for window in spoken:
        assert window["reason"] is None and sum(window["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["timeline"] == client.get(f"/api/results/{result['id']}").json["timeline"]

    stored = service.store.result(result["id"])
    assert len({w.emotion for w in stored.timeline if w.has_speech}) == 1  # the tiny model's labels never change
    assert timeline_chart(stored, min_duration_s=10.0) is None, "a silence is no change of feeling"


def test_embedding_is_returned_stored_and_downloadable(client, speech_3s):
    created = post(client, af.encode(speech_3s, 16000, "wav_s16"), "e.wav", embedding="true").json

    download = client.get(f"/api/results/{created['id']}/embedding.npy")

    assert download.status_code == 200
    vector = np.load(io.BytesIO(download.data))
    assert vector.shape == (32,) and vector.dtype == np.float32
    assert np.allclose(vector, created["embedding"], atol=1e-6)


def test_a_stored_result_can_be_fetched_by_id(client, service, speech_3s):
    created = post(client, af.encode(speech_3s, 16000, "mp3"), "again.mp3").json

    fetched = client.get(f"/api/results/{created['id']}")

    assert fetched.status_code == 200
    assert fetched.json["scores"] == created["scores"]
    folder = next(service.settings.outputs_dir.glob(f"*_{created['id']}"))
    assert (folder / "result.json").exists() and (folder / "audio.mp3").exists()
    with client.get(f"/api/results/{created['id']}/audio") as audio:
        assert audio.data == af.encode(speech_3s, 16000, "mp3")


def test_unknown_ids_are_404_with_a_code(client):
    response = client.get("/api/results/nope")
    assert response.status_code == 404 and response.json["code"] == "not_found"


def test_a_missing_file_field_or_bad_option_is_a_clear_400(client, speech_3s):
    assert client.post("/api/predict", data={}).json["code"] == "invalid_request"
    bad = post(client, af.encode(speech_3s, 16000, "wav_s16"), "x.wav", granularity="hourly")
    assert bad.status_code == 400 and "granularity" in bad.json["message"]


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["state"] == "ready" and ready.json["random_weights"] is True


def test_readiness_reports_a_model_that_cannot_load_with_its_fix(tmp_path):
    from bot_bridge.config import load_settings
    from bot_bridge.service import Service
    from bot_bridge.web import create_app

    settings = load_settings(environ={}, data_dir=str(tmp_path), model__name=str(tmp_path / "no-such-model"))
    client = create_app(service=Service(settings)).test_client()

    predict = post(client, af.encode(af.speech_clip(3.0), 16000, "wav_s16"), "x.wav")
    ready = client.get("/readyz")

    assert predict.status_code == 503 and predict.json["code"] == "model_unavailable"
    assert ready.status_code == 503 and ready.json["state"] == "failed"
    assert "does not exist" in ready.json["detail"]


def test_the_api_token_is_required_when_configured(tmp_path, tiny_model, speech_3s):
    from bot_bridge.config import load_settings
    from bot_bridge.service import Service
    from bot_bridge.web import create_app

    settings = load_settings(environ={"BOT_BRIDGE_API_TOKEN": "s3cret-token"}, data_dir=str(tmp_path))
    client = create_app(service=Service(settings, model=tiny_model)).test_client()
    wav = af.encode(speech_3s, 16000, "wav_s16")

    assert post(client, wav).status_code == 401
    assert client.post("/api/predict", data={"file": (io.BytesIO(wav), "a.wav")},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.post("/api/predict", data={"file": (io.BytesIO(wav), "a.wav")},
                     headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 201
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/openapi.json").status_code == 200


def test_a_result_is_deleted_through_the_api_only_under_its_token(tmp_path, tiny_model, speech_3s, client):
    """Everything of it goes (row, folder, recording), one audit entry stays; an open API deletes nothing."""
    from bot_bridge.config import load_settings
    from bot_bridge.remembering.audit import AuditLog
    from bot_bridge.service import Service
    from bot_bridge.web import create_app

    kept = post(client, af.encode(speech_3s, 16000, "wav_s16")).json["id"]
    refused = client.delete(f"/api/results/{kept}")
    assert refused.status_code == 403 and refused.json["code"] == "token_required"
    assert client.get(f"/api/results/{kept}").status_code == 200

    settings = load_settings(environ={"BOT_BRIDGE_API_TOKEN": "s3cret-token"}, data_dir=str(tmp_path / "tokened"))
    service = Service(settings, model=tiny_model)
    tokened, bearer = create_app(service=service).test_client(), {"Authorization": "Bearer s3cret-token"}
    created = tokened.post("/api/predict", data={"file": (io.BytesIO(af.encode(speech_3s, 16000, "wav_s16")), "a.wav")},
                           headers=bearer).json["id"]
    assert next(settings.outputs_dir.glob(f"*_{created}")).is_dir()

    assert tokened.delete(f"/api/results/{created}").status_code == 401
    deleted = tokened.delete(f"/api/results/{created}", headers=bearer)
    assert deleted.status_code == 200 and deleted.json == {"deleted": {"notes": 0, "results": 1}}
    assert tokened.get(f"/api/results/{created}", headers=bearer).status_code == 404
    assert list(settings.outputs_dir.glob(f"*_{created}")) == []
    again = tokened.delete(f"/api/results/{created}", headers=bearer)
    assert again.status_code == 404 and again.json["code"] == "not_found"
    [entry] = AuditLog(service.store).entries(action="data.delete")
    assert (entry.actor, entry.via, entry.detail) == ("api", "api", {"notes": 0, "results": 1})
    service.close()


def test_the_openapi_document_describes_every_route(client):
    paths = client.get("/api/openapi.json").json["paths"]
    assert {"/api/predict", "/api/results/{result_id}", "/api/results/{result_id}/embedding.npy", "/healthz", "/readyz"} <= set(paths)
    assert set(paths["/api/results/{result_id}"]) == {"get", "delete"}


def test_kept_audio_is_served_as_what_it_decoded_as_never_as_a_page(client, speech_3s):
    """An upload named x.html must not come back as HTML on the console's origin."""
    created = post(client, af.encode(speech_3s, 16000, "wav_s16"), "x.html").json

    with client.get(f"/api/results/{created['id']}/audio") as served:
        assert served.status_code == 200
        assert served.mimetype == "audio/wav"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served.headers["Content-Security-Policy"]
        assert "x.wav" in served.headers["Content-Disposition"]


def test_a_file_name_with_line_breaks_is_cleaned_where_it_enters_and_its_audio_still_served(client, service, speech_3s):
    """A name chosen by whoever sent the file never reaches a header with its control characters."""
    # filename* (RFC 7578 / 5987) is percent-encoded, so it can carry what a plain filename cannot
    head = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%0D%0A.ogg\r\n"
    body = head + b"\r\n" + af.encode(speech_3s, 16000, "ogg_opus") + b"\r\n--XX--\r\n"
    created = client.post("/api/predict", data=body, content_type="multipart/form-data; boundary=XX").json

    assert service.store.result_row(created["id"]).file_name == "aSet-Cookie: x.ogg"
    with client.get(f"/api/results/{created['id']}/audio") as served:
        assert served.status_code == 200
        assert "Set-Cookie" not in served.headers and "\n" not in served.headers["Content-Disposition"]
