"""The queue side: fast answers while the model works, crash recovery, bounded retries, charts.

The crash test is real: ``python -m bot_bridge serve`` in its own process
group, killed with SIGKILL while the fakes hold its audio downloads, then
started again on the same data directory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
import yaml

from bot_bridge.config import ModelSettings, QueueSettings
from bot_bridge.hearing.model import EmotionModel
from bot_bridge.hearing.model_files import make_random_model
from bot_bridge.remembering.results import Result, Window
from bot_bridge.remembering.store import NoteStatus, Store
from tests.audio_fixtures import encode, speech_clip, tone
from tests.chat_helpers import (
    TEST_QUEUE,
    VOICE_FORMATS,
    one_note_each,
    platform_environment,
    running_bot,
    voice_note_webhook,
)
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


#: A random model that hears a whistle over a voice: seed 2's head, biased (``make-random --seed 2 --bias
#: happy=1.5 --bias fearful=2.1``) so that clear speech leads to happy and speech under a 3 kHz whistle to
#: fearful, by ~0.4 in logits either way (measured over Ogg/Opus, M4A/AAC and AMR).
WHISTLE_MODEL = {"seed": 2, "bias": {"happy": 1.5, "fearful": 2.1}}


@pytest.fixture(scope="module")
def whistle_model_dir(tmp_path_factory):
    return make_random_model("tiny", tmp_path_factory.mktemp("models") / "whistle", **WHISTLE_MODEL)


@pytest.fixture(scope="module")
def whistle_model(whistle_model_dir):
    return EmotionModel.load(ModelSettings(name=str(whistle_model_dir)))


@pytest.fixture(scope="module")
def voice():
    clip = speech_clip(3)
    return {fmt: encode(clip, 16000, fmt) for fmt in ("ogg_opus", "m4a_aac_moov_end", "amr")}


def test_webhooks_answer_at_once_while_the_model_is_busy(bot, fakes, voice, monkeypatch):
    """The model is held busy until every answer is in: a webhook that waited for it would answer only after
    the hold (30 s) ran out, and after the model had returned."""
    release, analysing, returned = threading.Event(), threading.Event(), threading.Event()
    real_analyse = bot.service.analyse

    def busy_model(*args, **kwargs):
        analysing.set()
        release.wait(30)
        result = real_analyse(*args, **kwargs)
        returned.set()
        return result

    monkeypatch.setattr(bot.service, "analyse", busy_model)
    first, *others = one_note_each(fakes, voice)
    bot.deliver(*first)
    assert analysing.wait(30)

    answers = [bot.deliver(*delivery) for delivery in others * 2]  # the second time: redeliveries
    answered_while_busy = not returned.is_set()
    release.set()

    assert [answer.status_code for answer in answers] == [200] * 4
    assert answered_while_busy and max(bot.answer_times) < SLACK_LIMIT_S, bot.answer_times
    assert len(bot.wait_until_finished(3)) == 3
    assert [len(fake.sent_messages) for fake in fakes] == [1, 1, 1]


def test_a_platform_down_for_every_try_is_tried_on_the_growing_schedule_then_fails_once_logged(
    tmp_path, tiny_model_dir, tiny_model, fakes, voice, caplog
):
    """The promised schedule: 15, 45, 135 and 405 s between five tries by default. Here the first wait is
    0.02 s (``queue.retry_delay_s``); the growth and the number of tries are the defaults."""
    defaults = QueueSettings()
    assert (defaults.retry_delay_s, defaults.max_attempts) == (15.0, 5)
    base = 0.02
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes=all_platforms(fakes), queue__retry_delay_s=base,
                     queue__max_attempts=defaults.max_attempts) as bot:
        telegram_fake = fakes[0]
        http = bot.service.chat.adapters["telegram"].http
        http.backoff_s = 0.01
        telegram_fake.fail_next("sendMessage", 503, times=1000)
        request, path = one_note_each(fakes, voice)[0]

        with caplog.at_level(logging.WARNING):
            bot.deliver(request, path)
            [note] = bot.wait_until_finished()

    waits = [float(w) for w in re.findall(r"sendMessage.*; trying again in ([0-9.e+-]+) s", caplog.text)]
    assert waits == pytest.approx([base * 3**n for n in range(4)]), "each wait three times the last"
    sends = telegram_fake.calls("sendMessage")
    tries = [sends[n : n + http.attempts] for n in range(0, len(sends), http.attempts)]
    assert all(later[0]["received_at"] - earlier[-1]["received_at"] >= wait
               for earlier, later, wait in zip(tries, tries[1:], waits)), "no try before its time"
    assert (note.status, note.error_code, note.attempts) == (NoteStatus.FAILED, "send_failed", defaults.max_attempts)
    assert len(sends) == defaults.max_attempts * http.attempts
    assert len(telegram_fake.calls("getFile")) == 1  # the reply was kept: later tries only send it
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "FAILED after 5 tries: send_failed: telegram sendMessage" in failures[0]
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


def test_a_long_note_whose_voice_changes_gets_its_timeline_chart_and_a_steady_one_none(
    tmp_path, whistle_model_dir, whistle_model, fakes
):
    """Through the real analysis: each platform gets a 12 s voice with a whistle over its second half, which
    the whistle model hears change (happy, then fearful); Telegram also gets 12 s of plain voice, which it
    hears as happy throughout."""
    changing = {fmt: encode(whistled_voice(12), 16000, fmt) for fmt in VOICE_FORMATS.values()}
    with running_bot(tmp_path, whistle_model_dir, whistle_model, fakes=all_platforms(fakes)) as bot:
        for delivery in one_note_each(fakes, changing):
            bot.deliver(*delivery)
        bot.deliver(*voice_note_webhook("telegram", fakes[0], encode(speech_clip(12), 16000, "ogg_opus")))
        notes = bot.wait_until_finished(4)
        heard = {(note.platform, note.id): _leaders(bot.store.result(note.result_id)) for note in notes}

    steady = max(note.id for note in notes if note.platform == "telegram")
    assert heard == {key: ["happy"] if key[1] == steady else ["happy", "fearful"] for key in heard}, heard
    [telegram_photo] = fakes[0].calls("sendPhoto")
    assert telegram_photo["images"][0].startswith(b"\x89PNG") and "TEST MODEL" in telegram_photo["text"]
    [plain_reply] = fakes[0].calls("sendMessage")
    assert "😊" in plain_reply["text"] and not plain_reply.get("images")
    [slack_upload] = fakes[1].calls("files.completeUploadExternal")
    assert slack_upload["images"][0].startswith(b"\x89PNG") and "TEST MODEL" in slack_upload["text"]
    assert slack_upload["params"]["thread_ts"]
    wecom_text, wecom_image = fakes[2].calls("message/send")
    assert "TEST MODEL" in wecom_text["text"] and wecom_image["images"][0].startswith(b"\x89PNG")


def whistled_voice(seconds: float):
    """``seconds`` of speech with a 3 kHz whistle over its second half."""
    clip = speech_clip(seconds).copy()
    half = len(clip) // 2
    clip[half:] += tone(3000, seconds, amplitude=0.4)[: len(clip) - half]
    return clip


def _leaders(result: Result) -> list[str]:
    """The timeline's leading emotions in order of appearance, over the windows with speech (none without one)."""
    leaders = [window.emotion for window in result.timeline or () if window.speech >= 0.5]
    return list(dict.fromkeys(leaders))


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


@pytest.mark.parametrize("path", ["telegram", "slack/events", "wecom", "feishu"])
def test_a_platform_without_its_secrets_is_off(client, path):
    assert client.post(f"/webhooks/{path}", data=b"{}").status_code == 404
    assert client.get(f"/webhooks/{path}").status_code == 404


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


def test_a_pause_is_no_change_of_feeling_and_carries_no_score_line():
    """Results stored before silent windows became unknown still hold the model's reading of the pause."""
    import math

    from bot_bridge.acting.charts import score_line, timeline_chart

    windows = [Window(t / 2, t / 2 + 1, _scores("angry" if 8 <= t < 16 else "neutral"), 0.0 if 8 <= t < 16 else 1.0)
               for t in range(23)]
    result = Result(_scores("neutral"), 12.0, 0.6, {"name": "tiny"}, timeline=windows)

    assert timeline_chart(result, min_duration_s=10.0) is None
    line = score_line(result, "neutral")
    assert all(math.isnan(v) for v in line[8:16]) and not any(math.isnan(v) for v in line[:8] + line[16:])


@pytest.fixture
def redis_url(tmp_path):
    """A private redis-server on a free port, when the machine has one (Debian package redis-server)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed: the scale-out path needs it (docs/development.md)")
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
