"""Cases against the loopback platform fakes: grouped, worked where people read them, re-escalated when nobody does.

Presses arrive as each platform sends them (a signed Slack interactivity
form, a Telegram callback_query with the webhook's secret token, an
encrypted WeCom template_card_event, and the same by polling and Socket
Mode) and are answered through the real webhook; every copy of a case's
message is then edited (chat.update, editMessageText, update_template_card)
or followed up (a WeCom robot). Where a bot runs, time is real and sweeps
get ``utc_now()``; elsewhere the test owns the clock.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest

from bot_bridge.acting.alerting import build_targets
from bot_bridge.acting.escalation import Escalator
from bot_bridge.acting.scheduler import build_scheduler, utc_now
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.case_changes import Action, Actor, CaseChanges
from bot_bridge.remembering.case_store import CaseState, CaseStore
from bot_bridge.service import Service
from bot_bridge.web import create_app
from tests.alert_helpers import (
    NOON,
    PUBLIC_URL,
    TELEGRAM_CHAT,
    Alerts,
    add_chat_note,
    alert_settings,
    target_config,
    texts,
)
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import running_bot, without_webhooks
from tests.console_helpers import PASSWORD, page_token, required_role, sign_in
from tests.platforms import fixtures
from tests.platforms import slack, wecom
from tests.platforms import telegram as tg
from tests.processes import wait_for

fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom

SUPPORT = "C0SUPPORT1"
GROUP = int(TELEGRAM_CHAT)
WECOM_USERS = "lisi|wangwu"


def targets_for(*, slack_fake=None, telegram=None, wecom_fake=None) -> dict:
    """``target_config``'s targets, Slack's in #support (apart from the chat voice notes come from), and WeCom
    app users beside the robot."""
    targets = target_config(telegram=telegram, slack=slack_fake, wecom=wecom_fake)
    if slack_fake is not None:
        targets["slack"]["chat_id"] = SUPPORT
    if wecom_fake is not None:
        targets["wecom"] = {"platform": "wecom", "chat_id": WECOM_USERS, "name": "风控组", "language": "zh"}
    return targets


@contextmanager
def case_bot(tmp_path, model_dir, model, *, fakes: dict, environ: dict | None = None, routes=None, **overrides):
    """A running bot whose every chat is routed to a target per fake (``targets_for``)."""
    targets = targets_for(slack_fake=fakes.get("slack_fake"), telegram=fakes.get("telegram"),
                          wecom_fake=fakes.get("wecom_fake"))
    routes = routes or [{"sources": ["*"], "targets": list(targets)}]
    with running_bot(tmp_path, model_dir, model, fakes=fakes, environ=environ, public_url=PUBLIC_URL,
                     targets=targets, routes=routes, **overrides) as bot:
        yield bot


def sweep(bot, now=None) -> dict[str, int]:
    """What the scheduler's sweep does in the bot's process, now."""
    settings = bot.service.settings
    return Escalator(bot.store, settings, build_targets(settings, bot.service.chat.adapters)).sweep(now or utc_now())


def angry_case(bot, sender: str = "Alice") -> str:
    """A chat note that matches, analysed a minute ago, as the sweep will find it; its result id."""
    return add_chat_note(bot.store, received_at=utc_now() - timedelta(minutes=1), emotions={"angry": 0.9},
                         sender_name=sender)


def value_of(values, action: str, case_id: int = 1) -> str:
    """The button value, among ``values``, of ``action`` on case ``case_id``."""
    return next(value for value in values if value.endswith(f":{case_id}:{action}"))


def slack_values(message: dict) -> list[str]:
    return [element["value"] for block in message.get("blocks", []) if block["type"] == "actions"
            for element in block["elements"]]


def telegram_values(message: dict) -> list[str]:
    return [button["callback_data"] for row in (message["reply_markup"] or {}).get("inline_keyboard", [])
            for button in row]


def wecom_values(card: dict) -> list[str]:
    return [button["key"] for button in card.get("button_list", [])]


def slack_press(fake, action: str, *, user_id: str = "U0BOB00001", user_name: str = "bob", case_id: int = 1) -> dict:
    """The block_actions payload of pressing ``action`` on #support's message of case ``case_id``."""
    [(channel, ts)] = [key for key, message in fake.messages.items() if key[0] == SUPPORT
                       and any(value.endswith(f":{case_id}:{action}") for value in slack_values(message))]
    value = value_of(slack_values(fake.messages[(channel, ts)]), action, case_id)
    return slack.button_press(fake, channel, ts, value, user_id=user_id, user_name=user_name)


def press_slack(bot, fake, action: str, **who):
    return bot.deliver(slack.interaction_request(slack_press(fake, action, **who)), "slack/interactions")


def telegram_press(fake, action: str, *, user_id: int = 555, username: str = "carol", case_id: int = 1) -> dict:
    """The callback_query update of pressing ``action`` on the group's message of case ``case_id``."""
    [(chat, message_id)] = [key for key, message in fake.messages.items() if key[0] == GROUP
                            and any(value.endswith(f":{case_id}:{action}") for value in telegram_values(message))]
    value = value_of(telegram_values(fake.messages[(chat, message_id)]), action, case_id)
    return fake.press(chat, message_id, value, user_id=user_id, username=username)


def wecom_press(fake, action: str, *, user: str = "lisi", case_id: int = 1) -> str:
    """The decrypted template_card_event of pressing ``action`` on the card of case ``case_id``."""
    [(task_id, card)] = [(task, sent["template_card"]) for task, sent in fake.cards.items()
                         if any(value.endswith(f":{case_id}:{action}") for value in wecom_values(sent["template_card"]))]
    return fake.press(task_id, value_of(wecom_values(card), action, case_id), from_user=user)


def robot_texts(fake) -> list[str]:
    return [call["text"] for call in fake.sent_messages if call["method"] == "webhook/send"]


def trail(bot_or_store, case_id: int = 1) -> list[tuple[str, str, str]]:
    store = getattr(bot_or_store, "store", bot_or_store)
    return [(entry.actor, entry.via, entry.action) for entry in reversed(AuditLog(store).entries(subject=f"case:{case_id}"))]


# -- the whole path: an angry note, its case, a press, every copy updated ---------------------------------------


def test_an_angry_note_becomes_a_case_whose_buttons_acknowledge_it_and_every_copy_says_so(
        tmp_path, database_url, angry_model_dir, angry_model, fake_telegram, fake_slack, fake_wecom):
    """A Telegram voice note through the webhook and the biased model (angry ~67 %) becomes case 1; its message at
    each target carries buttons (a robot's, a link to the console); a signed Slack press acknowledges it, is
    answered within Slack's 3 s, and then every copy shows who acknowledged it."""
    fakes = {"telegram": fake_telegram, "slack_fake": fake_slack, "wecom_fake": fake_wecom}
    with case_bot(tmp_path, angry_model_dir, angry_model, fakes=fakes, database_url=database_url) as bot:
        voice = encode(speech_clip(3), 16000, "ogg_opus")
        bot.deliver(tg.webhook_request(tg.voice_update(fake_telegram.add_file(voice))), "telegram")
        [note] = bot.wait_until_finished()
        assert sweep(bot) == {"slack": 1, "telegram": 1, "wecom": 1, "robot": 1}

        [(_, posted)] = [(key, message) for key, message in fake_slack.messages.items() if key[0] == SUPPORT]
        assert [value.rsplit(":", 1)[1] for value in slack_values(posted)] == [
            "acknowledge", "resolve", "snooze", "right", "wrong"]
        assert posted["text"].startswith("🚨 Case 1 · open\n😠 Angry · 6") and note.result_id in posted["text"]
        [telegram_case] = [message for key, message in fake_telegram.messages.items() if key[0] == GROUP]
        assert len(telegram_values(telegram_case)) == 5 and all(len(v.encode()) <= 64 for v in telegram_values(telegram_case))
        [card] = [sent["template_card"] for sent in fake_wecom.cards.values()]
        assert card["card_type"] == "button_interaction" and len(wecom_values(card)) == 5
        assert card["card_action"] == {"type": 1, "url": f"{PUBLIC_URL}/cases/1"}
        [robot] = robot_texts(fake_wecom)
        assert f"{PUBLIC_URL}/cases/1" in robot, "a robot cannot be pressed: its alert links to the case's page"

        started = time.perf_counter()
        answer = press_slack(bot, fake_slack, "acknowledge", user_name="bob")
        answered_in = time.perf_counter() - started
        wait_for(lambda: fake_slack.updates and fake_telegram.edits and fake_wecom.card_updates
                 and len(robot_texts(fake_wecom)) == 2, 20, "every copy of the case's message updated")
        case = CaseStore(bot.store).view(1).case

    assert answer.status_code == 200 and answered_in < 3
    assert (case.state, case.acknowledged_by, case.acknowledged_via) == (CaseState.ACKNOWLEDGED, "bob", "slack")
    [slack_update] = fake_slack.updates
    assert slack_update["text"].startswith("🚨 Case 1 · acknowledged") and "👀 Acknowledged by bob (slack) at" in slack_update["text"]
    assert [value.rsplit(":", 1)[1] for value in slack_values(fake_slack.messages[(SUPPORT, slack_update["ts"])])] == [
        "resolve", "snooze", "right", "wrong"], "what was done is no button any more"
    [telegram_edit] = fake_telegram.edits
    assert "👀 bob (slack) 于" in telegram_edit["text"] and "认领（时间：Asia/Shanghai）" in telegram_edit["text"]
    [card_update] = fake_wecom.card_updates
    assert card_update["userids"] == ["lisi", "wangwu"]
    assert card_update["template_card"]["main_title"] == {"title": "🚨 案件 1 · 已认领", "desc": "已认领：bob"}
    assert "Acknowledged by bob (slack)" in robot_texts(fake_wecom)[1], "a robot's follow-up says what changed"
    assert ("slack:U0BOB00001", "slack", "case.acknowledge") in trail(bot)


# -- each platform's presses ---------------------------------------------------------------------------------


def test_a_telegram_callback_is_answered_at_once_then_the_message_is_edited(tmp_path, tiny_model_dir, tiny_model,
                                                                           fake_telegram):
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram}) as bot:
        angry_case(bot)
        sweep(bot)
        update = telegram_press(fake_telegram, "acknowledge", username="carol")
        assert bot.deliver(tg.webhook_request(update), "telegram").status_code == 200
        wait_for(lambda: fake_telegram.edits, 10, "the message edited")

    [answer] = fake_telegram.answers
    assert answer == {"callback_query_id": update["callback_query"]["id"], "text": "已认领", "show_alert": False}
    methods = [call["method"] for call in fake_telegram.requests if call["method"] in ("answerCallbackQuery",
                                                                                          "editMessageText")]
    assert methods == ["answerCallbackQuery", "editMessageText"], "the spinner stops before the edit"
    [edit] = fake_telegram.edits
    assert edit["text"].startswith("🚨 案件 1 · 已认领") and "carol (telegram)" in edit["text"]
    assert [value.rsplit(":", 1)[1] for value in telegram_values(edit)] == ["resolve", "snooze", "right", "wrong"]


def test_a_wecom_card_event_acknowledges_and_each_response_code_is_used_once(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_wecom):
    """The press's own ResponseCode edits the card; the next change has none left, so a message says it."""
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"wecom_fake": fake_wecom}) as bot:
        angry_case(bot)
        sweep(bot)
        event = wecom_press(fake_wecom, "acknowledge", user="lisi")
        assert bot.deliver(wecom.callback_request(event), "wecom").status_code == 200
        wait_for(lambda: fake_wecom.card_updates, 10, "the card updated")
        pressed_code = event.split("<ResponseCode><![CDATA[")[1].split("]]>")[0]

        outcome = bot.service.case_desk.act(1, Action.RESOLVE, Actor("console", "console", "console"), utc_now(),
                                            note="called back")
        wait_for(lambda: [call for call in fake_wecom.sent_messages if call["params"].get("msgtype") == "text"],
                 10, "a message saying the case was resolved")

    assert outcome.changed
    [update] = fake_wecom.card_updates
    assert update["response_code"] == pressed_code
    assert update["template_card"]["main_title"]["desc"] == "已认领：lisi"
    [follow_up] = [call for call in fake_wecom.sent_messages if call["params"].get("msgtype") == "text"]
    assert follow_up["params"]["touser"] == WECOM_USERS
    assert "✅ console 于" in follow_up["text"] and "解决 — called back" in follow_up["text"]


def test_a_wecom_card_whose_response_code_was_refused_gets_a_message_instead(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_wecom):
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"wecom_fake": fake_wecom}) as bot:
        angry_case(bot)
        sweep(bot)
        fake_wecom.age_response_codes(hours=73)  # WeCom's clock says the code is spent
        bot.service.case_desk.act(1, Action.ACKNOWLEDGE, Actor("slack:U1", "bob", "slack"), utc_now())
        delivery = wait_for(lambda: next((row for row in CaseStore(bot.store).deliveries([1])[1]
                                          if row.target == "wecom" and row.shown_version == 2), None),
                            10, "the card's case shown by other means")
    assert [call for call in fake_wecom.sent_messages if call["params"].get("msgtype") == "text"], "a message"
    [refused] = fake_wecom.calls("message/update_template_card")
    assert refused["response"]["errcode"] == 40058 and fake_wecom.card_updates == []
    assert delivery.edit_token is None, "the spent code is dropped"


def test_a_wecom_card_older_than_72_hours_is_not_even_tried(tmp_path, fake_wecom):
    targets = targets_for(wecom_fake=fake_wecom)
    alerts = Alerts(alert_settings(tmp_path, wecom=fake_wecom, targets=targets))
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    alerts.escalator.sweep(NOON + timedelta(minutes=1))
    later = NOON + timedelta(hours=73)
    CaseChanges(alerts.store).apply(1, Action.RESOLVE, Actor("slack:U1", "bob", "slack"), later)
    alerts.escalator.sweep(later)
    alerts.close()
    assert fake_wecom.calls("message/update_template_card") == []
    [follow_up] = [call for call in fake_wecom.sent_messages if call["params"].get("msgtype") == "text"
                   and call["params"]["touser"] == WECOM_USERS]
    assert "✅ bob (slack) 于 03-07 15:00 解决" in follow_up["text"]


def test_presses_arrive_by_telegram_polling_and_slack_socket_mode(tmp_path, tiny_model_dir, tiny_model,
                                                                  fake_telegram, fake_slack):
    environ = without_webhooks(fake_telegram, fake_slack)
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram, "slack_fake": fake_slack},
                  environ=environ) as bot:
        angry_case(bot)
        sweep(bot)
        fake_telegram.push_update(telegram_press(fake_telegram, "snooze"))
        wait_for(lambda: fake_telegram.edits, 10, "the pulled press handled")
        envelope = fake_slack.socket_mode.send_interaction(slack_press(fake_slack, "resolve"))
        fake_slack.socket_mode.wait_for_ack(envelope)
        wait_for(lambda: CaseStore(bot.store).view(1).case.state == CaseState.RESOLVED, 10, "resolved over the socket")

    assert "callback_query" in fake_telegram.allowed_updates, "polling asks for presses"
    assert [answer["text"] for answer in fake_telegram.answers][0].startswith("已推迟到")
    assert [action for _, via, action in trail(bot) if via != "bot-bridge"] == ["case.snooze", "case.resolve"]
    assert fake_slack.socket_mode.protocol_errors == []


# -- forged, repeated, simultaneous and foreign presses --------------------------------------------------------


def test_forged_or_stale_presses_are_refused_before_anything_changes(tmp_path, tiny_model_dir, tiny_model,
                                                                     fake_slack, fake_telegram, fake_wecom):
    fakes = {"telegram": fake_telegram, "slack_fake": fake_slack, "wecom_fake": fake_wecom}
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes=fakes) as bot:
        angry_case(bot)
        sweep(bot)
        payload = slack_press(fake_slack, "acknowledge")
        genuine = slack.interaction_request(payload)
        refusals = [
            bot.deliver(slack.interaction_request(payload, signing_secret="not-the-signing-secret"), "slack/interactions"),
            bot.deliver(slack.interaction_request(payload, timestamp=int(time.time()) - 600), "slack/interactions"),
            bot.deliver(genuine.with_body(genuine.body.replace(b"acknowledge", b"resolve")), "slack/interactions"),
            bot.deliver(tg.webhook_request(telegram_press(fake_telegram, "acknowledge"), secret_token="guess"),
                        "telegram"),
            bot.deliver(wecom.callback_request(wecom_press(fake_wecom, "acknowledge"), forgery="signature"), "wecom"),
            bot.deliver(wecom.callback_request(wecom_press(fake_wecom, "acknowledge"), forgery="corp_id"), "wecom"),
            bot.deliver(wecom.callback_request(wecom_press(fake_wecom, "acknowledge"),
                                               timestamp=int(time.time()) - 600), "wecom"),
        ]
        case = CaseStore(bot.store).view(1).case

    assert [response.status_code for response in refusals] == [401, 403, 401, 401, 401, 403, 403]
    assert case.state == CaseState.OPEN and case.version == 1
    assert {via for _, via, _ in trail(bot)} == {"bot-bridge"}, "nobody's action recorded"
    assert fake_telegram.answers == [] and fake_slack.updates == [] and fake_wecom.card_updates == []


def test_a_press_delivered_twice_changes_the_case_once(tmp_path, database_url, tiny_model_dir, tiny_model,
                                                       fake_slack, fake_telegram, fake_wecom):
    fakes = {"telegram": fake_telegram, "slack_fake": fake_slack, "wecom_fake": fake_wecom}
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes=fakes, database_url=database_url) as bot:
        for sender in ("Alice", "Bob", "Carol"):
            angry_case(bot, sender)
        sweep(bot)
        twice = slack.interaction_request(slack_press(fake_slack, "snooze", case_id=1))
        update = telegram_press(fake_telegram, "snooze", case_id=2)
        event = wecom.callback_request(wecom_press(fake_wecom, "snooze", case_id=3))
        answers = [bot.deliver(twice, "slack/interactions"), bot.deliver(twice, "slack/interactions"),
                   bot.deliver(tg.webhook_request(update), "telegram"), bot.deliver(tg.webhook_request(update), "telegram"),
                   bot.deliver(event, "wecom"), bot.deliver(event, "wecom")]

    assert [answer.status_code for answer in answers] == [200] * 6
    for case_id, platform in ((1, "slack"), (2, "telegram"), (3, "wecom")):
        assert [action for _, via, action in trail(bot, case_id) if via == platform] == ["case.snooze"], platform
    assert len(fake_telegram.answers) == 1, "the repeat is not answered again (Telegram would refuse it)"


def test_two_people_pressing_at_once_one_change_wins_and_both_see_it(tmp_path, database_url, tiny_model_dir,
                                                                     tiny_model, fake_telegram):
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram},
                  database_url=database_url) as bot:
        angry_case(bot)
        sweep(bot)
        presses = [tg.webhook_request(telegram_press(fake_telegram, "acknowledge", user_id=user_id, username=name))
                   for user_id, name in ((601, "dora"), (602, "eli"))]
        clients = [bot.client.application.test_client() for _ in presses]
        start, statuses = threading.Barrier(len(presses)), []

        def press(client, request) -> None:
            start.wait()
            statuses.append(client.open("/webhooks/telegram", **request.werkzeug_kwargs()).status_code)

        threads = [threading.Thread(target=press, args=pair) for pair in zip(clients, presses)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wait_for(lambda: fake_telegram.edits, 10, "the message edited")
        case = CaseStore(bot.store).view(1).case

    assert statuses == [200, 200]
    winner = case.acknowledged_by
    assert winner in ("dora", "eli") and [action for *_, action in trail(bot) if action == "case.acknowledge"] == [
        "case.acknowledge"]
    assert sorted(answer["text"] for answer in fake_telegram.answers) == sorted(
        ["已认领", f"案件 1 已由 {winner} 认领"]), "the loser is told who was first"
    assert f"{winner} (telegram)" in fake_telegram.edits[-1]["text"], "and the message shows the final state"


def test_a_press_for_no_case_or_from_another_deployment_is_refused_politely(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_telegram, fake_slack):
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"telegram": fake_telegram, "slack_fake": fake_slack}) as bot:
        angry_case(bot)
        sweep(bot)
        [(chat, message_id)] = [key for key in fake_telegram.messages if key[0] == GROUP]
        ours = value_of(telegram_values(fake_telegram.messages[(chat, message_id)]), "acknowledge")
        deployment = ours.split(":")[1]
        for data in (f"bb1:{deployment}:999:acknowledge", "bb1:0ther0ne:1:acknowledge", "vote:yes"):
            bot.deliver(tg.webhook_request(fake_telegram.press(chat, message_id, data)), "telegram")
        foreign = slack_press(fake_slack, "acknowledge")
        foreign["actions"][0]["value"] = "bb1:0ther0ne:1:acknowledge"
        assert bot.deliver(slack.interaction_request(foreign), "slack/interactions").status_code == 200
        case = CaseStore(bot.store).view(1).case

    assert [(answer["text"], answer["show_alert"]) for answer in fake_telegram.answers] == [
        ("这个案件已不在 bot-bridge 中。", True),
        ("这个按钮属于另一个 bot-bridge 部署，这里无法处理。", True),
        ("这个按钮不是 bot-bridge 的。", True),
    ]
    [ephemeral] = fake_slack.responses
    assert ephemeral == {"response_type": "ephemeral", "replace_original": False,
                         "text": "This button belongs to another bot-bridge deployment; it cannot be handled here."}
    assert case.state == CaseState.OPEN and {via for _, via, _ in trail(bot)} == {"bot-bridge"}


# -- what a case is: grouping, levels, snoozing, feedback -------------------------------------------------------


@pytest.fixture
def alerts(tmp_path, database_url, fake_slack, fake_telegram, fake_wecom):
    settings = alert_settings(tmp_path, telegram=fake_telegram, slack=fake_slack, wecom=fake_wecom,
                              database_url=database_url)
    alerts = Alerts(settings)
    yield alerts
    alerts.close()


def test_five_notes_from_one_sender_within_the_window_are_one_case_updated_in_place(alerts, fake_slack,
                                                                                    fake_telegram, fake_wecom):
    scores = [0.6, 0.9, 0.7, 0.55, 0.8]
    for number, score in enumerate(scores):  # one every two minutes, a sweep after each
        add_chat_note(alerts.store, received_at=NOON + timedelta(minutes=2 * number), emotions={"angry": score})
        alerts.escalator.sweep(NOON + timedelta(minutes=2 * number + 1))

    [view] = CaseStore(alerts.store).views()
    assert (view.case.notes, view.case.score, view.case.state) == (5, 0.9, CaseState.OPEN)
    assert len(texts(fake_slack)) == 1 and len(fake_slack.updates) == 4, "one message, updated in place"
    assert len(texts(fake_telegram)) == 1 and len(fake_telegram.edits) == 4
    assert len(robot_texts(fake_wecom)) == 5, "a robot cannot edit: one message, then a follow-up per change"
    latest = fake_slack.updates[-1]["text"]
    assert "5 voice notes in this case, the strongest 😠 Angry · 90%" in latest
    assert "😠 Angry · 80% (≥ 50%)" in latest and "2026-03-04 06:08" in latest, "the latest note, its score and time"
    assert "共 5 条语音，最强：😠 愤怒 · 90%" in fake_telegram.edits[-1]["text"]


def test_a_severe_note_joining_a_case_makes_its_message_urgent_at_the_next_urgent_check(tmp_path, fake_telegram):
    alerts = Alerts(alert_settings(tmp_path, telegram=fake_telegram, escalation={"immediate": {"angry": 0.8}}))
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.6})
    alerts.escalator.sweep(NOON + timedelta(minutes=1))
    add_chat_note(alerts.store, received_at=NOON + timedelta(minutes=2), emotions={"angry": 0.95})
    alerts.escalator.sweep(NOON + timedelta(minutes=2, seconds=30), severe_only=True)  # the urgent job
    alerts.close()
    [first] = texts(fake_telegram)
    assert first.startswith("🚨 案件 1 · 待处理") and len(fake_telegram.edits) == 1
    assert fake_telegram.edits[0]["text"].startswith("🚨 紧急：案件 1 · 待处理\n😠 愤怒 · 95% (≥ 50%) ‼️ 紧急")


def test_another_sender_a_later_note_or_a_resolved_case_opens_a_new_case(alerts):
    store, escalator = alerts.store, alerts.escalator
    add_chat_note(store, received_at=NOON, emotions={"angry": 0.9}, sender_name="Alice")
    add_chat_note(store, received_at=NOON + timedelta(minutes=1), emotions={"angry": 0.9}, sender_name="Bob")
    add_chat_note(store, received_at=NOON + timedelta(minutes=1), emotions={"angry": 0.9}, chat_id="-100888")
    add_chat_note(store, received_at=NOON + timedelta(minutes=31), emotions={"angry": 0.9}, sender_name="Alice")
    escalator.sweep(NOON + timedelta(minutes=35))
    CaseChanges(store).apply(4, Action.RESOLVE, Actor("console", "console", "console"), NOON + timedelta(minutes=36))
    add_chat_note(store, received_at=NOON + timedelta(minutes=37), emotions={"angry": 0.9}, sender_name="Alice")
    escalator.sweep(NOON + timedelta(minutes=40))

    cases = sorted((view.case.id, view.case.source, view.note.sender_name, view.case.notes)
                   for view in CaseStore(store).views())
    assert cases == [(1, "telegram:-100777", "Alice", 1), (2, "telegram:-100777", "Bob", 1),
                     (3, "telegram:-100888", "Alice", 1), (4, "telegram:-100777", "Alice", 1),
                     (5, "telegram:-100777", "Alice", 1)], "30 min after its last note, and once resolved, a new case"


def test_an_unacknowledged_case_reaches_the_next_level_and_acknowledging_stops_it(tmp_path, database_url,
                                                                                   fake_slack, fake_telegram):
    routes = [{"sources": ["*"], "levels": [{"targets": ["slack"], "after_min": 0},
                                            {"targets": ["telegram"], "after_min": 15}]}]
    alerts = Alerts(alert_settings(tmp_path, slack=fake_slack, telegram=fake_telegram, routes=routes,
                                   database_url=database_url))
    changes = CaseChanges(alerts.store)
    for sender in ("Alice", "Bob", "Carol"):
        add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9}, sender_name=sender)
    assert alerts.escalator.sweep(NOON + timedelta(minutes=1)) == {"slack": 3, "telegram": 0}
    changes.apply(2, Action.ACKNOWLEDGE, Actor("slack:U1", "bob", "slack"), NOON + timedelta(minutes=10))
    changes.apply(3, Action.SNOOZE, Actor("slack:U1", "bob", "slack"), NOON + timedelta(minutes=10),
                  until=NOON + timedelta(minutes=70))

    assert alerts.escalator.sweep(NOON + timedelta(minutes=15)) == {"slack": 0, "telegram": 0}, "not yet"
    assert alerts.escalator.sweep(NOON + timedelta(minutes=16)) == {"slack": 0, "telegram": 1}
    [level_two] = texts(fake_telegram)
    assert level_two.startswith("🚨 案件 1 · 待处理")
    assert ("bot-bridge", "bot-bridge", "case.escalate") in trail(alerts.store, 1)
    assert alerts.escalator.sweep(NOON + timedelta(minutes=71)) == {"slack": 0, "telegram": 1}, \
        "the snoozed case, open again, reaches the level its time had come for"
    assert "🚨 案件 3 · 待处理" in texts(fake_telegram)[1]
    assert [action for *_, action in trail(alerts.store, 3)][-2:] == ["case.reopen", "case.escalate"]
    assert not any("案件 2" in text for text in texts(fake_telegram)), "acknowledged: nobody further up is called"
    alerts.close()


def test_a_case_reaches_level_two_through_the_scheduler_with_a_short_setting(tmp_path, tiny_model_dir, tiny_model,
                                                                             fake_slack, fake_telegram):
    routes = [{"sources": ["*"], "levels": [{"targets": ["slack"], "after_min": 0},
                                            {"targets": ["telegram"], "after_min": 0.02}]}]  # 1.2 s
    fakes = {"telegram": fake_telegram, "slack_fake": fake_slack}
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes=fakes, routes=routes,
                  escalation={"sweep_interval_min": 0.005}) as bot:  # a sweep every 0.3 s
        scheduler = build_scheduler(bot.service.settings, bot.store, bot.service.chat.adapters)
        angry_case(bot)
        scheduler.start()
        try:
            [first] = fake_slack.wait_for_messages(1, timeout=20)
            opened = time.monotonic()
            [second] = [call for call in fake_telegram.wait_for_messages(1, timeout=20)]
            reached_after = time.monotonic() - opened
        finally:
            scheduler.stop()
    assert first["text"].startswith("🚨 Case 1 · open") and second["text"].startswith("🚨 案件 1 · 待处理")
    assert reached_after > 0.5, "not before its level's time"


def test_snoozing_puts_a_case_off_for_an_hour_then_the_sweep_opens_it_again(alerts, fake_telegram):
    add_chat_note(alerts.store, received_at=NOON, emotions={"angry": 0.9})
    alerts.escalator.sweep(NOON + timedelta(minutes=1))
    actor = Actor("telegram:555", "carol", "telegram")
    outcome = CaseChanges(alerts.store).apply(1, Action.SNOOZE, actor, NOON + timedelta(minutes=2),
                                              until=NOON + timedelta(minutes=62))
    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    snoozed = fake_telegram.edits[-1]["text"]
    alerts.escalator.sweep(NOON + timedelta(minutes=62))

    assert outcome.changed and "💤 carol (telegram) 推迟到 03-04 15:02" in snoozed
    assert CaseStore(alerts.store).view(1).case.state == CaseState.OPEN
    assert "⏳ 待处理" in fake_telegram.edits[-1]["text"] and len(fake_telegram.edits) == 2
    assert trail(alerts.store)[-2:] == [("telegram:555", "telegram", "case.snooze"),
                                        ("bot-bridge", "bot-bridge", "case.reopen")]


def test_not_this_emotion_keeps_the_verdict_on_the_case_and_acknowledges_it(tmp_path, tiny_model_dir, tiny_model,
                                                                            fake_slack):
    with case_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"slack_fake": fake_slack}) as bot:
        angry_case(bot)
        sweep(bot)
        press_slack(bot, fake_slack, "wrong", user_name="bob")
        wait_for(lambda: fake_slack.updates, 10, "the message updated")
        case = CaseStore(bot.store).view(1).case
        feedback = [entry for entry in AuditLog(bot.store).entries(subject="case:1") if entry.action == "case.feedback"]

    assert (case.feedback, case.feedback_by, case.state) == ("rejected", "bob", CaseState.ACKNOWLEDGED)
    assert [entry.detail for entry in feedback] == [{"name": "bob", "verdict": "rejected", "emotion": "angry"}]
    text = fake_slack.updates[-1]["text"]
    assert "👎 Not angry, says bob (slack)" in text and "👀 Acknowledged by bob (slack)" in text
    assert [value.rsplit(":", 1)[1] for value in slack_values(fake_slack.messages[(SUPPORT, fake_slack.updates[-1]["ts"])])] \
        == ["resolve", "snooze"], "no feedback buttons once it is given"


# -- the console -------------------------------------------------------------------------------------------------


def test_the_console_lists_cases_by_state_target_and_chat_and_acts_on_them(tmp_path, fake_slack, fake_telegram):
    settings = alert_settings(tmp_path, slack=fake_slack, telegram=fake_telegram)
    settings.console.password = PASSWORD
    service = Service(settings)
    alerts = Alerts(settings, service.store)
    alice = add_chat_note(service.store, received_at=NOON, emotions={"angry": 0.87}, sender_name="Alice")
    add_chat_note(service.store, received_at=NOON, emotions={"angry": 0.7}, sender_name="Bob", chat_id="-100888",
                  chat_name="Sales")
    alerts.escalator.sweep(NOON + timedelta(minutes=5))
    app = create_app(service=service)
    browser = app.test_client()
    sign_in(browser)
    try:
        listed = browser.get("/cases").get_data(as_text=True)
        only_sales = browser.get("/cases?chat=telegram:-100888").get_data(as_text=True)
        case_page = browser.get("/cases/1").get_data(as_text=True)
        forged = browser.post("/cases/1/act", data={"action": "resolve"})
        token = page_token(browser)
        done = browser.post("/cases/1/act", data={"action": "resolve", "note": "called her back", "csrf_token": token})
        again = browser.post("/cases/1/act", data={"action": "resolve", "csrf_token": token})
        wait_for(lambda: fake_slack.updates, 10, "the Slack message updated from the console")
        resolved = browser.get("/cases?state=resolved").get_data(as_text=True)
        resolved_page = browser.get("/cases/1").get_data(as_text=True)
        result_page = browser.get(f"/results/{alice}").get_data(as_text=True)
        missing = browser.get("/cases/999").status_code
        bogus = browser.post("/cases/1/act", data={"action": "delete", "csrf_token": token}).status_code
    finally:
        service.close()

    assert 'href="/cases/1"' in listed and 'href="/cases/2"' in listed and "telegram · Sales · Bob" in listed
    assert 'href="/cases/1"' not in only_sales and 'href="/cases/2"' in only_sales
    assert [action for action in re.findall(r'data-action="(\w+)"', case_page)] == [
        "acknowledge", "resolve", "snooze", "right", "wrong"]
    assert "case.open" in case_page and "Slack #support" in case_page
    assert forged.status_code == 400, "no CSRF token, no change"
    assert done.status_code == 302 and done.headers["Location"].endswith("/cases/1?done=changed")
    assert again.headers["Location"].endswith("/cases/1?done=unchanged")
    assert 'href="/cases/1"' in resolved and 'href="/cases/2"' not in resolved
    assert "resolved by admin (console)" in resolved_page and "called her back" in resolved_page
    assert 'data-action="resolve"' not in resolved_page and "case.resolve" in resolved_page
    assert "✅ Resolved by admin (console) at" in fake_slack.updates[-1]["text"]
    assert "— called her back" in fake_slack.updates[-1]["text"]
    assert 'id="result-case"' in result_page and 'href="/cases/1"' in result_page
    assert (missing, bogus) == (404, 400)


def test_every_console_route_that_changes_a_case_is_an_agent_action(tmp_path, settings, service):
    app = create_app(service=service)
    changing = {rule.endpoint: required_role(app, rule.endpoint) for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("cases.") and "POST" in rule.methods}
    assert changing == {"cases.case_action": "agent"}