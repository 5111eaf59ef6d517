"""Daily digests: right numbers for a known week of voice notes, sent once at the local time, late once.

The digest of 2026-03-04 at 18:00 Europe/London (GMT then) covers
2026-03-03 18:00 to 2026-03-04 18:00 UTC. The week built by ``known_week``:

* telegram:-100777 "Support group": 5 notes in the period (angry .9 and .6,
  happy, neutral, one not analysed), 2 the day before (angry, happy), 1
  three days before (neutral);
* slack:C0SALES "Sales": 1 fearful note in the period;
* telegram:-100999: notes, but no route to the digest's target;
* a note at 18:00 sharp on 2026-03-04, which belongs to the next digest.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot_bridge.acting.digest_text import QUOTE_CHARACTERS
from bot_bridge.cli import cli
from bot_bridge.config import EscalationRule
from bot_bridge.remembering.alert_store import DigestRow, DigestState, ForgottenNotesRow
from bot_bridge.remembering.forgetting import Forgetting, Selection
from bot_bridge.service import Service
from bot_bridge.web import create_app
from bot_bridge.words import clip
from tests.alert_helpers import PUBLIC_URL, Alerts, add_chat_note, alert_settings, texts
from tests.chat_helpers import platform_environment
from tests.platforms import fixtures
from tests.test_console import PASSWORD, sign_in

fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom

DAY = date(2026, 3, 4)
DUE = datetime(2026, 3, 4, 18, 0, tzinfo=timezone.utc)  # 18:00 in London
DIGESTS = {"targets": {"slack": {"at": "18:00"}, "telegram": {"at": "18:00"}, "robot": {"at": "18:00"}}}
ROUTES = [{"sources": ["telegram:-100777", "slack:*"], "targets": ["slack", "telegram", "robot"]}]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=timezone.utc)


def known_week(alerts: Alerts) -> dict[str, str]:
    store = alerts.store
    ids = {
        "alice": add_chat_note(store, received_at=at(4, 9), emotions={"angry": 0.9}, sender_name="Alice"),
        "bob": add_chat_note(store, received_at=at(4, 10), emotions={"angry": 0.6}, sender_name="Bob"),
        "carol": add_chat_note(store, received_at=at(4, 11), emotions={"happy": 0.8}, sender_name="Carol"),
        "dan": add_chat_note(store, received_at=at(4, 12), emotions={"angry": 0.2}, sender_name="Dan"),
        "eve": add_chat_note(store, received_at=at(3, 18), emotions={}, sender_name="Eve", analysed=False),
        "sales": add_chat_note(store, received_at=at(4, 13), emotions={"fearful": 0.7}, platform="slack",
                               chat_id="C0SALES", chat_name="Sales"),
    }
    add_chat_note(store, received_at=at(3, 12), emotions={"angry": 0.7})  # the previous day
    add_chat_note(store, received_at=at(3, 17, 59), emotions={"happy": 0.9})
    add_chat_note(store, received_at=at(1, 12), emotions={"neutral": 0.9})  # three days before
    add_chat_note(store, received_at=at(4, 9), emotions={"angry": 0.99}, chat_id="-100999")  # not routed
    add_chat_note(store, received_at=DUE, emotions={"angry": 0.99})  # the next digest's
    found_at = DUE - timedelta(minutes=30)
    escalator = alerts.escalator
    for matched, steps in escalator.new_cases(found_at):  # escalations: alice, bob (and the unrouted chat)
        escalator.cases.record_note(matched, [(step.target, step.level) for step in steps], found_at, escalator.window)
    return ids


@pytest.fixture
def alerts(tmp_path, database_url, fake_slack, fake_telegram, fake_wecom):
    """Runs each test on SQLite and on PostgreSQL: a digest's claim is an INSERT ... ON CONFLICT on both."""
    settings = alert_settings(tmp_path, telegram=fake_telegram, slack=fake_slack, wecom=fake_wecom, routes=ROUTES,
                              digest=DIGESTS, database_url=database_url)
    alerts = Alerts(settings)
    yield alerts
    alerts.close()


def test_the_numbers_of_a_known_week(alerts):
    known_week(alerts)
    digest = alerts.digests.compose(alerts.targets["slack"], DAY)
    support, sales = digest.chats
    assert (support.source, sales.source) == ("telegram:-100777", "slack:C0SALES")
    assert (support.notes, support.previous_notes, support.average_notes) == (5, 2, pytest.approx(3 / 7))
    assert support.shares == {"angry": 0.5, "happy": 0.25, "neutral": 0.25}
    assert support.escalations == 2
    assert [line.note.note.sender_name for line in support.over_rule] == ["Alice", "Bob"]  # Dan's 20 % is under it
    assert (support.angry_share(), support.angry_share(1)) == (0.5, 0.5)
    assert support.average_angry_share == pytest.approx(1 / 3)
    assert (sales.notes, sales.shares, sales.angry_share(1), sales.average_angry_share) == (1, {"fearful": 1}, None, None)


def test_a_mostly_neutral_note_is_not_listed_as_angry(alerts):
    """Neutral 70 %, angry 30 %: under the chat's escalation rule (angry >= 0.5), so not in the list."""
    add_chat_note(alerts.store, received_at=at(4, 9), emotions={"angry": 0.3}, sender_name="Frank")
    fearful = add_chat_note(alerts.store, received_at=at(4, 10), emotions={"fearful": 0.8}, sender_name="Gina",
                            platform="slack", chat_id="C0SALES", chat_name="Sales")
    alerts.settings.escalation.rules["slack:*"] = EscalationRule(thresholds={"fearful": 0.6})

    chats = {chat.source: chat for chat in alerts.digests.compose(alerts.targets["slack"], DAY).chats}
    support, sales = chats["telegram:-100777"], chats["slack:C0SALES"]
    [text], _ = alerts.digests.preview(alerts.targets["slack"], DAY)

    assert "Angry · 30%" not in text
    assert support.over_rule == []
    assert [(line.note.result.id, line.match.emotion) for line in sales.over_rule] == [(fearful, "fearful")]
    assert "Over the escalation rule, strongest first:\n1. 😨 Fearful · 80% · Gina · " in text


def test_the_digest_text_says_the_numbers(alerts):
    ids = known_week(alerts)
    [text], chart = alerts.digests.preview(alerts.targets["slack"], DAY)
    link = f"{PUBLIC_URL}/results/"
    assert text == (
        "📊 Daily emotion digest · 2026-03-04\n"
        "2026-03-03 18:00 → 2026-03-04 18:00 (Europe/London)\n\n"
        "In all: 6 voice notes from 2 chats, 2 escalations\n\n"
        "▍telegram · Support group\n"
        "Voice notes: 5 (previous day 2, +3; 7-day average 0.4, +4.6)\n"
        "😠 Angry · 50%  😊 Happy · 25%  😐 Neutral · 25%\n"
        "Angry share: 50% (previous day 50%, ±0 pts; 7-day average 33%, +17 pts)\n"
        "Escalations: 2\n"
        "Over the escalation rule, strongest first:\n"
        f"1. 😠 Angry · 90% · Alice · 03-04 09:00 · {link}{ids['alice']}\n"
        f"2. 😠 Angry · 60% · Bob · 03-04 10:00 · {link}{ids['bob']}\n\n"
        "▍slack · Sales\n"
        "Voice notes: 1 (previous day 0, +1; 7-day average 0.0, +1.0)\n"
        "😨 Fearful · 100%\n"
        "Angry share: 0% (no previous day; no 7-day average)\n"
        "Escalations: 0"
    )
    assert chart.startswith(b"\x89PNG\r\n\x1a\n")


def test_deleted_notes_keep_their_counts_but_are_no_longer_listed_and_the_digest_says_so(alerts):
    """Alice asks to forget her notes (this period's angry one, which became a case, and five others)
    and the Sales chat is purged: the numbers stay, her note leaves the list, and both chats say what went."""
    ids = known_week(alerts)
    before = {chat.source: chat for chat in alerts.digests.compose(alerts.targets["slack"], DAY).chats}
    forgetting = Forgetting(alerts.store)

    forgetting.forget(Selection.of_sender("telegram", "id-Alice"), actor="alice", via="chat")
    forgetting.forget(Selection.of_chat("slack", "C0SALES"), actor="admin", via="console")

    support, sales = alerts.digests.compose(alerts.targets["slack"], DAY).chats
    for chat in (support, sales):
        kept = before[chat.source]
        assert ([day.__dict__ for day in chat.history], chat.emotions, chat.escalations) == (
            [day.__dict__ for day in kept.history], kept.emotions, kept.escalations)
    assert [line.note.note.sender_name for line in support.over_rule] == ["Bob"]
    assert (support.deleted, sales.deleted, sales.chat_name) == (1, 1, "slack · C0SALES")  # its name went too
    [text], _ = alerts.digests.preview(alerts.targets["slack"], DAY)
    assert "Alice" not in text and ids["alice"] not in text
    assert text.count("🗑 1 of these voice notes was deleted since (on request or by retention): counted, no longer "
                      "listed or quoted") == 2
    with alerts.store.session() as session:
        kept_counts = session.execute(select(ForgottenNotesRow.__table__)).mappings().all()
    assert sum(row["notes"] for row in kept_counts) == 7  # six of Alice's (one unrouted, one the next day's), Sales
    assert {"platform", "chat_id", "quarter", "emotion", "notes", "escalated", "id"} == set(kept_counts[0])


def test_the_digest_follows_the_target_language_and_timezone(alerts):
    known_week(alerts)
    [zh], _ = alerts.digests.preview(alerts.targets["telegram"], DAY)  # zh, Asia/Shanghai: 10:00 UTC to 10:00 UTC
    assert zh.startswith("📊 每日情绪摘要 · 2026-03-04\n2026-03-03 18:00 → 2026-03-04 18:00 (Asia/Shanghai)")
    # 18:00 in Shanghai is 10:00 UTC: alice, eve and both notes of the 3rd, then the neutral one of the 1st.
    assert "语音 4 条（前一天 0，+4；7 日平均 0.1，+3.9）" in zh
    assert "愤怒占比 67%（前一天无数据；7 日平均 0%，+67 个百分点）" in zh
    assert "1. 😠 愤怒 · 90% · Alice · 03-04 17:00 · " in zh
    [both], _ = alerts.digests.preview(alerts.targets["robot"], DAY)
    assert both.startswith("📊 每日情绪摘要 / Daily emotion digest · 2026-03-04")
    assert "😠 愤怒 Angry · 67%" in both


def test_the_digest_goes_out_once_at_its_local_time_with_its_chart(alerts, fake_slack, fake_telegram, fake_wecom):
    known_week(alerts)
    assert alerts.digests.send_due(at(4, 9, 59)) == {}  # 17:59 in Shanghai
    assert alerts.digests.send_due(at(4, 10)) == {"telegram": DigestState.SENT, "robot": DigestState.SENT}
    assert alerts.digests.send_due(DUE - timedelta(minutes=1)) == {}  # 17:59 in London
    assert fake_slack.sent_messages == []

    assert alerts.digests.send_due(DUE) == {"slack": DigestState.SENT}
    assert alerts.digests.send_due(DUE + timedelta(minutes=1)) == {}
    assert alerts.restart().digests.send_due(DUE + timedelta(minutes=2)) == {}

    text, chart = fake_slack.sent_messages
    assert text["text"].startswith("📊 Daily emotion digest · 2026-03-04") and "Sent late" not in text["text"]
    assert chart["images"][0].startswith(b"\x89PNG") and chart["text"].startswith("📊 2026-03-04: emotions per chat")
    assert fake_telegram.sent_messages[-1]["images"][0].startswith(b"\x89PNG")  # sendPhoto, its caption in zh
    assert [message["params"]["msgtype"] for message in fake_wecom.sent_messages] == ["markdown", "markdown", "image"]


def test_a_digest_missed_while_down_is_sent_once_late(alerts, fake_slack):
    known_week(alerts)
    back = DUE + timedelta(hours=2, minutes=30)
    assert alerts.digests.send_due(back)["slack"] == DigestState.SENT
    [late] = texts(fake_slack)[:1]
    assert "⏰ Sent late: bot-bridge was not running at 2026-03-04 18:00" in late

    restarted = alerts.restart()
    assert restarted.digests.send_due(back + timedelta(minutes=1)) == {}
    restarted.close()
    assert len(fake_slack.sent_messages) == 2  # the text and the chart, once


def test_a_digest_missed_for_longer_than_the_grace_period_is_not_sent(alerts, fake_slack):
    known_week(alerts)
    assert alerts.digests.send_due(DUE + timedelta(hours=6, minutes=1)) == {}
    assert fake_slack.sent_messages == []


def test_a_digest_that_failed_halfway_resumes_without_repeating_itself(alerts, fake_telegram):
    known_week(alerts)
    fake_telegram.fail_next("sendPhoto", status=400, body={"ok": False, "error_code": 400,
                                                            "description": "Bad Request: PHOTO_INVALID_DIMENSIONS"})
    shanghai_due = DUE - timedelta(hours=8)
    assert alerts.digests.send_due(shanghai_due)["telegram"] == DigestState.FAILED
    assert alerts.digests.send_due(shanghai_due + timedelta(minutes=1))["telegram"] == DigestState.SENT
    text, chart = fake_telegram.sent_messages
    assert text["method"] == "sendMessage" and chart["method"] == "sendPhoto"


def test_a_digest_cut_off_by_a_crash_is_sent_again_marked_as_a_possible_repeat(alerts, fake_slack):
    known_week(alerts)
    alerts.digests.alerts.claim_digest("slack", DAY, DUE)  # a process claims it, then dies mid-send
    assert alerts.digests.send_due(DUE + timedelta(minutes=5)) == {}, "maybe still on its way"
    assert alerts.digests.send_due(DUE + timedelta(minutes=11)) == {"slack": DigestState.SENT}
    text, chart = fake_slack.sent_messages
    assert text["text"].startswith("↻ bot-bridge stopped while sending this; it may repeat\n📊 Daily emotion digest")
    assert chart["images"] and not chart["text"].startswith("↻")


def test_a_digest_that_fails_before_anything_is_sent_is_given_back_not_left_sending(alerts, fake_slack, monkeypatch):
    known_week(alerts)

    def broken_chart(digest):
        raise RuntimeError("the chart broke")

    monkeypatch.setattr("bot_bridge.acting.digest.digest_chart", broken_chart)
    assert alerts.digests.send_due(DUE) == {"slack": DigestState.FAILED}
    assert fake_slack.sent_messages == []
    with alerts.store.session() as session:
        row = session.scalar(select(DigestRow).where(DigestRow.target == "slack"))
    assert (row.state, row.maybe_sent, row.parts_sent) == (DigestState.FAILED, False, 0)
    assert "the chart broke" in row.last_error

    monkeypatch.undo()
    assert alerts.digests.send_due(DUE + timedelta(minutes=1)) == {"slack": DigestState.SENT}, "the next check"
    text, chart = fake_slack.sent_messages
    assert text["text"].startswith("📊 Daily emotion digest") and chart["images"], "not marked as a possible repeat"


def test_names_people_chose_are_no_markup_in_a_digest_nor_mathtext_in_its_chart(alerts):
    add_chat_note(alerts.store, received_at=at(4, 9), emotions={"angry": 0.9}, chat_name="[处理](http://x) $\\frac{$",
                  sender_name="**boss** <@all>")
    [robot], chart = alerts.digests.preview(alerts.targets["robot"], DAY)
    assert "▍telegram · ［处理］（http://x） $\\frac{$\n" in robot and " · ＊＊boss＊＊ ＜@all＞ · " in robot
    assert chart.startswith(b"\x89PNG"), "a $ in a chat's name is drawn, not read as mathtext"
    [slack], _ = alerts.digests.preview(alerts.targets["slack"], DAY)  # Slack's markup is escaped when it is sent
    assert "▍telegram · [处理](http://x) $\\frac{$\n" in slack and " · **boss** <@all> · " in slack


def test_empty_days_are_skipped_unless_configured(tmp_path, fake_slack):
    quiet = Alerts(alert_settings(tmp_path / "a", slack=fake_slack, digest={"targets": {"slack": {}}}))
    assert quiet.digests.send_due(DUE) == {"slack": DigestState.SKIPPED}
    assert fake_slack.sent_messages == []
    quiet.close()

    told = Alerts(alert_settings(tmp_path / "b", slack=fake_slack,
                                 digest={"targets": {"slack": {}}, "skip_empty": False}))
    assert told.digests.send_due(DUE) == {"slack": DigestState.SENT}
    [message] = texts(fake_slack)
    assert message.endswith("No voice notes in this period.")
    told.close()


def test_the_console_previews_any_day_as_each_target_would_receive_it(tmp_path, fake_slack):
    settings = alert_settings(tmp_path, slack=fake_slack, digest={"targets": {"slack": {}}})
    settings.console.password = PASSWORD
    service = Service(settings)
    add_chat_note(service.store, received_at=at(4, 9), emotions={"angry": 0.9}, sender_name="Alice")
    browser = create_app(service=service).test_client()
    sign_in(browser)

    page = browser.get("/digest?date=2026-03-04").get_data(as_text=True)
    assert "Slack #support" in page
    assert "Voice notes: 1 (previous day 0, +1; 7-day average 0.0, +1.0)" in page
    assert 'src="data:image/png;base64,' in page
    assert "Voice notes:" not in browser.get("/digest?date=2026-02-01").get_data(as_text=True), "an empty day: none"
    assert fake_slack.sent_messages == [], "a preview sends nothing"
    service.close()


def digest_command_config(tmp_path, fake_slack, received_at: datetime, digest_at: str = "18:00") -> str:
    """A settings file with one Slack digest target (London), and a note received at ``received_at``."""
    alerts = Alerts(alert_settings(tmp_path, slack=fake_slack, digest={"targets": {"slack": {}}}))
    add_chat_note(alerts.store, received_at=received_at, emotions={"angry": 0.9}, sender_name="Alice")
    alerts.close()
    config = tmp_path / "bot-bridge.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "targets:\n  slack: {platform: slack, chat_id: C0VOICES01, language: en, timezone: Europe/London}\n"
        "routes:\n  - {sources: ['*'], targets: [slack]}\n"
        f"digest:\n  targets: {{slack: {{at: '{digest_at}'}}}}\n",
        encoding="utf-8",
    )
    return str(config)


def test_the_digest_command_previews_and_sends_once(tmp_path, fake_slack):
    config = digest_command_config(tmp_path, fake_slack, at(4, 9))
    environ = platform_environment(slack_fake=fake_slack)
    command = ["--config", config, "digest", "--now", "--date", "2026-03-04"]

    preview = CliRunner().invoke(cli, [*command, "--dry-run"], env=environ)
    assert preview.exit_code == 0, preview.output
    assert "Voice notes: 1" in preview.output and "Alice" in preview.output and "bytes of PNG" in preview.output
    assert fake_slack.sent_messages == []

    for expected in ("sent", "sent before, not again"):
        run = CliRunner().invoke(cli, command, env=environ)
        assert run.exit_code == 0, run.output
        assert f"slack 2026-03-04: {expected}" in run.output
    assert len(fake_slack.sent_messages) == 2


def test_digest_now_without_a_date_says_which_period_it_sends_and_that_it_has_not_ended(tmp_path, fake_slack):
    london = ZoneInfo("Europe/London")
    config = digest_command_config(tmp_path, fake_slack, datetime.now(timezone.utc) - timedelta(minutes=5), "23:59")

    run = CliRunner().invoke(cli, ["--config", config, "digest", "--now"], env=platform_environment(slack_fake=fake_slack))

    assert run.exit_code == 0, run.output
    now = datetime.now(london)
    assert f"{now.date() - timedelta(days=1)} 23:59 to {now.date()} 23:59 Europe/London" in run.output, run.output
    if (now.hour, now.minute) < (23, 59):
        assert "sent before its period ends, so notes from now until 23:59 will be in no digest" in run.output


def test_the_digest_quotes_the_flagged_notes_and_lists_the_words_that_recur_in_angry_ones(alerts):
    store = alerts.store
    said = {
        "alice": "我已经等了三个星期了，退款到底什么时候到？客服一直不回复，我要投诉你们！" * 3,
        "bob": "退款还没到，客服也不理我",
        "carol": "谢谢你们的客服，退款收到了",  # happy: no angry note, its words do not count
        "dan": "退款 refund 退款",  # angry, but only Dan says refund: it does not recur
    }
    ids = {name: add_chat_note(store, received_at=at(4, 9 + hour), sender_name=name.title(), said=said[name],
                               emotions={"happy": 0.8} if name == "carol" else {"angry": 0.9 - hour / 10})
           for hour, name in enumerate(said)}

    [text], _ = alerts.digests.preview(alerts.targets["slack"], DAY)

    assert "Words that recur in angry notes: 退款 ×3 · 客服 ×2\n" in text
    link = f"{PUBLIC_URL}/results/"
    assert (f"1. 😠 Angry · 90% · Alice · 03-04 09:00 · {link}{ids['alice']}\n"
            f"   💬 {clip(said['alice'], QUOTE_CHARACTERS)}\n"
            f"2. 😠 Angry · 80% · Bob · 03-04 10:00 · {link}{ids['bob']}\n"
            f"   💬 {said['bob']}\n"
            f"3. 😠 Angry · 60% · Dan · ") in text
    assert len(said["alice"]) > QUOTE_CHARACTERS == len(clip(said["alice"], QUOTE_CHARACTERS))  # cut to fit
