"""Escalations against the loopback platform fakes: one message per case and target, each case once.

Time is the test's: notes are written with known times and every sweep is
called with its ``now``. What people do with cases (buttons, levels,
grouping): tests/test_cases.py.
"""

from __future__ import annotations

import functools
import logging
import pkgutil
import re
import threading
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner

import adapters
from adapters.base import TextLimit
from adapters.wecom_robot import WeComRobot
from bot_bridge.acting.escalation import ALERT_QUOTE_CHARACTERS
from bot_bridge.acting.rules import rule_for
from bot_bridge.acting.scheduler import build_scheduler
from bot_bridge.acting.worker import build_adapters
from bot_bridge.chat.outbound import OutboundError, OutboundHttp
from bot_bridge.cli import cli
from bot_bridge.config import PROJECT_DIR, ConfigError, EscalationRule, EscalationSettings, load_settings
from bot_bridge.remembering.alert_store import AlertStore
from bot_bridge.remembering.case_store import CaseStore, DeliveryState
from bot_bridge.remembering.store import Store
from bot_bridge.service import Service
from bot_bridge.web import create_app
from bot_bridge.words import clip
from tests.alert_helpers import (
    NOON,
    PUBLIC_URL,
    TELEGRAM_CHAT,
    Alerts,
    RecordingHttp,
    add_chat_note,
    alert_settings,
    target_config,
    texts,
)
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import ChatBot, chat_settings, platform_environment
from tests.platforms import fixtures
from tests.platforms import telegram as tg
from tests.platforms.wecom import FakeWeCom
from tests.processes import wait_for
from tests.test_console import PASSWORD, sign_in

fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom


@pytest.fixture
def alerts(tmp_path, database_url, fake_slack, fake_telegram, fake_wecom):
    """Runs each test on SQLite and on PostgreSQL: the claims are conditional UPDATEs on both."""
    settings = alert_settings(tmp_path, telegram=fake_telegram, slack=fake_slack, wecom=fake_wecom, database_url=database_url)
    alerts = Alerts(settings)
    yield alerts
    alerts.close()


def states(alerts: Alerts) -> dict[tuple[str, str], str]:
    """(result id, target) -> the state of the note's case's delivery there."""
    return {(escalation.result_id, row.target): row.state
            for escalation, _, _, rows in alerts.escalator.cases.escalations() for row in rows}


def test_a_sweep_sends_each_target_one_message_per_new_case(alerts, fake_slack, fake_telegram, fake_wecom):
    store = alerts.store
    furious = add_chat_note(store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice", duration_s=12.34)
    cross = add_chat_note(store, received_at=NOON + timedelta(minutes=1), emotions={"angry": 0.5}, sender_name="Bob")
    calm = add_chat_note(store, received_at=NOON + timedelta(minutes=2), emotions={"happy": 0.9})

    assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"slack": 2, "telegram": 2, "robot": 2}

    alice, bob = texts(fake_slack)  # the cases in the order they opened, one message each
    assert fake_slack.sent_messages[0]["params"]["channel"] == "C0VOICES01"
    assert alice.startswith("🚨 Case 1 · open\n😠 Angry · 87% (≥ 50%)\ntelegram · Support group · Alice\n"
                            "2026-03-04 06:00 · 12.3 s\n")
    assert "(times: Europe/London)" in alice and f"Act on it in the console: {PUBLIC_URL}/cases/1" in alice
    assert f"{PUBLIC_URL}/results/{furious}" in alice and cross not in alice and calm not in alice
    assert bob.startswith("🚨 Case 2 · open") and f"{PUBLIC_URL}/results/{cross}" in bob

    telegram_alice, _ = texts(fake_telegram)
    assert fake_telegram.sent_messages[0]["params"]["chat_id"] == int(TELEGRAM_CHAT)
    assert telegram_alice.startswith("🚨 案件 1 · 待处理\n😠 愤怒 · 87% (≥ 50%)")
    assert "2026-03-04 14:00 · 12.3 秒" in telegram_alice and "（时间：Asia/Shanghai）" in telegram_alice

    robot_alice, _ = texts(fake_wecom)
    assert fake_wecom.sent_messages[0]["params"]["msgtype"] == "markdown"
    assert robot_alice.startswith("🚨 案件 1 · 待处理 / Case 1 · open\n😠 愤怒 Angry · 87%")
    assert f"在控制台处理 / Act on it in the console: {PUBLIC_URL}/cases/1" in robot_alice, "a robot has no buttons"

    assert set(states(alerts).values()) == {DeliveryState.SENT}


def test_the_same_case_is_never_sent_twice_even_after_a_restart(alerts, fake_slack, fake_telegram, fake_wecom):
    first = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    alerts.escalator.sweep(NOON + timedelta(minutes=10))
    restarted = alerts.restart()
    try:
        restarted.escalator.sweep(NOON + timedelta(minutes=15))
        second = add_chat_note(restarted.store, received_at=NOON + timedelta(minutes=16), emotions={"angry": 0.6},
                               sender_name="Bob")  # another sender: another case
        restarted.escalator.sweep(NOON + timedelta(minutes=20))
    finally:
        restarted.close()

    for fake in (fake_slack, fake_telegram, fake_wecom):
        first_alert, second_alert = texts(fake)
        assert first in first_alert and second not in first_alert
        assert second in second_alert and first not in second_alert


def test_a_failing_target_is_retried_at_the_next_sweep_without_resending_to_the_others(
    alerts, fake_slack, fake_telegram, fake_wecom
):
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    fake_slack.fail_next("chat.postMessage", status=500, times=2)  # both tries of the sweep

    assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"slack": 0, "telegram": 1, "robot": 1}
    assert texts(fake_slack) == []
    assert states(alerts)[(case, "slack")] == DeliveryState.RETRYING

    assert alerts.escalator.sweep(NOON + timedelta(minutes=10)) == {"slack": 1, "telegram": 0, "robot": 0}
    assert case in texts(fake_slack)[0]
    assert (len(texts(fake_telegram)), len(texts(fake_wecom))) == (1, 1)
    assert set(states(alerts).values()) == {DeliveryState.SENT}


def test_a_target_that_keeps_failing_is_given_up_after_max_attempts(tmp_path, fake_slack):
    alerts = Alerts(alert_settings(tmp_path, slack=fake_slack, escalation={"max_attempts": 2}))
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    fake_slack.fail_next("chat.postMessage", status=200, body={"ok": False, "error": "channel_not_found"}, times=2)
    for minutes in (5, 10, 15):
        alerts.escalator.sweep(NOON + timedelta(minutes=minutes))
    [(_, _, _, [delivery])] = alerts.escalator.cases.escalations(result_id=case)
    assert (delivery.state, delivery.attempts) == (DeliveryState.GAVE_UP, 2)
    assert "channel_not_found" in delivery.last_error
    assert texts(fake_slack) == []
    alerts.close()


def test_a_case_with_the_longest_names_fits_every_platforms_message(alerts, fake_slack, fake_telegram, fake_wecom):
    """Names are cut where they are kept (256 characters); a case's message holding the longest fits each
    platform's limit, measured the way it counts (and anything longer would be cut to it)."""
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, chat_name="客户服务投诉处理中心" * 30,
                         sender_name="客" * 185)

    alerts.escalator.sweep(NOON + timedelta(minutes=5))

    limits = {fake_slack: TextLimit(4000, "characters"), fake_telegram: TextLimit(4096, "utf-16 units"),
              fake_wecom: TextLimit(4096, "bytes")}
    for fake, limit in limits.items():
        [text] = texts(fake)
        assert limit.measure(text) <= limit.size and case in text


def test_rules_per_chat_score_any_emotion_not_only_the_top_label(tmp_path, fake_telegram):
    rules = {"telegram:-100888": {"fearful": 0.6}, "slack:*": {"angry": 0.3}}
    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, escalation={"rules": rules}))
    store = alerts.store
    fearful = add_chat_note(store, received_at=NOON, emotions={"fearful": 0.65}, chat_id="-100888")
    add_chat_note(store, received_at=NOON, emotions={"angry": 0.9}, chat_id="-100888")  # its rule has no angry
    default = add_chat_note(store, received_at=NOON, emotions={"angry": 0.5}, chat_id="-100777")
    add_chat_note(store, received_at=NOON, emotions={"angry": 0.49}, chat_id="-100777")
    not_top = add_chat_note(store, received_at=NOON, emotions={"angry": 0.35, "neutral": 0.65}, platform="slack",
                            chat_id="C0SALES")
    add_chat_note(store, received_at=NOON, emotions={"angry": 0.9}, reason="no_speech")
    add_chat_note(store, received_at=NOON - timedelta(hours=25), emotions={"angry": 0.9})  # older than max_age_h

    found = {case.result.id: (case.emotion, case.score, case.threshold)
             for case, _ in alerts.escalator.new_cases(NOON + timedelta(minutes=5))}
    assert found == {fearful: ("fearful", 0.65, 0.6), default: ("angry", 0.5, 0.5), not_top: ("angry", 0.35, 0.3)}
    alerts.close()


# --- keywords of the transcript (rules of acting/rules.py) ------------------------------------------------

KEYWORD_RULE = {"angry": 0.8, "keywords": ["退款", "refund"]}


def keyword_notes(store) -> dict[str, str]:
    """Notes whose transcripts are written into the store, as SenseVoice with real weights would write them."""
    note = functools.partial(add_chat_note, store, received_at=NOON)
    return {
        "calm_refund_zh": note(emotions={"happy": 0.9}, said="我已经等了三个星期了，退款到底什么时候到？", sender_name="Ann"),
        "calm_refunds_en": note(emotions={"happy": 0.9}, said="Two refunds arrived, thank you", sender_name="Ben"),
        "calm_refund_en": note(emotions={"neutral": 0.9}, said="Where is my REFUND?", sender_name="Cy"),
        "angry_silent": note(emotions={"angry": 0.85}, said="hello", sender_name="Di"),
        "angry_refund": note(emotions={"angry": 0.85}, said="退款！", sender_name="Ed"),
        "angry_no_words": note(emotions={"angry": 0.9}, sender_name="Flo"),  # not transcribed
    }


@pytest.mark.parametrize(
    ("match_kind", "expected"),
    [
        ("any", {"calm_refund_zh": ("happy", None, "退款"), "calm_refund_en": ("neutral", None, "refund"),
                 "angry_silent": ("angry", 0.8, None), "angry_refund": ("angry", 0.8, "退款"),
                 "angry_no_words": ("angry", 0.8, None)}),
        ("all", {"angry_refund": ("angry", 0.8, "退款")}),
    ],
)
def test_a_keyword_raises_a_case_alone_with_any_and_only_beside_the_emotion_with_all(alerts, match_kind, expected):
    ids = keyword_notes(alerts.store)
    rule = EscalationRule.model_validate({**KEYWORD_RULE, "match": match_kind})
    alerts.settings.escalation.rules["telegram:*"] = rule

    found = {case.result.id: (case.emotion, case.threshold, case.keyword)
             for case, _ in alerts.escalator.new_cases(NOON + timedelta(minutes=5))}

    assert found == {ids[name]: what for name, what in expected.items()}


def test_a_keyword_case_is_alerted_with_the_word_that_matched_and_what_was_said(alerts, fake_slack, fake_telegram):
    ids = keyword_notes(alerts.store)
    alerts.settings.escalation.rules["telegram:*"] = EscalationRule.model_validate(KEYWORD_RULE)
    assert alerts.escalator.sweep(NOON + timedelta(minutes=5))["slack"] == 5  # one message per case

    slack = "\n\n".join(texts(fake_slack))  # en, Europe/London
    link = f"{PUBLIC_URL}/results/"
    assert ("😊 Happy · 90%\n🔑 keyword \"退款\"\ntelegram · Support group · Ann\n2026-03-04 06:00 · 6.0 s\n"
            f"{link}{ids['calm_refund_zh']}\n💬 我已经等了三个星期了，退款到底什么时候到？\n") in slack
    assert (f"😠 Angry · 85% (≥ 80%)\ntelegram · Support group · Di\n2026-03-04 06:00 · 6.0 s\n"
            f"{link}{ids['angry_silent']}\n💬 hello\n") in slack
    assert ("😠 Angry · 90% (≥ 80%)\ntelegram · Support group · Flo\n2026-03-04 06:00 · 6.0 s\n"
            f"{link}{ids['angry_no_words']}\n") in slack
    telegram = "\n\n".join(texts(fake_telegram))  # zh
    assert "😐 中性 · 90%\n🔑 关键词「refund」\n" in telegram and "\n💬 Where is my REFUND?" in telegram
    [(escalation, _, _, _)] = CaseStore(alerts.store).escalations(result_id=ids["calm_refund_en"])
    assert (escalation.keyword, escalation.threshold) == ("refund", None)  # kept with the note


def test_an_alert_quotes_a_long_transcript_cut_to_its_start_and_never_past_the_targets_limit(
    alerts, fake_slack, fake_telegram, fake_wecom
):
    words = "我已经等了三个星期了，退款到底什么时候到？<b>&amp;</b> [链接](http://x) " * 60  # 2,000 characters
    ids = [add_chat_note(alerts.store, received_at=NOON + timedelta(seconds=n), emotions={"angry": 0.9}, said=words,
                         sender_name=f"customer {n}") for n in range(12)]

    alerts.escalator.sweep(NOON + timedelta(minutes=5))

    limits = {fake_slack: TextLimit(4000, "characters"), fake_telegram: TextLimit(4096, "utf-16 units"),
              fake_wecom: TextLimit(4096, "bytes")}
    for fake, limit in limits.items():
        parts = texts(fake)
        assert all(limit.measure(part) <= limit.size for part in parts)
        assert all(sum(part.count(case) for part in parts) == 1 for case in ids), "every case, link and all"
        quotes = [line for part in parts for line in part.split("\n") if line.startswith("💬 ")]
        assert len(quotes) == len(ids) and all(quote.endswith("…") for quote in quotes)
    [telegram_quote, *_] = [line for line in texts(fake_telegram)[0].split("\n") if line.startswith("💬 ")]
    assert telegram_quote == "💬 " + clip(words, ALERT_QUOTE_CHARACTERS)  # plain text: as said
    robot = "\n".join(texts(fake_wecom))
    assert "](http" not in robot  # markdown in what was said is made inert for the robot, as names are


def test_a_chat_no_route_names_is_not_escalated(tmp_path, fake_telegram):
    routes = [{"sources": ["telegram:-100777"], "targets": ["telegram"]}]
    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, routes=routes))
    routed = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, chat_id="-100777")
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, chat_id="-100999")
    assert [case.result.id for case, _ in alerts.escalator.new_cases(NOON + timedelta(minutes=5))] == [routed]
    alerts.close()


def test_the_urgent_job_the_scheduler_runs_sends_the_severe_cases_at_once_and_the_sweep_the_rest(tmp_path,
                                                                                                  fake_telegram):
    settings = alert_settings(tmp_path, telegram=fake_telegram, escalation={"immediate": {"angry": 0.8}})
    store = Store(settings.resolved_database_url, settings.outputs_dir)
    scheduler = build_scheduler(settings, store, build_adapters(settings))  # what `serve` schedules
    severe = add_chat_note(store, received_at=NOON, emotions={"angry": 0.95}, sender_name="Alice")
    ordinary = add_chat_note(store, received_at=NOON, emotions={"angry": 0.6}, sender_name="Bob")

    assert scheduler.jobs["urgent escalations"][0] == timedelta(seconds=settings.escalation.immediate_check_s)
    assert scheduler.run("urgent escalations", NOON + timedelta(seconds=30))
    [urgent] = texts(fake_telegram)
    assert urgent.startswith("🚨 紧急：案件 1 · 待处理") and severe in urgent and ordinary not in urgent
    assert "‼️ 紧急" in urgent

    assert scheduler.run("urgent escalations", NOON + timedelta(seconds=60))
    assert len(texts(fake_telegram)) == 1, "the urgent job leaves ordinary cases to the sweep"
    assert scheduler.run("escalation sweep", NOON + timedelta(minutes=5))
    assert ordinary in texts(fake_telegram)[1] and severe not in texts(fake_telegram)[1]
    store.close()


def test_an_angry_voice_note_through_the_webhook_becomes_a_case_and_an_urgent_alert(
    tmp_path, angry_model_dir, angry_model, fake_telegram, fake_slack
):
    """The whole path, nothing written into the store by hand: a Telegram webhook, the queue's worker, the
    model (a random one biased to sound angry, ~67 %), the reply, the note's case, and the scheduler's own
    urgent job (every 0.2 s here) alerting the Slack target with a link to the result."""
    settings = chat_settings(
        tmp_path, angry_model_dir, platform_environment(fake_telegram, fake_slack), public_url=PUBLIC_URL,
        targets=target_config(slack=fake_slack), routes=[{"sources": ["telegram:*"], "targets": ["slack"]}],
        escalation={"immediate": {"angry": 0.6}, "immediate_check_s": 0.2},
    )
    bot = ChatBot(settings, angry_model)
    scheduler = build_scheduler(settings, bot.store, bot.service.chat.adapters)  # as `serve` starts it
    scheduler.start()
    try:
        voice = encode(speech_clip(3), 16000, "ogg_opus")
        bot.deliver(tg.webhook_request(tg.voice_update(fake_telegram.add_file(voice), chat_type="group")), "telegram")
        [reply] = fake_telegram.wait_for_messages(1, timeout=30)
        [alert] = fake_slack.wait_for_messages(1, timeout=30)
        [note] = bot.wait_until_finished()
        cases = CaseStore(bot.store)
        case = wait_for(lambda: _sent_case(cases, note.result_id), timeout=10, what="the case recorded as sent")
    finally:
        scheduler.stop()
        bot.close()

    assert "TEST MODEL" in reply["text"] and "😠 Angry · 6" in reply["text"]
    assert alert["text"].startswith("🚨 URGENT: Case 1 · open")
    assert [button["value"].rsplit(":", 1)[-1] for button in alert["params"]["blocks"][1]["elements"]] == [
        "acknowledge", "resolve", "snooze", "right", "wrong"], "the alert carries its buttons"
    assert "😠 Angry · 6" in alert["text"] and "‼️ urgent" in alert["text"]
    assert f"{PUBLIC_URL}/results/{note.result_id}" in alert["text"]
    assert case.emotion == "angry" and case.voice_note_id == note.id


def _sent_case(cases, result_id: str):
    """The escalation of ``result_id`` once its case's one delivery is recorded as sent."""
    found = cases.escalations(result_id=result_id)
    return found[0][0] if found and [row.state for row in found[0][3]] == [DeliveryState.SENT] else None


def test_a_severe_case_that_failed_is_retried_by_the_sweep_not_every_urgent_check(tmp_path, fake_telegram):
    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, escalation={"immediate": {"angry": 0.8}}))
    severe = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.95})
    fake_telegram.fail_next("sendMessage", status=500, times=2)  # both tries of the urgent send

    for seconds in range(30, 300, 30):  # the urgent job, every immediate_check_s until the sweep
        alerts.escalator.sweep(NOON + timedelta(seconds=seconds), severe_only=True)
    [(_, _, _, [delivery])] = alerts.escalator.cases.escalations(result_id=severe)
    assert (delivery.state, delivery.attempts) == (DeliveryState.RETRYING, 1), "max_attempts counts sweeps"
    assert texts(fake_telegram) == []

    assert alerts.escalator.sweep(NOON + timedelta(minutes=5)) == {"telegram": 1}
    [alert] = texts(fake_telegram)
    assert severe in alert and "‼️ 紧急" in alert
    alerts.close()


def test_without_public_url_alerts_name_each_result_instead_of_linking_it(tmp_path, fake_telegram):
    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, public_url=None))
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})

    alerts.escalator.sweep(NOON + timedelta(minutes=5))

    [alert] = texts(fake_telegram)
    assert f"\nresult {case}\n" in alert and "/results/" not in alert and "/cases/" not in alert
    assert "None" not in alert
    alerts.close()


def test_a_target_whose_platform_is_off_gets_no_cases_not_even_once_it_is_on(tmp_path, fake_slack, fake_telegram):
    targets = target_config(telegram=True, slack=True)
    off = Alerts(alert_settings(tmp_path, telegram=fake_telegram, targets=targets))  # no Slack token
    assert off.targets["slack"].sender is None
    old = add_chat_note(off.store, received_at=NOON, emotions={"angry": 0.9})
    assert off.escalator.sweep(NOON + timedelta(minutes=5)) == {"telegram": 1}
    assert [target for _, target in states(off)] == ["telegram"], "no delivery waits for Slack"
    off.close()

    on = Alerts(alert_settings(tmp_path, telegram=fake_telegram, slack=fake_slack, targets=targets))
    new = add_chat_note(on.store, received_at=NOON + timedelta(minutes=6), emotions={"angry": 0.8}, sender_name="Bob")
    assert on.escalator.sweep(NOON + timedelta(minutes=10)) == {"slack": 1, "telegram": 1}
    [alert] = texts(fake_slack)
    assert new in alert and old not in alert, "no burst of old cases when Slack is turned on"
    on.close()


def test_cases_older_than_max_age_are_given_up_not_sent(alerts, fake_slack, fake_telegram):
    old = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    escalator, found_at = alerts.escalator, NOON + timedelta(minutes=1)
    for matched, _ in escalator.new_cases(found_at):  # left waiting for Slack, say by a process without its token
        escalator.cases.record_note(matched, [("slack", 0)], found_at, escalator.window)
    later = NOON + timedelta(hours=24, minutes=1)
    recent = add_chat_note(alerts.store, received_at=later - timedelta(minutes=2), emotions={"angry": 0.8},
                           sender_name="Bob")

    assert escalator.preview(later)["slack"][0].count("/results/") == 1
    assert escalator.sweep(later) == {"slack": 1, "telegram": 1, "robot": 1}
    [alert] = texts(fake_slack)
    assert recent in alert and old not in alert
    [(_, _, _, [delivery])] = escalator.cases.escalations(result_id=old)
    assert delivery.state == DeliveryState.GAVE_UP and "max_age_h (24 h)" in delivery.last_error


def test_names_people_chose_cannot_become_markup(alerts, fake_slack, fake_telegram, fake_wecom):
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, chat_name="<!channel> & co",
                         sender_name="[处理](http://phish.example) # **now**")
    alerts.escalator.sweep(NOON + timedelta(minutes=5))

    [robot] = texts(fake_wecom)  # markdown: the names' markup made inert, the alert's own left alone
    assert "\ntelegram · ＜!channel＞ & co · ［处理］（http://phish.example） ＃ ＊＊now＊＊\n" in robot
    assert "](http" not in robot and robot.startswith("🚨 案件 1 · 待处理")
    [slack] = texts(fake_slack)  # &, < and > are Slack's markup: escaped once, whole text
    assert "\ntelegram · &lt;!channel&gt; &amp; co · [处理](http://phish.example) # **now**\n" in slack
    assert "<!channel>" not in slack and "&amp;amp;" not in slack
    [section, _] = fake_slack.sent_messages[0]["params"]["blocks"]  # the card's own text: the same escapes
    assert "&lt;!channel&gt; &amp; co" in section["text"]["text"] and "<!channel>" not in section["text"]["text"]
    [telegram] = texts(fake_telegram)  # plain text: as the people wrote it
    assert "\ntelegram · <!channel> & co · [处理](http://phish.example) # **now**\n" in telegram
    assert case in robot and case in slack and case in telegram


def test_slack_messages_fit_its_limits_as_it_counts_them_after_escaping(alerts, fake_slack):
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, chat_name="&" * 256,
                         sender_name="<" * 185)
    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    [message] = fake_slack.sent_messages
    [section, _] = message["params"]["blocks"]
    assert len(message["text"]) <= 4000 and len(section["text"]["text"]) <= 3000
    assert "&amp;" * 256 in message["text"] and case in message["text"]


def test_a_rule_for_every_chat_comes_after_the_chat_and_platform_rules(tmp_path, fake_telegram):
    rules = {"*": {"fearful": 0.6}, "slack:*": {"angry": 0.3}, "telegram:-100888": {"sad": 0.5}}
    escalation = EscalationSettings(rules=rules)
    assert rule_for(escalation, "telegram", "-100888").thresholds == {"sad": 0.5}
    assert rule_for(escalation, "slack", "C0SALES").thresholds == {"angry": 0.3}
    assert rule_for(escalation, "telegram", "-100777").thresholds == {"fearful": 0.6}
    assert rule_for(EscalationSettings(), "telegram", "-100777").thresholds == {"angry": 0.5}

    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, escalation={"rules": rules}))
    fearful = add_chat_note(alerts.store, received_at=NOON, emotions={"fearful": 0.65})
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})  # "*" replaces the default rule
    assert [case.result.id for case, _ in alerts.escalator.new_cases(NOON + timedelta(minutes=5))] == [fearful]
    alerts.close()


def test_an_alert_cut_off_by_a_crash_is_sent_again_marked_as_a_possible_repeat(alerts, fake_slack, fake_telegram):
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    escalator, found_at = alerts.escalator, NOON + timedelta(minutes=5)
    for found, steps in escalator.new_cases(found_at):
        escalator.cases.record_note(found, [(step.target, step.level) for step in steps], found_at, escalator.window)
    # A process claims its Slack delivery, then dies before recording the send.
    [waiting] = escalator.messages.deliveries.waiting("slack")
    assert escalator.messages.deliveries.claim(waiting.id, found_at)

    escalator.sweep(found_at + timedelta(minutes=5))
    assert texts(fake_slack) == [], "still within SENDING_TIMEOUT: maybe on its way"
    assert len(texts(fake_telegram)) == 1

    escalator.sweep(found_at + timedelta(minutes=15))
    [again] = texts(fake_slack)
    assert case in again and "↻ may repeat" in again
    assert len(texts(fake_telegram)) == 1


def test_cases_another_process_claimed_meanwhile_are_left_to_it(alerts, fake_telegram):
    mine = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, sender_name="Alice")
    theirs = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.8}, sender_name="Bob")
    escalator, found_at = alerts.escalator, NOON + timedelta(minutes=5)
    for found, steps in escalator.new_cases(found_at):
        escalator.cases.record_note(found, [(step.target, step.level) for step in steps], found_at, escalator.window)
    deliveries = escalator.messages.deliveries
    [bobs] = [row for row in deliveries.waiting("telegram") if row.case_id == 2]
    assert deliveries.claim(bobs.id, found_at), "another process (a CLI sweep) takes Bob's case first"

    escalator.sweep(found_at)
    [alert] = texts(fake_telegram)
    assert mine in alert and theirs not in alert
    assert not deliveries.claim(bobs.id, found_at), "and nobody takes it twice"


def test_dry_run_prints_the_alerts_and_records_nothing(tmp_path, fake_slack, fake_telegram):
    settings = alert_settings(tmp_path, slack=fake_slack)
    case = add_chat_note(Alerts(settings).store, received_at=NOON, emotions={"angry": 0.9}, duration_s=3)
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\npublic_url: {PUBLIC_URL}\n"
        "targets:\n  slack: {platform: slack, chat_id: C0VOICES01, language: en}\n"
        "routes:\n  - {sources: ['*'], targets: [slack]}\n"
        "escalation: {max_age_h: 100000}\n",  # the notes are from 2026, whatever today is
        encoding="utf-8",
    )
    run = CliRunner().invoke(cli, ["--config", str(config), "escalate", "--now", "--dry-run"],
                             env=platform_environment(slack_fake=fake_slack))
    assert run.exit_code == 0, run.output
    assert "slack" in run.output and f"{PUBLIC_URL}/results/{case}" in run.output and "3.0 s" in run.output
    assert "🚨 Case · open" in run.output, "a case the sweep would open, not recorded (no number yet)"
    assert fake_slack.sent_messages == []

    run = CliRunner().invoke(cli, ["--config", str(config), "escalate", "--now"],
                             env=platform_environment(slack_fake=fake_slack))
    assert run.exit_code == 0, run.output
    assert case in texts(fake_slack)[0]
    assert "1 case" in run.output


def test_the_console_shows_each_case_with_its_state_per_target(tmp_path, fake_slack, fake_telegram):
    settings = alert_settings(tmp_path, slack=fake_slack, telegram=fake_telegram)
    settings.console.password = PASSWORD
    service = Service(settings)
    alerts = Alerts(settings, service.store)
    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice")
    fake_telegram.fail_next("sendMessage", status=400, times=1)
    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    browser = create_app(service=service).test_client()
    sign_in(browser)

    page = browser.get("/escalations?state=failed").get_data(as_text=True)
    assert f"/results/{case}" in page and "angry ≥ 0.50" in page and "telegram · Support group · Alice" in page
    assert "Slack #support" in page and "try 1 failed, tried again at the next sweep" in page
    assert case not in browser.get("/escalations?state=pending").get_data(as_text=True)
    result_page = browser.get(f"/results/{case}").get_data(as_text=True)
    assert "angry ≥ 0.50" in result_page and "Slack #support" in result_page
    service.close()


def test_a_robot_key_the_platform_echoes_is_in_no_log_line_stored_error_or_console_page(tmp_path, fake_wecom,
                                                                                       caplog):
    """The robot's key is its whole credential. WeCom refuses a send, quoting the key in its errmsg: the
    sweep the scheduler runs (with the deployment's own senders) logs, stores and shows the error, masked."""
    settings = alert_settings(tmp_path, wecom=fake_wecom)
    settings.console.password = PASSWORD
    service = Service(settings)
    case = add_chat_note(service.store, received_at=NOON, emotions={"angry": 0.9})
    key = fake_wecom.robot_key
    fake_wecom.fail_next("webhook/send", status=200,
                         body={"errcode": 93000, "errmsg": f"invalid webhook url key={key}, hint: [1733345000_abc]"})
    scheduler = build_scheduler(settings, service.store, service.chat.adapters)

    with caplog.at_level(logging.INFO):
        assert scheduler.run("escalation sweep", NOON + timedelta(minutes=5))

    [(_, _, _, [delivery])] = CaseStore(service.store).escalations(result_id=case)
    assert delivery.state != DeliveryState.SENT
    assert "errcode 93000 (invalid webhook url key=[REDACTED])" in delivery.last_error
    assert "errcode 93000" in caplog.text
    browser = create_app(service=service).test_client()
    sign_in(browser)
    page = browser.get("/escalations").get_data(as_text=True)
    assert "errcode 93000" in page
    for where in (delivery.last_error, caplog.text, page):
        assert key not in where
    service.close()


def test_the_robot_keeps_to_20_messages_a_minute():
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    with FakeWeCom(robot_rate_limit=None) as fake:
        robot = WeComRobot({"api_base": fake.base_url}, OutboundHttp(sleep=lambda _s: None),
                           clock=lambda: now[0], sleep=sleep)
        for number in range(21):
            robot.send_alert(fake.robot_key, f"message {number}")
            now[0] += 1
        assert slept == [40.0], "the 21st waits until the 1st is a minute old"
        assert len(fake.sent_messages) == 21


def test_a_robot_at_its_limit_holds_up_only_itself_and_stops_waiting_when_told(caplog):
    http = RecordingHttp()
    robot = WeComRobot({}, http, clock=lambda: 0.0)  # time stands still: the 21st message waits a minute
    for number in range(20):
        robot.send_alert("robot-a", f"message {number}")
    failed = []

    def twenty_first() -> None:
        try:
            robot.send_alert("robot-a", "message 20")
        except OutboundError as error:
            failed.append(error)

    waiting = threading.Thread(target=twenty_first)
    with caplog.at_level(logging.INFO, logger=WeComRobot.__module__):
        waiting.start()
        wait_for(lambda: "a minute at most; waiting 60 s" in caplog.text, timeout=10, what="the 21st message waiting")
    robot.send_alert("robot-b", "another robot")
    assert waiting.is_alive() and http.keys().count("robot-b") == 1, "another robot's message does not wait"

    stopped_at = time.monotonic()
    robot.stop_waiting()
    waiting.join(5)
    assert not waiting.is_alive() and time.monotonic() - stopped_at < 5
    assert failed[0].retryable and "stopping" in str(failed[0])
    assert http.keys().count("robot-a") == 20


def test_the_adapters_package_is_looked_through_once(monkeypatch):
    adapters.adapter_classes()
    monkeypatch.setattr(pkgutil, "iter_modules", lambda *_args, **_kwargs: pytest.fail("looked through again"))
    assert "slack" in adapters.adapter_classes() and "wecom_robot" in adapters.alert_only_classes()
    assert "SLACK_BOT_TOKEN" in adapters.environment_variables()["slack"].values()


def test_the_escalation_example_config_is_valid():
    settings = load_settings(PROJECT_DIR / "config" / "escalation.example.yaml", environ={})
    assert {target.platform for target in settings.targets.values()} == {"slack", "telegram", "wecom", "wecom_robot"}
    assert settings.escalation.immediate == {"angry": 0.8}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"routes": [{"sources": ["*"], "targets": ["suport"]}]}, r"routes.*routes\[0\]\.targets names 'suport'"),
        ({"routes": [{"sources": ["*"], "levels": [{"targets": ["leads"], "after_min": 15}]}]},
         r"routes\[0\]\.levels\[0\] names 'leads'"),
        ({"routes": [{"sources": ["*"]}]}, r"give a route either targets or levels"),
        ({"routes": [{"sources": ["*"], "levels": [{"targets": ["x"], "after_min": -1}]}]}, r"after_min"),
        ({"escalation": {"group_window_min": 0}}, r"escalation\.group_window_min"),
        ({"escalation": {"default_rule": {"angy": 0.5}}}, r"escalation\.default_rule.*'angy' is not an emotion"),
        ({"escalation": {"rules": {"telegram:1": {"angry": 1.5}}}}, r"escalation\.rules.*1\.5 is not a score"),
        ({"escalation": {"rules": {"telegram:1": {"keywords": ["退款"], "match": "all"}}}},
         r"escalation\.rules\.telegram:1.*match: all .* needs both keywords and emotion thresholds"),
        ({"escalation": {"rules": {"*": {"angry": 0.5, "keywords": ["refund", " "]}}}},
         r"escalation\.rules\.\*\.keywords.*1 to 64 characters long, not ''"),
        ({"escalation": {"default_rule": {"angry": 0.5, "match": "some"}}}, r"escalation\.default_rule\.match"),
        ({"targets": {"x": {"platform": "signal", "chat_id": "1"}}}, r"targets\.x\.platform.*'signal'"),
        ({"digest": {"targets": {"nobody": {}}}}, r"digest.*digest\.targets names 'nobody'"),
        ({"escalation": {"sweep_intervall_min": 5}}, r"escalation\.sweep_intervall_min.*unknown setting"),
        ({"digest": {"grace_period_h": 0}}, r"digest\.grace_period_h.*shorter than the 1 minute between checks"),
    ],
)
def test_a_wrong_escalation_setting_is_named(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={}, **overrides)


def test_an_alert_whose_answer_is_lost_is_not_resent_at_once_but_at_the_next_sweep_marked(alerts, fake_slack, fake_telegram):
    """A timeout after the request left: maybe in the channel. The next sweep says it may repeat."""
    from bot_bridge.chat.outbound import OutboundHttp

    case = add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    alerts.escalator.targets["slack"].sender.http = OutboundHttp(read_timeout_s=0.5)
    fake_slack.delay_next("chat.postMessage", 2)

    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    fake_slack.wait_for_messages(1, timeout=10)
    assert len(fake_slack.calls("chat.postMessage")) == 1, "not resent within the sweep"

    alerts.escalator.sweep(NOON + timedelta(minutes=10))
    first, again = texts(fake_slack)
    assert case in again and "↻ may repeat" in again and "may repeat" not in first
    assert len(texts(fake_telegram)) == 1
