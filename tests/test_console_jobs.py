"""The console's analysis flow on the server: a job the page follows stage by stage, a player copy
of audio browsers cannot play, and no server paths on the page. In the browser: tests/test_console_e2e.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from bot_bridge.config import load_settings
from bot_bridge.errors import ModelUnavailable
from bot_bridge.hearing.analysis import AnalysisOptions, analyse as analyse_audio
from bot_bridge.hearing.audio import decode
from bot_bridge.remembering.job_store import AnalysisJobs, JobRow
from bot_bridge.remembering.store import Base, Store
from bot_bridge.service import Service
from bot_bridge.web import console_jobs, create_app
from tests.audio_fixtures import encode, speech_clip, text_as_audio
from tests.console_helpers import (  # noqa: F401 - app and browser are fixtures
    PASSWORD, analyse, app, browser, follow_job, sign_in, start_analysis, wav,
)


def test_the_analysis_tells_each_stage_and_chunk_as_it_starts(tiny_model):
    heard = []
    result = analyse_audio(encode(speech_clip(75.0), 16000, "ogg_opus"), tiny_model, AnalysisOptions(),
                           progress=lambda stage, step=0, steps=0: heard.append((stage, step, steps)))

    chunks = int(next(line for line in result.log if "chunks" in line).split(" into ")[1].split()[0])
    assert chunks >= 3
    assert heard == [("decode", 0, 0), ("vad", 0, 0)] + [("model", n, chunks) for n in range(1, chunks + 1)]


def test_the_console_answers_at_once_and_the_page_follows_the_job_to_its_result(service, browser):
    with service.model.cpu_turn():  # the model is busy with someone else's note
        started = start_analysis(browser, wav(4), "four.wav", granularity="timeline")
        assert started.status_code == 202
        url = started.get_json()["url"]
        waiting = browser.get(url).get_json()
        assert (waiting["state"], waiting["stage"]) == ("running", "queued") and waiting["elapsed_s"] >= 0

    answer = follow_job(browser, url)
    assert answer["state"] == "done" and answer["stage"] == "done"
    result = answer["result"]
    assert result["file_name"] == "four.wav" and len(result["timeline"]) > 1
    assert service.store.result_row(result["id"]).payload == result
    assert answer["audio_url"] == f"/results/{result['id']}/audio"


def test_a_stage_reported_by_the_analysis_reaches_the_job(service):
    jobs = AnalysisJobs(service.store)
    job_id = jobs.start()
    service.analyse(wav(3), file_name="a.wav", job_id=job_id)
    assert jobs.status(job_id).stage == "save"  # the last stage before the console's thread marks it done


def test_in_a_web_process_a_worker_analyses_the_consoles_upload(tmp_path, tiny_model_dir, tiny_model):
    def settings(role: str):
        return load_settings(environ={}, data_dir=str(tmp_path), model__name=str(tiny_model_dir), model__threads=1,
                             server__role=role, console__password=PASSWORD, api__predict_timeout_s=30)

    worker = Service(settings("worker"), model=tiny_model)
    worker.start_background("worker")
    web = Service(settings("web"))
    client = create_app(service=web).test_client()
    sign_in(client)
    try:
        answer = analyse(client, wav(4), "remote.wav", granularity="timeline")
        assert answer["state"] == "done" and answer["result"]["file_name"] == "remote.wav"
        assert web._model is None and worker.store.result_row(answer["result"]["id"]) is not None
        assert analyse(client, text_as_audio(), "notes.txt")["error"]["code"] == "not_audio"
    finally:
        web.close()
        worker.close()


def test_a_bad_file_fails_its_job_with_the_apis_words(browser):
    answer = analyse(browser, text_as_audio(), "notes.txt")
    assert answer["state"] == "failed"
    assert answer["error"]["code"] == "not_audio" and answer["error"]["status"] == 415
    assert answer["error"]["message"] and answer["error"]["message_zh"]


def test_a_missing_file_is_refused_before_any_job_starts(browser):
    from tests.console_helpers import page_token

    response = browser.post("/analyse", data={"origin": "console"}, headers={"X-CSRF-Token": page_token(browser)})
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_request"


def test_too_many_analyses_at_once_are_refused_not_piled_up(service, browser):
    with service.model.cpu_turn():
        urls = [start_analysis(browser, wav(), f"{n}.wav").get_json()["url"] for n in range(console_jobs.MAX_RUNNING)]
        refused = start_analysis(browser, wav(), "one-too-many.wav")
        assert refused.status_code == 429
        assert refused.get_json()["code"] == "busy" and refused.get_json()["message_zh"]
    assert [follow_job(browser, url)["state"] for url in urls] == ["done"] * console_jobs.MAX_RUNNING
    assert analyse(browser, wav())["state"] == "done"  # room again


def test_an_unknown_job_is_404_json(browser):
    response = browser.get("/analyse/no-such-job")
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_a_job_left_silent_by_a_dead_process_is_reported_failed(service):
    jobs = AnalysisJobs(service.store)
    job_id = jobs.start()
    _age(service.store, job_id, updated=timedelta(minutes=16))
    status = jobs.status(job_id)
    assert status.state == "failed" and status.error["code"] == "analysis_timeout"


def test_jobs_older_than_a_day_are_dropped_when_a_new_one_starts(service):
    jobs = AnalysisJobs(service.store)
    old = jobs.start()
    _age(service.store, old, created=timedelta(days=2))
    jobs.start()
    assert jobs.status(old) is None


def test_the_migration_creates_exactly_the_job_table_declared(database_url, tmp_path):
    store = Store(database_url, tmp_path / "outputs")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "include_object": lambda obj, name, kind, *_: kind != "table" or name == "analysis_jobs"})
        assert compare_metadata(context, Base.metadata) == []
    assert "analysis_jobs" in Base.metadata.tables and JobRow.__tablename__ == "analysis_jobs"
    store.close()


# --- the player's copy of audio browsers cannot play ---


@pytest.mark.parametrize("fmt", ["amr", "silk"])
def test_amr_and_silk_get_a_copy_the_player_can_play(service, browser, fmt):
    original = encode(speech_clip(5.0), 16000, fmt)
    result = analyse(browser, original, f"voice.{fmt}")["result"]

    with browser.get(f"/results/{result['id']}/audio") as played:
        assert played.status_code == 200 and played.mimetype == "audio/mp4"
        copy = decode(played.data)
    assert copy.codec == "aac" and copy.duration_s == pytest.approx(result["duration_s"], abs=0.1)
    with browser.get(f"/api/results/{result['id']}/audio") as kept:
        assert kept.data == original  # the API still gives back what was uploaded


def test_audio_browsers_play_is_served_as_it_came(service, browser):
    original = encode(speech_clip(3.0), 16000, "ogg_opus")
    result = analyse(browser, original, "voice.ogg")["result"]
    with browser.get(f"/results/{result['id']}/audio") as played:
        assert played.mimetype == "audio/ogg" and played.data == original
    folder = next(service.settings.outputs_dir.glob(f"*_{result['id']}"))
    assert sorted(path.name for path in folder.iterdir()) == ["audio.ogg", "result.json"]


def test_no_copy_when_audio_is_not_kept(settings, service, browser):
    settings.audio.keep_audio = False
    result = analyse(browser, encode(speech_clip(3.0), 16000, "amr"), "voice.amr")["result"]
    folder = next(service.settings.outputs_dir.glob(f"*_{result['id']}"))
    assert [path.name for path in folder.iterdir()] == ["result.json"]
    assert browser.get(f"/results/{result['id']}/audio").status_code == 404


# --- server paths stay in the log ---


def test_no_server_path_reaches_the_page(settings, service, browser, tiny_model_dir):
    answer = analyse(browser, wav(), "note.wav", granularity="timeline")
    result_id = answer["result"]["id"]
    shown = [json.dumps(answer, ensure_ascii=False)]
    for path in ("/", "/voice-notes", f"/results/{result_id}", f"/results/{result_id}/result.json"):
        shown.append(browser.get(path).get_data(as_text=True))
    for text in shown:
        assert str(tiny_model_dir) not in text and str(settings.data_dir) not in text and "/tmp/" not in text
    assert answer["result"]["model"]["name"] == tiny_model_dir.name
    assert f"<code>{tiny_model_dir.name}</code>" in shown[1]  # the footer names the model by its folder
    assert any(line.startswith(f"model {tiny_model_dir.name} on cpu") for line in answer["result"]["log"])


def test_a_model_that_cannot_load_is_explained_without_its_path(tmp_path):
    missing = tmp_path / "models" / "not-downloaded"
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"), model__name=str(missing),
                             console__password=PASSWORD)
    service = Service(settings)
    client = create_app(service=service).test_client()
    sign_in(client)
    with pytest.raises(ModelUnavailable):
        service.model  # noqa: B018 - loading it is the point
    html = client.get("/").get_data(as_text=True)
    assert "could not be loaded" in html and "/readyz" in html
    assert str(missing) not in html and str(tmp_path) not in html
    assert str(missing) in client.get("/readyz").get_json()["detail"]  # for the operator, not the page
    service.close()


def _age(store, job_id: str, *, created: timedelta = timedelta(0), updated: timedelta = timedelta(0)) -> None:
    now = datetime.now(timezone.utc)
    with store.session.begin() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id).values(created_at=now - created, updated_at=now - updated))
