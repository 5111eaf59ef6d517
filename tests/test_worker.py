"""The queue side: fast answers while the model works, crash recovery, bounded retries, charts.

The crash test is real: ``python -m bot_bridge serve`` in its own process
group, killed with SIGKILL while the fakes hold its audio downloads, then
started again on the same data directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import yaml

from bot_bridge.remembering.results import Result, Window
from bot_bridge.remembering.store import NoteStatus, Store
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import TEST_QUEUE, one_note_each, platform_environment, running_bot
from tests.platforms import fixtures, slack
from tests.processes import free_port, serve, wait_for

fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom

SLACK_LIMIT_S = 3.0  # the strictest platform deadline (WeCom: 5 s)


@pytest.fixture
def fakes(fake_telegram, fake_slack, fake_wecom):
    return fake_telegram, fake_slack, fake_wecom


def all_platforms(fakes) -> dict:
    return dict(zip(("telegram", "slack_fake", "wecom_fake"), fakes))


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fakes):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes=all_platforms(fakes)) as bot:
        yield bot


@pytest.fixture(scope="module")
def voice():
    clip = speech_clip(3)
    return {fmt: encode(clip, 16000, fmt) for fmt in ("ogg_opus", "m4a_aac_moov_end", "amr")}


def test_webhooks_answer_at_once_while_the_model_is_busy(bot, fakes, voice, monkeypatch):
    release = threading.Event()
    analysing = threading.Event()
    real_analyse = bot.service.analyse

    def busy_model(*args, **kwargs):
        analysing.set()
        release.wait(30)
        return real_analyse(*args, **kwargs)

    monkeypatch.setattr(bot.service, "analyse", busy_model)
    first, *others = one_note_each(fakes, voice)
    bot.deliver(*first)
    assert analysing.wait(30)

    answers = [bot.deliver(*delivery) for delivery in others * 2]  # the second time: redeliveries
    release.set()

    assert [answer.status_code for answer in answers] == [200] * 4
    assert max(bot.answer_times) < SLACK_LIMIT_S / 10, bot.answer_times
    assert len(bot.wait_until_finished(3)) == 3
    assert [len(fake.sent_messages) for fake in fakes] == [1, 1, 1]


def test_a_platform_down_for_every_try_ends_failed_once_and_logged(bot, fakes, voice, caplog):
    telegram_fake = fakes[0]
    bot.service.chat.adapters["telegram"].http.backoff_s = 0.01
    telegram_fake.fail_next("sendMessage", 503, times=1000)
    request, path = one_note_each(fakes, voice)[0]

    with caplog.at_level(logging.WARNING):
        bot.deliver(request, path)
        [note] = bot.wait_until_finished()

    attempts = TEST_QUEUE["max_attempts"]
    assert (note.status, note.error_code, note.attempts) == (NoteStatus.FAILED, "send_failed", attempts)
    assert len(telegram_fake.calls("sendMessage")) == attempts * bot.service.chat.adapters["telegram"].http.attempts
    assert len(telegram_fake.calls("getFile")) == 1  # the reply was kept: later tries only send it
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "FAILED after 3 tries: send_failed: telegram sendMessage" in failures[0]
    assert bot.store.voice_note_counts()[("telegram", NoteStatus.FAILED)] == 1
    assert telegram_fake.token not in caplog.text


def test_audio_that_cannot_be_downloaded_after_every_try_gets_a_reply_saying_so(bot, fakes, voice):
    wecom_fake = fakes[2]
    bot.service.chat.adapters["wecom"].http.backoff_s = 0.01
    wecom_fake.fail_next("media/get", 500, times=1000)
    request, path = one_note_each(fakes, voice)[2]

    bot.deliver(request, path)

    [sent] = wecom_fake.wait_for_messages(1, timeout=20)
    assert "无法从聊天平台下载" in sent["text"]
    assert bot.wait_until_finished()[0].error_code == "download_failed"


def test_a_note_never_queued_is_found_and_answered(tmp_path, tiny_model_dir, tiny_model, fakes, voice):
    """The row is committed but the enqueue was lost (say Redis was down): the recovery sweep queues it."""
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes=all_platforms(fakes), queue__lease_s=0.5) as bot:
        request, path = one_note_each(fakes, voice)[0]
        adapter = bot.service.chat.adapters["telegram"]
        [message] = adapter.parse(_core_request(request, path)).messages
        bot.store.record_voice_note(message)  # recorded, never enqueued

        fakes[0].wait_for_messages(1, timeout=30)
        assert bot.wait_until_finished()[0].status == NoteStatus.REPLIED


def test_a_note_whose_worker_died_while_sending_is_never_sent_again(bot, fakes, voice):
    request, path = one_note_each(fakes, voice)[1]
    [message] = bot.service.chat.adapters["slack"].parse(_core_request(request, path)).messages
    note_id, _ = bot.store.record_voice_note(message)
    bot.store.claim_voice_note(note_id, "a-worker-that-died", lease_s=0.01)
    bot.store.save_reply(note_id, "a-worker-that-died", "😐 Neutral · 60%", result_id=None, error_code=None, error_detail=None)
    bot.store.mark_sending(note_id, "a-worker-that-died")

    [note] = bot.wait_until_finished()

    assert (note.status, note.error_code) == (NoteStatus.UNCONFIRMED, "reply_unconfirmed")
    assert fakes[1].sent_messages == []


def test_a_changing_voice_over_10_s_gets_its_timeline_chart(bot, fakes, voice, monkeypatch):
    def changing_voice(data, **kwargs):
        """A 12 s note that starts neutral and turns angry (the tiny model's labels never change)."""
        windows = [
            Window(t / 2, t / 2 + 1, _scores("neutral" if t < 12 else "angry"), speech=1.0) for t in range(23)
        ]
        result = Result(_scores("angry"), 12.0, 1.0, {"name": "tiny", "random_weights": True}, timeline=windows,
                        origin=kwargs["origin"])
        bot.store.save_result(result)
        return result

    monkeypatch.setattr(bot.service, "analyse", changing_voice)
    for delivery in one_note_each(fakes, voice):
        bot.deliver(*delivery)
    bot.wait_until_finished(3)

    [telegram_photo] = fakes[0].calls("sendPhoto")
    assert telegram_photo["images"][0].startswith(b"\x89PNG") and "😠" in telegram_photo["text"]
    [slack_upload] = fakes[1].calls("files.completeUploadExternal")
    assert slack_upload["images"][0].startswith(b"\x89PNG") and "😠" in slack_upload["text"]
    assert slack_upload["params"]["thread_ts"]
    wecom_text, wecom_image = fakes[2].calls("message/send")
    assert "😠" in wecom_text["text"] and wecom_image["images"][0].startswith(b"\x89PNG")


def test_a_worker_killed_mid_note_then_restarted_replies_exactly_once(tmp_path, tiny_model_dir, fakes, voice):
    telegram_fake, slack_fake, wecom_fake = fakes
    port = free_port()
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "model": {"name": str(tiny_model_dir), "threads": 1},
        "server": {"host": "127.0.0.1", "port": port},
        "queue": {**TEST_QUEUE, "worker_threads": 3},
    }))
    environ = {**os.environ, **platform_environment(*fakes), "BOT_BRIDGE_CONFIG": str(config)}
    deliveries = one_note_each(fakes, voice)
    for fake, download in ((telegram_fake, "download"), (slack_fake, "download"), (wecom_fake, "media/get")):
        fake.delay_next(download, 120)  # the first process never gets its audio

    # Web up (/healthz) is enough: a worker downloads before it needs the model, which goes on loading.
    first = serve(environ, port, tmp_path / "first.log")
    try:
        for request, path in deliveries:
            assert request.send(f"http://127.0.0.1:{port}/webhooks/{path}").status_code == 200
        for fake, download in ((telegram_fake, "download"), (slack_fake, "download"), (wecom_fake, "media/get")):
            fake.wait_until(lambda f=fake, d=download: f.calls(d), timeout=60, what="the audio download")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    second = serve(environ, port, tmp_path / "second.log")
    try:
        for fake in fakes:
            fake.wait_for_messages(1, timeout=60)
        store = Store(f"sqlite:///{tmp_path / 'data' / 'bot-bridge.db'}", tmp_path / "data" / "outputs")
        notes = wait_for(lambda: _all_finished(store), timeout=30)
        # Give any wrongly repeated work a full lease and a recovery sweep to show itself.
        time.sleep(TEST_QUEUE["lease_s"] + TEST_QUEUE["recovery_interval_s"] * 2)
        assert [len(fake.sent_messages) for fake in fakes] == [1, 1, 1]
        assert [(n.platform, n.status, n.attempts) for n in sorted(notes, key=lambda n: n.platform)] == [
            ("slack", NoteStatus.REPLIED, 2), ("telegram", NoteStatus.REPLIED, 2), ("wecom", NoteStatus.REPLIED, 2)
        ]
        store.close()
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(30)
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    for secret in (telegram_fake.token, slack_fake.bot_token, wecom_fake.corp_secret, slack.DEFAULT_SIGNING_SECRET):
        assert secret not in logs


def _scores(top: str) -> dict[str, float]:
    from bot_bridge.emotions import EMOTION_KEYS

    return {key: 0.8 if key == top else 0.2 / 8 for key in EMOTION_KEYS}


def _core_request(request, path):
    from bot_bridge.chat.messages import CaseInsensitiveDict, InboundRequest

    return InboundRequest(request.method, path, request.query, CaseInsensitiveDict(request.headers), request.body)


def _all_finished(store: Store):
    notes = store.voice_notes()
    return notes if len(notes) == 3 and all(n.status == NoteStatus.REPLIED for n in notes) else None


def test_the_chats_own_language_wins_then_the_senders_app_then_the_default():
    from types import SimpleNamespace

    from bot_bridge.acting.worker import reply_language
    from bot_bridge.config import ReplySettings

    reply = ReplySettings(languages={"telegram:42": "zh"})
    note = SimpleNamespace(platform="telegram", chat_id="42", language="en")

    assert reply_language(reply, note) == "zh"
    assert reply_language(reply, SimpleNamespace(platform="telegram", chat_id="7", language="en")) == "en"
    assert reply_language(reply, SimpleNamespace(platform="wecom", chat_id="lisi", language=None)) == "both"
    assert reply_language(ReplySettings(language="zh"), SimpleNamespace(platform="telegram", chat_id="7", language="en")) == "zh"


@pytest.mark.parametrize(("duration_s", "second_half", "charted"), [(12.0, "angry", True), (12.0, "neutral", False),
                                                                   (8.0, "angry", False)])
def test_a_chart_only_for_long_notes_whose_emotion_changes(duration_s, second_half, charted):
    from bot_bridge.acting.charts import timeline_chart

    steps = int(duration_s * 2) - 1
    windows = [Window(t / 2, t / 2 + 1, _scores("neutral" if t < steps // 2 else second_half), 1.0) for t in range(steps)]
    result = Result(_scores("neutral"), duration_s, 1.0, {"name": "tiny"}, timeline=windows)

    chart = timeline_chart(result, min_duration_s=10.0)

    assert (chart is not None) == charted
    assert chart is None or chart.startswith(b"\x89PNG")


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free port, when the machine has one (Debian package redis-server)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: the scale-out path needs it (README, Development)")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--save", "", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: _redis_answers(url), timeout=10)
    yield url
    process.terminate()
    process.wait(10)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        return False


def test_the_queue_can_live_in_redis(tmp_path, tiny_model_dir, tiny_model, fakes, voice, redis_url):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes=all_platforms(fakes), queue__url=redis_url) as bot:
        bot.deliver(*one_note_each(fakes, voice)[0])
        fakes[0].wait_for_messages(1, timeout=30)
        assert bot.wait_until_finished()[0].status == NoteStatus.REPLIED
        assert not (tmp_path / "queue.db").exists()


def test_a_reply_sent_on_its_second_try_is_recorded_without_the_error_of_the_first(bot, fakes, voice):
    telegram_fake = fakes[0]
    http = bot.service.chat.adapters["telegram"].http
    http.backoff_s = 0.01
    telegram_fake.fail_next("sendMessage", 500, times=http.attempts)  # the whole first try fails
    request, path = one_note_each(fakes, voice)[0]

    bot.deliver(request, path)
    telegram_fake.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()

    assert (note.status, note.attempts) == (NoteStatus.REPLIED, 2)
    assert (note.error_code, note.error_detail) == (None, None)
