"""Roles: web processes never load the model and hand analyses to workers; workers stop cleanly.

A web process and a worker share the queue through the data directory here
(SQLite), so most of these run in one test process. Two use real processes:
a web process in a fresh interpreter (to see which modules it imports) and a
worker stopped with SIGTERM while it holds a note.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from bot_bridge.config import load_settings
from bot_bridge.layout import CPU_WORKER_THREADS, process_layout, queue_worker_threads
from bot_bridge.remembering.store import NoteStatus
from bot_bridge.server import gunicorn_settings
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests import services
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import TEST_QUEUE, platform_environment
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.processes import free_port, scrape, serve, start, wait_for, wait_until_answering

fake_telegram = fixtures.fake_telegram


def role_settings(data_dir, model_dir, role: str, environ: dict | None = None, **overrides):
    return load_settings(environ=environ or {}, data_dir=str(data_dir), model__name=str(model_dir), model__threads=1,
                         server__role=role, **overrides)


@pytest.fixture
def worker(tmp_path, tiny_model_dir, tiny_model):
    """A worker's service (role ``worker``) consuming the queue under ``tmp_path``."""
    service = Service(role_settings(tmp_path, tiny_model_dir, "worker"), model=tiny_model)
    service.start_background("worker")
    yield service
    service.close()


def web_client(tmp_path, tiny_model_dir, timeout_s: float = 30.0):
    service = Service(role_settings(tmp_path, tiny_model_dir, "web", api__predict_timeout_s=timeout_s))
    return service, create_app(service=service).test_client()


def upload(client, data: bytes, **form):
    return client.post("/api/predict", data={"file": (io.BytesIO(data), "note.wav"), **form},
                       content_type="multipart/form-data")


WEB_PROCESS = """
import io, json, sys
from bot_bridge.config import load_settings
from bot_bridge.web import create_app
settings = load_settings(environ={{}}, data_dir={data_dir!r}, model__name={model!r}, server__role="web")
app = create_app(settings)
answer = app.test_client().post("/api/predict", data={{"file": (io.BytesIO(open({wav!r}, "rb").read()), "a.wav"),
                                "granularity": "timeline", "embedding": "true"}}, content_type="multipart/form-data")
print(json.dumps({{"status": answer.status_code, "result": answer.json,
                  "imported": [m for m in ("funasr", "torch") if m in sys.modules],
                  "model_untouched": app.extensions["bot_bridge"]._model is None}}))
"""


def test_a_web_process_never_imports_the_model_and_a_worker_analyses_its_upload(tmp_path, tiny_model_dir, worker):
    wav = tmp_path / "a.wav"
    wav.write_bytes(encode(speech_clip(3), 16000, "wav_s16"))
    script = WEB_PROCESS.format(data_dir=str(tmp_path), model=str(tiny_model_dir), wav=str(wav))

    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["status"] == 201, answer
    assert answer["imported"] == [] and answer["model_untouched"]
    result = answer["result"]
    assert result["random_weights"] is True and len(result["embedding"]) == result["model"]["embedding_dim"]
    assert result["timeline"] and worker.store.result_row(result["id"]).payload["scores"] == result["scores"]


def test_bad_audio_keeps_its_code_and_status_through_the_worker(tmp_path, tiny_model_dir, worker):
    _, client = web_client(tmp_path, tiny_model_dir)

    answer = upload(client, b"this is not audio at all")

    assert (answer.status_code, answer.json["code"]) == (415, "not_audio")


def test_without_a_worker_predict_says_so_with_503(tmp_path, tiny_model_dir):
    service, client = web_client(tmp_path, tiny_model_dir, timeout_s=0.5)

    answer = upload(client, encode(speech_clip(1), 16000, "wav_s16"))

    assert (answer.status_code, answer.json["code"]) == (503, "no_worker")
    assert service._model is None and service.model_state["state"] == "remote"


def test_a_worker_that_takes_too_long_is_a_504(tmp_path, tiny_model_dir, worker, monkeypatch):
    release = threading.Event()
    real = worker.analyse_here
    monkeypatch.setattr(worker, "analyse_here", lambda job: release.wait(10) and real(job))
    _, client = web_client(tmp_path, tiny_model_dir, timeout_s=1)

    answer = upload(client, encode(speech_clip(1), 16000, "wav_s16"))
    release.set()

    assert (answer.status_code, answer.json["code"]) == (504, "analysis_timeout")


def test_a_web_process_runs_no_queue_workers_and_no_schedules(tmp_path, tiny_model_dir):
    settings = role_settings(tmp_path, tiny_model_dir, "web", targets={"desk": {"platform": "slack", "chat_id": "C1"}})
    service = Service(settings)

    service.start_background("web")

    assert not service.queue.consuming and service._scheduler is None
    assert service.readiness() == {"state": "ready", "role": "web"}
    service.close()


def test_a_worker_runs_the_queue_and_the_schedules(tmp_path, tiny_model_dir, tiny_model):
    settings = role_settings(tmp_path, tiny_model_dir, "worker", targets={"desk": {"platform": "slack", "chat_id": "C1"}})
    service = Service(settings, model=tiny_model)

    service.start_background("worker")

    assert service.queue.consuming and service._scheduler is not None
    service.close()


def test_sigterm_hands_a_note_in_work_back_at_once(tmp_path, tiny_model_dir, tiny_model, fake_telegram):
    """A real worker process holds a note (its download hangs) and is told to stop: the note goes back
    to the queue within the grace period, long before its lease would run out, and is answered once."""
    environ = platform_environment(fake_telegram)
    port = free_port()
    config = tmp_path / "bot-bridge.yaml"
    queue = {**TEST_QUEUE, "lease_s": 120, "shutdown_grace_s": 0.5}
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "model": {"name": str(tiny_model_dir), "threads": 1},
                                      "queue": queue}))
    process = serve({**os.environ, **environ, "BOT_BRIDGE_CONFIG": str(config)}, port, tmp_path / "worker.log",
                    "--role", "worker", "--port", str(port))
    web = Service(load_settings(config, environ={**environ, "BOT_BRIDGE_ROLE": "web"}))
    fake_telegram.delay_next("download", 60)
    request = tg.webhook_request(tg.voice_update(fake_telegram.add_file(encode(speech_clip(1), 16000, "ogg_opus"))))
    assert create_app(service=web).test_client().open("/webhooks/telegram", **request.werkzeug_kwargs()).status_code == 200
    fake_telegram.wait_until(lambda: fake_telegram.calls("download"), timeout=60, what="the worker's download")

    stopping = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    [note] = web.store.voice_notes()
    handed_back_after = time.monotonic() - stopping

    assert (note.status, note.lease_owner, note.attempts) == (NoteStatus.QUEUED, None, 0)
    assert handed_back_after < 10, "well within queue.lease_s (120 s): handed back, not left to expire"
    assert "handed back to the queue" in (tmp_path / "worker.log").read_text()
    other = Service(load_settings(config, environ=environ), model=tiny_model)
    other.start_background("worker")
    try:
        fake_telegram.wait_for_messages(1, timeout=30)
        assert wait_for(lambda: web.store.voice_note(note.id).status == NoteStatus.REPLIED, timeout=10)
    finally:
        other.close()
        web.close()
    assert len(fake_telegram.sent_messages) == 1


FIRST_START = """
import sys, time
from bot_bridge.remembering.store import Store
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all four reach this line, then go at once
store = Store(sys.argv[2], sys.argv[3])
with store.engine.connect() as connection:
    print(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())
"""


def test_processes_starting_at_once_on_an_empty_postgresql_database_migrate_it_once(tmp_path):
    url = services.create_postgres_database()
    at = str(time.time() + 3)
    try:
        starts = [subprocess.Popen([sys.executable, "-c", FIRST_START, at, url, str(tmp_path / str(n))],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
        outcomes = [start.communicate(timeout=60) for start in starts]
    finally:
        services.drop_postgres_database(url)

    assert [start.returncode for start in starts] == [0] * 4, [err for _, err in outcomes]
    assert len({out.strip() for out, _ in outcomes}) == 1


@pytest.mark.parametrize(("role", "cores", "expected"), [
    ("web", 2, (2, 8, None)), ("web", 8, (8, 8, None)),
    ("all", 2, (1, 8, 2)), ("worker", 8, (1, 8, 8)),
])
def test_the_default_layout_follows_the_cores(role, cores, expected):
    layout = process_layout(load_settings(environ={}, server__role=role), cpu_count=cores)

    assert (layout.processes, layout.http_threads, layout.model_threads) == expected


def test_model_processes_share_the_cores_and_the_cpu_pipelines_two_notes():
    settings = load_settings(environ={}, server__role="worker", server__processes=2, model__device="cpu")

    assert process_layout(settings, cpu_count=8).model_threads == 4
    assert queue_worker_threads(settings) == CPU_WORKER_THREADS
    assert queue_worker_threads(load_settings(environ={}, queue__worker_threads=5)) == 5


def test_gunicorn_shuts_down_gracefully_and_opens_no_control_socket():
    settings = load_settings(environ={}, queue__shutdown_grace_s=10)

    options = gunicorn_settings(settings)

    assert options["control_socket_disable"] is True
    assert options["graceful_timeout"] > settings.queue.shutdown_grace_s
    assert options["worker_class"] == "bot_bridge.http_worker.BufferingWorker"


def test_gunicorn_runs_the_web_role_from_its_config_file(tmp_path, tiny_model_dir):
    port = free_port()
    environ = {**os.environ, "BOT_BRIDGE_ROLE": "web", "BOT_BRIDGE_PORT": str(port), "BOT_BRIDGE_PROCESSES": "2",
               "BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_MODEL": str(tiny_model_dir),
               "HOME": str(tmp_path)}
    environ.pop("XDG_RUNTIME_DIR", None)
    log = tmp_path / "gunicorn.log"
    process = start([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"], environ, log)
    try:
        wait_until_answering(process, port, "/readyz", log, timeout=60)
        web_processes = wait_for(lambda: _model_loaded_by_process(port), timeout=30, what="both processes sampled")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)

    assert process.returncode == 0, log.read_text()
    assert web_processes == [0.0, 0.0], "two processes, neither holds the model"
    assert not (tmp_path / ".gunicorn").exists(), "no control socket in ~/.gunicorn"


def _model_loaded_by_process(port: int) -> list[float] | None:
    samples = [s.value for s in scrape(port) if s.name == "bot_bridge_process_model_loaded"]
    return samples if len(samples) == 2 else None


def test_a_web_process_whose_queue_is_down_is_not_ready_and_says_no_more_than_that(tmp_path, tiny_model_dir, caplog):
    settings = role_settings(tmp_path, tiny_model_dir, "web", queue__url="redis://127.0.0.1:1/0")
    service = Service(settings)

    readiness = service.readiness()

    assert readiness == {"state": "failed", "role": "web", "detail": "the queue does not answer (see the log)"}
    assert "127.0.0.1:1" in caplog.text or "Connection" in caplog.text  # the operator gets the details
    service.close()
