"""Roles: web processes never load the model and hand analyses to workers; workers stop cleanly.

A web process and a worker share the queue through the data directory here
(SQLite), so most of these run in one test process. Some use real processes:
a web process in a fresh interpreter (to see which modules it imports), a
worker (``serve --role worker``) stopped with SIGTERM while it holds two
notes, gunicorn's web processes (one of them killed), and four processes
migrating one PostgreSQL database at once.
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
from pathlib import Path

import pytest
import requests
import yaml

from bot_bridge.config import load_settings
from bot_bridge.layout import CPU_WORKER_THREADS, process_layout, queue_worker_threads
from bot_bridge.malloc import FAST_MALLOC
from bot_bridge.remembering.store import MIGRATIONS_DIR, NoteStatus
from bot_bridge.server import gunicorn_settings
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests import services
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import TEST_QUEUE, platform_environment
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.processes import free_port, sample_sum, scrape, serve, start, wait_for, wait_until_answering

fake_telegram = fixtures.fake_telegram
MIGRATIONS = [path.stem for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py")]


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


def test_without_a_worker_predict_says_so_with_503_and_the_upload_expires_unrun(tmp_path, tiny_model_dir, tiny_model):
    service, client = web_client(tmp_path, tiny_model_dir, timeout_s=0.5)

    answer = upload(client, encode(speech_clip(1), 16000, "wav_s16"))

    assert (answer.status_code, answer.json["code"]) == (503, "no_worker")
    assert service._model is None and service.model_state["state"] == "remote"
    # A worker with one queue thread comes up: it takes the forgotten upload first, and must drop it unrun.
    worker = Service(role_settings(tmp_path, tiny_model_dir, "worker", queue__worker_threads=1), model=tiny_model)
    worker.start_background("worker")
    try:
        later = upload(web_client(tmp_path, tiny_model_dir)[1], encode(speech_clip(2), 16000, "wav_s16"))
    finally:
        worker.close()
    assert later.status_code == 201, later.json
    assert [folder.name.endswith(later.json["id"]) for folder in (tmp_path / "outputs").iterdir()] == [True]
    service.close()


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


def test_a_worker_process_serves_only_health_and_on_sigterm_finishes_a_send_and_hands_back_a_download(
    tmp_path, tiny_model_dir, tiny_model, fake_telegram
):
    """A real worker process (``serve --role worker``, started with the fast malloc) holds two notes: one
    whose download hangs, one whose reply is on its way. Told to stop, it lets the reply arrive, hands the
    other note back within the grace period (long before its lease would run out), and it is answered once."""
    environ = {name: value for name, value in {**os.environ, **platform_environment(fake_telegram)}.items()
               if name not in FAST_MALLOC and name != "BOT_BRIDGE_DEFAULT_MALLOC"}
    port = free_port()
    config = tmp_path / "bot-bridge.yaml"
    queue = {**TEST_QUEUE, "lease_s": 120, "shutdown_grace_s": 4, "worker_threads": 2}
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "model": {"name": str(tiny_model_dir), "threads": 1},
                                      "queue": queue}))
    process = serve({**environ, "BOT_BRIDGE_CONFIG": str(config)}, port, tmp_path / "worker.log",
                    "--role", "worker", "--port", str(port), ready="/readyz")
    assert _environment_of(process.pid).items() >= FAST_MALLOC.items(), "re-executed with the fast malloc"
    assert _worker_port_answers(port) == {"/healthz": 200, "/readyz": 200, "/metrics": 200, "/": 404,
                                          "/login": 404, "/api/predict": 404, "/webhooks/telegram": 404}
    web = Service(load_settings(config, environ={**environ, "BOT_BRIDGE_ROLE": "web"}))
    webhooks = create_app(service=web).test_client()

    def deliver(audio: bytes) -> None:
        request = tg.webhook_request(tg.voice_update(fake_telegram.add_file(audio)))
        assert webhooks.open("/webhooks/telegram", **request.werkzeug_kwargs()).status_code == 200

    fake_telegram.delay_next("download", 60)
    deliver(encode(speech_clip(1), 16000, "ogg_opus"))
    fake_telegram.wait_until(lambda: fake_telegram.calls("download"), timeout=60, what="the worker's download")
    fake_telegram.delay_next("sendMessage", 2)
    deliver(encode(speech_clip(2), 16000, "ogg_opus"))
    fake_telegram.wait_until(lambda: fake_telegram.calls("sendMessage"), timeout=60, what="the reply on its way")

    stopping = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    held, sent = sorted(web.store.voice_notes(), key=lambda note: note.id)
    handed_back_after = time.monotonic() - stopping

    assert (sent.status, len(fake_telegram.sent_messages)) == (NoteStatus.REPLIED, 1), "the reply was let arrive"
    assert (held.status, held.lease_owner, held.attempts) == (NoteStatus.QUEUED, None, 0)
    assert handed_back_after < 15, "well within queue.lease_s (120 s): handed back, not left to expire"
    assert "handed back to the queue" in (tmp_path / "worker.log").read_text()
    other = Service(load_settings(config, environ=environ), model=tiny_model)
    other.start_background("worker")
    try:
        fake_telegram.wait_for_messages(2, timeout=30)
        assert wait_for(lambda: web.store.voice_note(held.id).status == NoteStatus.REPLIED, timeout=10)
    finally:
        other.close()
        web.close()
    assert len(fake_telegram.sent_messages) == 2


def _environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def _worker_port_answers(port: int) -> dict[str, int]:
    """The status of each path on a worker's port (POST where a web process would take one)."""
    answers = {}
    for path in ("/healthz", "/readyz", "/metrics", "/", "/login"):
        answers[path] = requests.get(f"http://127.0.0.1:{port}{path}", timeout=10).status_code
    for path in ("/api/predict", "/webhooks/telegram"):
        answers[path] = requests.post(f"http://127.0.0.1:{port}{path}", data=b"{}", timeout=10).status_code
    return answers


MALLOC_PROBE = """
from bot_bridge.malloc import reexec_with_fast_malloc
reexec_with_fast_malloc(["-c", "import os; print('re-executed', os.environ['MALLOC_MMAP_THRESHOLD_'])"])
print("kept glibc's default")
"""


@pytest.mark.parametrize(("opt_out", "outcome"), [(None, "re-executed 4294967296"), ("1", "kept glibc's default")])
def test_the_fast_malloc_re_execs_the_process_unless_opted_out(opt_out, outcome):
    environ = {name: value for name, value in os.environ.items()
               if name not in FAST_MALLOC and name != "BOT_BRIDGE_DEFAULT_MALLOC"}
    if opt_out:
        environ["BOT_BRIDGE_DEFAULT_MALLOC"] = opt_out

    run = subprocess.run([sys.executable, "-c", MALLOC_PROBE], env=environ, capture_output=True, text=True, timeout=60)

    assert run.stdout.strip() == outcome, run.stderr


FIRST_START = """
import logging, sys
from bot_bridge.remembering.store import Store
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # alembic logs each migration it runs
store = Store(sys.argv[1], sys.argv[2])
with store.engine.connect() as connection:
    print(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one())
"""


def test_processes_starting_at_once_on_an_empty_postgresql_database_migrate_it_exactly_once(tmp_path):
    """The test holds the database's schema (an uncommitted DROP SCHEMA) until all four processes wait on a lock:
    without the migration lock all four would be inside a migration at once; with it, one migrates while the
    other three wait for it, then find nothing left to do."""
    import psycopg

    url = services.create_postgres_database()
    name = url.rsplit("/", 1)[1]
    barrier = psycopg.connect(host=services.POSTGRES[0], port=services.POSTGRES[1], user="postgres", dbname=name)
    barrier.execute("DROP SCHEMA public CASCADE")  # every CREATE TABLE in it waits for this transaction
    try:
        starts = [subprocess.Popen([sys.executable, "-c", FIRST_START, url, str(tmp_path / str(n))],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
        wait_for(lambda: _waiting_on_a_lock(name) == 4, timeout=60, what="all four processes waiting on a lock")
        barrier.rollback()
        outcomes = [start.communicate(timeout=60) for start in starts]
    finally:
        barrier.close()
        services.drop_postgres_database(url)

    assert [start.returncode for start in starts] == [0] * 4, [err for _, err in outcomes]
    migrated = [err.count("Running upgrade") for _, err in outcomes]
    assert sorted(migrated)[:3] == [0, 0, 0] and max(migrated) == len(MIGRATIONS), migrated
    assert {out.strip() for out, _ in outcomes} == {sorted(MIGRATIONS)[-1].split("_")[0]}


def _waiting_on_a_lock(database: str) -> int:
    """Sessions of ``database`` waiting on a lock (the schema's, or the migration's advisory lock)."""
    import psycopg

    with psycopg.connect(host=services.POSTGRES[0], port=services.POSTGRES[1], user="postgres", dbname="postgres",
                         autocommit=True) as watcher:
        return watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                               (database,)).fetchone()[0]


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


def test_gunicorn_runs_the_web_role_from_its_config_file_and_its_metrics_follow_the_live_processes(
    tmp_path, tiny_model_dir
):
    """Two web processes under gunicorn: each live process is reported once, a killed one drops out when
    gunicorn replaces it, and a restarted instance counts from zero."""
    port = free_port()
    environ = {**os.environ, "BOT_BRIDGE_ROLE": "web", "BOT_BRIDGE_PORT": str(port), "BOT_BRIDGE_PROCESSES": "2",
               "BOT_BRIDGE_DATA_DIR": str(tmp_path / "data"), "BOT_BRIDGE_MODEL": str(tiny_model_dir),
               "HOME": str(tmp_path)}
    environ.pop("XDG_RUNTIME_DIR", None)
    first = _gunicorn(environ, port, tmp_path / "first.log")
    try:
        processes = wait_for(lambda: _model_loaded_by_process(port), timeout=30, what="both processes sampled")
        assert requests.get(f"http://127.0.0.1:{port}/api/results/0000", timeout=10).status_code == 404
        assert sample_sum(scrape(port), "bot_bridge_errors_total", code="not_found") == 1
        killed = next(iter(processes))
        os.kill(int(killed), signal.SIGKILL)
        replaced = wait_for(lambda: _replaced(port, processes), timeout=30, what="the killed process replaced")
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)

    assert first.returncode == 0, (tmp_path / "first.log").read_text()
    assert set(processes.values()) == {0.0}, "two processes, neither holds the model"
    assert killed not in replaced, "a dead process's gauges are dropped"
    assert not (tmp_path / ".gunicorn").exists(), "no control socket in ~/.gunicorn"
    again = _gunicorn(environ, port, tmp_path / "again.log")
    try:
        wait_for(lambda: _model_loaded_by_process(port), timeout=30, what="both processes sampled again")
        assert sample_sum(scrape(port), "bot_bridge_errors_total", code="not_found") == 0, "counts start afresh"
    finally:
        os.killpg(again.pid, signal.SIGTERM)
        again.wait(30)


def _gunicorn(environ: dict, port: int, log: Path) -> subprocess.Popen:
    process = start([sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"], environ, log)
    wait_until_answering(process, port, "/readyz", log, timeout=60)
    return process


def _model_loaded_by_process(port: int) -> dict[str, float] | None:
    """``bot_bridge_process_model_loaded`` of each process reported, by pid, once there are two."""
    samples = {s.labels["pid"]: s.value for s in scrape(port) if s.name == "bot_bridge_process_model_loaded"}
    return samples if len(samples) == 2 else None


def _replaced(port: int, before: dict[str, float]) -> dict[str, float] | None:
    """The processes reported, once one of ``before`` is gone from them and a new one has come."""
    now = {s.labels["pid"]: s.value for s in scrape(port) if s.name == "bot_bridge_process_model_loaded"}
    return now if len(now) == 2 and len(now.keys() & before.keys()) == 1 else None


def test_a_web_process_whose_queue_is_down_is_not_ready_and_says_no_more_than_that(tmp_path, tiny_model_dir, caplog):
    settings = role_settings(tmp_path, tiny_model_dir, "web", queue__url="redis://127.0.0.1:1/0")
    service = Service(settings)

    readiness = service.readiness()

    assert readiness == {"state": "failed", "role": "web", "detail": "the queue does not answer (see the log)"}
    assert "127.0.0.1:1" in caplog.text or "Connection" in caplog.text  # the operator gets the details
    service.close()
