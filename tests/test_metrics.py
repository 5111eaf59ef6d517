"""``/metrics``: Prometheus text with queue depth, time per stage, time to reply, errors and processes.

In one test process the metrics live in the process (no multiprocess
directory), so each test compares a scrape before and after what it does.
The several-process cases, where one scrape sums every process of an
instance, run in test_roles.py (gunicorn, two web processes) and
test_scale_out.py (replies summed over two worker instances).
"""

from __future__ import annotations

import io
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

from bot_bridge.chat.messages import ChatMessage, Media
from bot_bridge.config import load_settings
from bot_bridge.hearing.model import EmotionModel
from bot_bridge.metrics import sample_process
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.audio_fixtures import encode, speech_clip, text_as_audio
from tests.chat_helpers import one_note_each, running_bot, voice_note_webhook
from tests.platforms import fixtures
from tests.processes import parse_metrics, sample_sum, wait_for

fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom


def scrape(client) -> list:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return parse_metrics(response.get_data(as_text=True))


def delta(before: list, after: list, name: str, **labels: str) -> float:
    return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)


def test_metrics_need_neither_the_console_login_nor_the_api_token(tmp_path, tiny_model):
    settings = load_settings(environ={"BOT_BRIDGE_API_TOKEN": "s3cret-token"}, data_dir=str(tmp_path))
    client = create_app(service=Service(settings, model=tiny_model)).test_client()

    samples = scrape(client)

    assert client.post("/api/predict").status_code == 401  # the API itself is protected
    names = {sample.name for sample in samples}
    assert {"bot_bridge_queue_depth", "bot_bridge_queue_tasks_pending"} <= names


def test_every_analysis_times_its_stages_and_every_error_is_counted_by_code(client):
    wav = encode(speech_clip(2), 16000, "wav_s16")
    before = scrape(client)

    assert client.post("/api/predict", data={"file": (io.BytesIO(wav), "a.wav")}).status_code == 201
    assert client.post("/api/predict", data={"file": (io.BytesIO(b"not audio"), "a.wav")}).status_code == 415

    after = scrape(client)
    for stage in ("decode", "vad", "model_wait", "model"):
        assert delta(before, after, "bot_bridge_stage_seconds_count", stage=stage) == 1, stage
    assert delta(before, after, "bot_bridge_errors_total", code="not_audio", source="api") == 1


def test_waiting_for_the_model_behind_another_note_is_not_model_time(service, client):
    """Two queue threads share the model and the cores: the second one's wait is its own stage, model_wait.

    Another note holds the model's turn until the upload is seen waiting for it, then HELD_S longer: the
    upload waited at least that long, however slowly it got there."""
    wav = encode(speech_clip(2), 16000, "wav_s16")
    before = scrape(client)
    answers = []
    upload = threading.Thread(
        target=lambda: answers.append(client.post("/api/predict", data={"file": (io.BytesIO(wav), "a.wav")}).json))

    with service.model.cpu_turn():  # another note has the cores
        upload.start()
        wait_for(lambda: _waiting_for_its_turn(upload), timeout=30, what="the upload waiting for the model")
        time.sleep(HELD_S)  # the wait being measured, not a synchronisation
    upload.join(60)

    [result] = answers
    assert result["timings_ms"]["model_wait"] >= HELD_S * 1000
    assert result["timings_ms"]["model"] < result["timings_ms"]["total"] - result["timings_ms"]["model_wait"]
    assert delta(before, scrape(client), "bot_bridge_stage_seconds_sum", stage="model_wait") >= HELD_S


HELD_S = 0.3


def _waiting_for_its_turn(thread: threading.Thread) -> bool:
    """Whether ``thread`` is waiting for the model's lock (in ``EmotionModel._exclusive``, before it yields)."""
    waiting = EmotionModel._exclusive.__wrapped__.__code__
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is waiting:
            return True
        frame = frame.f_back
    return False


def test_a_chat_note_times_download_reply_and_time_to_reply(tmp_path, tiny_model_dir, tiny_model, fake_telegram,
                                                           fake_slack, fake_wecom):
    fakes = (fake_telegram, fake_slack, fake_wecom)
    voice = {fmt: encode(speech_clip(2), 16000, fmt) for fmt in ("ogg_opus", "m4a_aac_moov_end", "amr")}
    platforms = dict(zip(("telegram", "slack_fake", "wecom_fake"), fakes))
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes=platforms) as bot:
        before = scrape(bot.client)
        bot.deliver(*one_note_each(fakes, voice)[0])
        fake_telegram.wait_for_messages(1, timeout=30)
        bot.wait_until_finished()
        after = scrape(bot.client)

    assert delta(before, after, "bot_bridge_stage_seconds_count", stage="download") == 1
    assert delta(before, after, "bot_bridge_stage_seconds_count", stage="reply") == 1
    assert delta(before, after, "bot_bridge_time_to_reply_seconds_count", platform="telegram") == 1
    assert 0 < delta(before, after, "bot_bridge_time_to_reply_seconds_sum", platform="telegram") < 30


def test_chat_errors_are_counted_as_chat_errors_by_their_code(tmp_path, tiny_model_dir, tiny_model, fake_telegram):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        before = scrape(bot.client)
        request, path = voice_note_webhook("telegram", fake_telegram, text_as_audio())
        bot.deliver(request, path)
        [note] = bot.wait_until_finished()
        after = scrape(bot.client)

    assert note.error_code == "not_audio"
    assert delta(before, after, "bot_bridge_errors_total", code="not_audio", source="chat") == 1
    assert delta(before, after, "bot_bridge_errors_total", source="api") == 0


def test_queue_tasks_pending_counts_the_tasks_no_worker_has_taken(service, client):
    for number in range(3):
        assert service.chat.accept(_message(number))  # recorded and queued; no worker runs in this process
    service.chat.accept(_message(0))  # a redelivery: recorded already, not queued again

    samples = scrape(client)

    assert sample_sum(samples, "bot_bridge_queue_tasks_pending") == 3
    assert {s.labels["state"]: s.value for s in samples if s.name == "bot_bridge_queue_depth"}["waiting"] == 3


def test_queue_depth_counts_notes_waiting_scheduled_and_in_work(service, client):
    store = service.store
    _, retrying, held = (store.record_voice_note(_message(n))[0] for n in range(3))
    store.claim_voice_note(retrying, "worker-a", lease_s=60)
    store.retry_voice_note_later(retrying, "worker-a", 300, "download_failed", "platform down")
    store.claim_voice_note(held, "worker-b", lease_s=60)

    samples = scrape(client)

    depth = {s.labels["state"]: s.value for s in samples if s.name == "bot_bridge_queue_depth"}
    assert depth == {"waiting": 1, "scheduled": 1, "working": 1}


@pytest.mark.parametrize("role", ["web", "all"])
def test_a_web_process_reports_no_model_and_a_model_process_does(tmp_path, tiny_model_dir, tiny_model, role):
    settings = load_settings(environ={}, data_dir=str(tmp_path), model__name=str(tiny_model_dir), server__role=role)
    service = Service(settings, model=None if role == "web" else tiny_model)

    sample_process(service)

    samples = scrape(create_app(service=service).test_client())
    assert sample_sum(samples, "bot_bridge_process_model_loaded") == (0 if role == "web" else 1)
    assert sample_sum(samples, "bot_bridge_process_resident_memory_bytes") > 10_000_000
    service.close()


def _message(number: int) -> ChatMessage:
    return ChatMessage(platform="telegram", delivery_id=f"update-{number}", kind="voice", chat_id="42",
                       media=Media(ref=f"file-{number}"), received_at=datetime.now(timezone.utc))
