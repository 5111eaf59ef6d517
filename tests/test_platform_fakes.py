"""The platform fakes speak the real protocols.

Each fake is driven by the platform's own client library (python-telegram-bot,
slack_sdk, wechatpy), which parse answers strictly; each inbound builder is
checked by the library's own verifier, which must accept it untouched and
reject it tampered with or stale. If these pass, adapter tests built on the
fakes exercise the real wire formats.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
from urllib.parse import parse_qs

import pytest
import requests
import telegram
from PIL import Image
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from telegram.error import BadRequest, InvalidToken, RetryAfter, TimedOut
from wechatpy.enterprise import WeChatClient, parse_message
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import APILimitedException, InvalidSignatureException, WeChatClientException
from werkzeug.test import EnvironBuilder

from tests.platforms import fixtures, slack, wecom
from tests.platforms import telegram as tg

# The running fakes, as pytest fixtures of the same names.
fake_slack, fake_telegram, fake_wecom = fixtures.fake_slack, fixtures.fake_telegram, fixtures.fake_wecom


def png_bytes(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(out, "PNG")
    return out.getvalue()


OGG = b"OggS\x00\x02" + bytes(200)
AMR = b"#!AMR\n" + bytes(320)
M4A = b"\x00\x00\x00\x20ftypM4A " + bytes(300)


# -- Telegram -------------------------------------------------------------------------


def ptb_bot(fake: tg.FakeTelegram, token: str | None = None) -> telegram.Bot:
    return telegram.Bot(token or fake.token, base_url=fake.base_url + "/bot",
                        base_file_url=fake.base_url + "/file/bot")


def test_ptb_downloads_a_voice_note_through_getfile(fake_telegram):
    file_id = fake_telegram.add_file(OGG, "audio/ogg")

    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            assert bot.username == tg.DEFAULT_BOT_USERNAME
            remote = await bot.get_file(file_id)
            return remote, bytes(await remote.download_as_bytearray())

    remote, data = asyncio.run(scenario())
    assert data == OGG
    file_path = fake_telegram.calls("getFile")[0]["response"]["result"]["file_path"]
    assert file_path.startswith("voice/") and file_path.endswith(".oga")
    assert remote.file_path == f"{fake_telegram.base_url}/file/bot{fake_telegram.token}/{file_path}"
    assert remote.file_unique_id == tg.unique_id_for(file_id) and remote.file_size == len(OGG)


def test_ptb_replies_with_reply_parameters_and_a_photo(fake_telegram):
    chart = png_bytes()

    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            text = await bot.send_message(42, "You sound *happy*", parse_mode="Markdown",
                                          reply_parameters=telegram.ReplyParameters(message_id=7))
            photo = await bot.send_photo(42, chart, caption="Scores",
                                         reply_parameters=telegram.ReplyParameters(message_id=7))
            typing = await bot.send_chat_action(42, "upload_photo")
            return text, photo, typing

    text, photo, typing = asyncio.run(scenario())
    assert text.text == "You sound *happy*" and text.chat.id == 42 and text.from_user.is_bot
    assert (photo.photo[-1].width, photo.photo[-1].height) == (64, 48) and photo.caption == "Scores"
    assert typing is True
    sent = fake_telegram.wait_for_messages(2)
    assert sent[0]["method"] == "sendMessage"
    assert sent[0]["params"]["chat_id"] == 42 and sent[0]["params"]["reply_parameters"] == {"message_id": 7}
    assert sent[1]["files"]["photo"]["data"] == chart and sent[1]["images"] == [chart]
    assert sent[1]["text"] == "Scores" and fake_telegram.uploaded_images == [chart]


def test_ptb_sees_telegram_errors_as_its_own_exceptions(fake_telegram):
    big = fake_telegram.add_file(b"\0" * (tg.MAX_DOWNLOAD_BYTES + 1), "audio/ogg")

    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            with pytest.raises(BadRequest, match="too big"):
                await bot.get_file(big)
            with pytest.raises(BadRequest, match="reserved"):
                await bot.send_message(1, "Happy: 85.3%", parse_mode="MarkdownV2")
            await bot.send_message(1, r"Happy: 85\.3%", parse_mode="MarkdownV2")
            with pytest.raises(BadRequest, match="(?i)image_process_failed"):
                await bot.send_photo(1, b"not an image")
            fake_telegram.rate_limit_next("sendMessage", retry_after=5)
            with pytest.raises(RetryAfter, match="Retry in 5"):
                await bot.send_message(1, "hi")
            fake_telegram.delay_next("sendMessage", 0.5)
            with pytest.raises(TimedOut):
                await bot.send_message(1, "slow", read_timeout=0.1)
            await bot.send_message(1, "fast again")
        with pytest.raises(InvalidToken):
            async with ptb_bot(fake_telegram, token="7000000001:WrongToken") as bot:
                pass

    asyncio.run(scenario())
    limited = [c for c in fake_telegram.calls("sendMessage") if c["status"] == 429][0]
    assert limited["response"] == {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5",
                                   "parameters": {"retry_after": 5}}
    # The timed-out send is still delivered once its delay ends: a timeout means "maybe sent".
    sent = fake_telegram.wait_for_messages(3)
    assert [m["text"] for m in sent] == [r"Happy: 85\.3%", "fast again", "slow"]


def test_ptb_sets_and_deletes_the_webhook(fake_telegram):
    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            with pytest.raises(BadRequest, match="(?i)https url must be provided"):
                await bot.set_webhook("http://bot.example.com/webhooks/telegram")
            with pytest.raises(BadRequest, match="unallowed"):
                await bot.set_webhook("https://bot.example.com/hook", secret_token="no spaces!")
            assert await bot.set_webhook("https://bot.example.com:8443/webhooks/telegram",
                                         secret_token=tg.DEFAULT_SECRET_TOKEN, allowed_updates=["message"])
            info = await bot.get_webhook_info()
            assert await bot.delete_webhook()
            return info

    info = asyncio.run(scenario())
    assert info.url == "https://bot.example.com:8443/webhooks/telegram" and info.allowed_updates == ("message",)
    set_call = [c for c in fake_telegram.calls("setWebhook") if c["status"] == 200][0]
    assert set_call["params"]["secret_token"] == tg.DEFAULT_SECRET_TOKEN
    assert set_call["response"]["description"] == "Webhook was set"
    assert fake_telegram.webhook is None


def test_ptb_sends_an_inline_keyboard_a_press_is_answered_once_and_the_message_edited(fake_telegram):
    keyboard = telegram.InlineKeyboardMarkup([[telegram.InlineKeyboardButton("Ack", callback_data="bb1:x:1:ack")]])

    async def scenario():
        async with ptb_bot(fake_telegram) as bot:
            sent = await bot.send_message(-100123, "case 1", reply_markup=keyboard)
            press = telegram.Update.de_json(fake_telegram.press(-100123, sent.message_id, "bb1:x:1:ack"), bot)
            answered = await bot.answer_callback_query(press.callback_query.id, text="Acknowledged")
            with pytest.raises(BadRequest, match="(?i)query is too old"):
                await bot.answer_callback_query(press.callback_query.id, text="again")
            edited = await bot.edit_message_reply_markup(-100123, sent.message_id)  # no keyboard any more
            with pytest.raises(BadRequest, match="(?i)message is not modified"):
                await bot.edit_message_text("case 1", -100123, sent.message_id)
            return press, answered, edited

    press, answered, edited = asyncio.run(scenario())
    assert press.callback_query.data == "bb1:x:1:ack" and press.callback_query.message.text == "case 1"
    assert answered is True and edited.message_id == press.callback_query.message.message_id
    assert [answer["text"] for answer in fake_telegram.answers] == ["Acknowledged"]
    too_long = requests.post(f"{fake_telegram.base_url}/bot{fake_telegram.token}/sendMessage", json={
        "chat_id": 1, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "x", "callback_data": "é" * 33}]]}})
    assert too_long.json()["description"] == "Bad Request: BUTTON_DATA_INVALID", "callback_data: 64 bytes at most"


def test_telegram_reads_json_bodies_and_method_names_in_any_case(fake_telegram):
    url = f"{fake_telegram.base_url}/bot{fake_telegram.token}/SENDMESSAGE"
    answer = requests.post(url, json={"chat_id": 5, "text": "hi", "reply_parameters": {"message_id": 3}})
    assert answer.json()["ok"] and answer.json()["result"]["chat"] == {"id": 5, "type": "private"}
    assert fake_telegram.sent_messages[0]["method"] == "sendMessage"
    assert requests.post(url, json={"chat_id": 5}).json() == {
        "ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
    unknown = requests.post(f"{fake_telegram.base_url}/bot{fake_telegram.token}/sendTelepathy")
    assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found"


@pytest.mark.parametrize("build, attribute", [
    (tg.voice_update, "voice"),
    (tg.audio_update, "audio"),
    (tg.video_note_update, "video_note"),
    (tg.audio_document_update, "document"),
])
def test_telegram_updates_parse_back_into_ptb_objects(build, attribute):
    request = tg.webhook_request(build("AwACAgIAAxkBAAIfileid", file_size=1234, forwarded_from=99))
    update = telegram.Update.de_json(request.json())
    media = getattr(update.message, attribute)
    assert media.file_id == "AwACAgIAAxkBAAIfileid" and media.file_unique_id == tg.unique_id_for(media.file_id)
    assert update.message.chat.id == update.message.from_user.id == tg.DEFAULT_USER_ID
    assert update.message.forward_origin.sender_user.id == 99
    assert request.headers["X-Telegram-Bot-Api-Secret-Token"] == tg.DEFAULT_SECRET_TOKEN


def test_telegram_start_command_and_update_ids():
    first, second = tg.text_update("/start"), tg.text_update("/start")
    message = telegram.Update.de_json(first).message
    assert message.text == "/start" and message.entities[0].type == "bot_command"
    assert second["update_id"] == first["update_id"] + 1
    assert "X-Telegram-Bot-Api-Secret-Token" not in tg.webhook_request(first, secret_token=None).headers


# -- Slack -----------------------------------------------------------------------------


def slack_client(fake: slack.FakeSlack, token: str | None = None, **options) -> WebClient:
    return WebClient(token=token or fake.bot_token, base_url=fake.base_url + "/api/", **options)


def test_slack_sdk_posts_in_a_thread_and_uploads_with_files_upload_v2(fake_slack):
    client = slack_client(fake_slack)
    assert client.auth_test()["user_id"] == slack.DEFAULT_BOT_USER_ID
    parent = "1712345678.000100"
    posted = client.chat_postMessage(channel="C0VOICES01", text="You sound calm", thread_ts=parent)
    chart = png_bytes()
    uploaded = client.files_upload_v2(channel="C0VOICES01", file=chart, filename="emotions.png",
                                      title="Emotions", thread_ts=parent, initial_comment="Scores")

    assert posted["channel"] == "C0VOICES01" and posted["message"]["thread_ts"] == parent
    assert uploaded["file"]["title"] == "Emotions" and uploaded["file"]["mimetype"] == "image/png"
    sent = fake_slack.wait_for_messages(2)
    assert sent[0]["params"]["thread_ts"] == parent and sent[0]["text"] == "You sound calm"
    complete = sent[1]
    assert complete["method"] == "files.completeUploadExternal"
    assert complete["params"]["channel_id"] == "C0VOICES01" and complete["params"]["thread_ts"] == parent
    assert complete["text"] == "Scores" and complete["images"] == [chart]
    upload = fake_slack.calls("upload")[0]
    assert upload["body"] == chart and upload["status"] == 200 and "Authorization" not in upload["headers"]


def test_slack_sdk_updates_a_message_whose_blocks_keep_to_block_kit_limits(fake_slack):
    client = slack_client(fake_slack)

    def blocks(text: str = "Ack", value: str = "bb1:x:1:ack") -> list[dict]:
        return [{"type": "section", "text": {"type": "mrkdwn", "text": "*Case 1*"}},
                {"type": "actions", "elements": [{"type": "button", "action_id": "case-0", "value": value,
                                                  "text": {"type": "plain_text", "text": text}}]}]

    posted = client.chat_postMessage(channel="C0SUPPORT1", text="Case 1", blocks=blocks())
    updated = client.chat_update(channel="C0SUPPORT1", ts=posted["ts"], text="Case 1 · acknowledged",
                                 blocks=blocks("Resolve", "bb1:x:1:resolve"))
    assert updated["message"]["blocks"][1]["elements"][0]["value"] == "bb1:x:1:resolve"
    assert fake_slack.updates[0]["text"] == "Case 1 · acknowledged"
    for refused, error in [
        (lambda: client.chat_update(channel="C0SUPPORT1", ts="1.000001", text="x"), "message_not_found"),
        (lambda: client.chat_postMessage(channel="C1", text="x", blocks=blocks(text="x" * 76)), "invalid_blocks"),
        (lambda: client.chat_postMessage(channel="C1", text="x", blocks=blocks(value="v" * 2001)), "invalid_blocks"),
    ]:
        with pytest.raises(SlackApiError) as answer:
            refused()
        assert answer.value.response["error"] == error


def test_slack_interactions_are_forms_signed_the_way_slack_sdk_verifies(fake_slack):
    client = slack_client(fake_slack)
    posted = client.chat_postMessage(channel="C0SUPPORT1", text="Case 1", blocks=[
        {"type": "actions", "elements": [{"type": "button", "action_id": "case-0", "value": "bb1:x:1:ack",
                                          "text": {"type": "plain_text", "text": "Ack"}, "style": "primary"}]}])
    payload = slack.button_press(fake_slack, "C0SUPPORT1", posted["ts"], "bb1:x:1:ack", user_name="bob")
    request = slack.interaction_request(payload)

    verifier = SignatureVerifier(slack.DEFAULT_SIGNING_SECRET)
    assert verifier.is_valid_request(request.body, request.headers)
    assert not SignatureVerifier("another-secret").is_valid_request(request.body, request.headers)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    [form] = parse_qs(request.body.decode())["payload"]
    press = json.loads(form)
    assert press["type"] == "block_actions" and press["user"]["name"] == "bob"
    assert press["container"] == {"type": "message", "message_ts": posted["ts"], "channel_id": "C0SUPPORT1",
                                  "is_ephemeral": False}
    assert press["actions"][0]["value"] == "bb1:x:1:ack" and press["actions"][0]["style"] == "primary"
    assert requests.post(press["response_url"], json={"text": "only you"}).ok
    assert fake_slack.responses == [{"text": "only you"}]


def test_slack_auth_failures_and_rate_limits_look_like_slack(fake_slack):
    with pytest.raises(SlackApiError) as refused:
        slack_client(fake_slack, token="xoxb-wrong").chat_postMessage(channel="C1", text="x")
    assert refused.value.response.status_code == 200 and refused.value.response["error"] == "invalid_auth"
    assert requests.post(fake_slack.base_url + "/api/auth.test").json() == {"ok": False, "error": "not_authed"}

    fake_slack.rate_limit_next("chat.postMessage", retry_after=0)
    fake_slack.fail_next("chat.postMessage", status=503)
    client = slack_client(fake_slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1),
                                                      ServerErrorRetryHandler(max_retry_count=2)])
    assert client.chat_postMessage(channel="C1", text="after retries")["ok"]
    statuses = [c["status"] for c in fake_slack.calls("chat.postMessage")]
    assert statuses == [200, 429, 503, 200]
    limited = fake_slack.calls("chat.postMessage")[1]
    assert limited["response"] == {"ok": False, "error": "ratelimited"}


def test_slack_private_files_need_the_bot_token(fake_slack):
    clip = fake_slack.add_file(M4A, mimetype="audio/mp4", filetype="m4a", name="audio_message.m4a")
    url = clip["url_private_download"]
    assert url.startswith(fake_slack.base_url + "/files-pri/")

    ok = requests.get(url, headers={"Authorization": f"Bearer {fake_slack.bot_token}"})
    assert ok.content == M4A and ok.headers["Content-Type"] == "audio/mp4"
    anonymous = requests.get(url)  # Slack sends anonymous clients to its sign-in page
    assert anonymous.status_code == 200 and anonymous.history[0].status_code == 302
    assert anonymous.headers["Content-Type"].startswith("text/html")
    info = slack_client(fake_slack).files_info(file=clip["id"])
    assert info["file"]["subtype"] == "slack_audio" and "_data" not in info["file"]


def test_slack_events_are_signed_the_way_slack_sdk_verifies():
    verifier = SignatureVerifier(slack.DEFAULT_SIGNING_SECRET)
    clip = slack.file_object("https://files.slack.com", mimetype="video/mp4", filetype="mp4",
                             name="audio_message.mp4")
    request = slack.event_request(slack.voice_clip_message(clip, thread_ts="1712345678.000100"))

    assert verifier.is_valid_request(request.body, request.headers)
    assert not verifier.is_valid_request(request.body.replace(b"file_share", b"file_shame"), request.headers)
    assert not SignatureVerifier("another-secret").is_valid_request(request.body, request.headers)
    stale = slack.event_request(slack.text_message("hi"), timestamp=int(time.time()) - 301)
    assert not verifier.is_valid_request(stale.body, stale.headers)

    payload = request.json()
    assert payload["type"] == "event_callback" and payload["event_id"].startswith("Ev")
    assert payload["authorizations"][0]["user_id"] == slack.DEFAULT_BOT_USER_ID
    event = payload["event"]
    assert event["subtype"] == "file_share" and event["files"][0]["subtype"] == "slack_audio"
    assert event["files"][0]["media_display_type"] == "audio" and event["thread_ts"] == "1712345678.000100"


def test_slack_retries_handshake_and_own_messages():
    retry = slack.event_request(slack.text_message("hi"), retry_num=1, event_id="Ev0SAMEEVENT")
    assert retry.headers["X-Slack-Retry-Num"] == "1" and retry.headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert retry.json()["event_id"] == "Ev0SAMEEVENT"

    handshake = slack.url_verification_request("challenge-123")
    assert handshake.json() == {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "challenge-123",
                                "type": "url_verification"}
    assert SignatureVerifier(slack.DEFAULT_SIGNING_SECRET).is_valid_request(handshake.body, handshake.headers)

    own = slack.bot_message("You sound calm")
    assert own["user"] == slack.DEFAULT_BOT_USER_ID and own["bot_id"] == slack.DEFAULT_BOT_ID
    own_upload = slack.bot_message(files=[slack.file_object("https://files.slack.com", subtype=None)])
    assert own_upload["subtype"] == "file_share" and own_upload["bot_id"]


# -- WeCom --------------------------------------------------------------------------------


def wechatpy_client(fake: wecom.FakeWeCom) -> WeChatClient:
    client = WeChatClient(fake.corp_id, fake.corp_secret)
    client.API_BASE_URL = fake.base_url + "/cgi-bin/"
    fake.route_session(client._http)  # also reroutes its hard-coded gettoken URL
    return client


def test_wechatpy_caches_the_token_and_refreshes_it_on_42001(fake_wecom):
    client = wechatpy_client(fake_wecom)
    assert client.message.send_text(fake_wecom.agent_id, "zhangsan", "你听起来很开心")["errcode"] == 0
    client.message.send_text(fake_wecom.agent_id, "zhangsan", "again")
    assert fake_wecom.gettoken_calls == 1

    fake_wecom.expire_token()
    client.message.send_text(fake_wecom.agent_id, "zhangsan", "after expiry")
    assert fake_wecom.gettoken_calls == 2
    codes = [(c["response"] or {}).get("errcode") for c in fake_wecom.calls("message/send")]
    assert codes == [0, 0, 42001, 0]
    assert fake_wecom.calls("message/send")[2]["response"]["errmsg"].startswith("access_token expired, hint: [")
    assert [m["text"] for m in fake_wecom.wait_for_messages(3)] == ["你听起来很开心", "again", "after expiry"]


def test_wechatpy_uploads_an_image_and_sends_it(fake_wecom):
    client = wechatpy_client(fake_wecom)
    chart = png_bytes()
    uploaded = client.media.upload("image", ("chart.png", io.BytesIO(chart), "image/png"))
    assert uploaded["type"] == "image" and isinstance(uploaded["created_at"], str)
    client.message.send(fake_wecom.agent_id, "zhangsan", msg={"msgtype": "image",
                                                              "image": {"media_id": uploaded["media_id"]}})
    assert fake_wecom.wait_for_messages(1)[0]["images"] == [chart] and fake_wecom.uploaded_images == [chart]

    with pytest.raises(WeChatClientException) as bad_agent:
        client.message.send_text(1, "zhangsan", "wrong agent")
    assert bad_agent.value.errcode == 40056
    fake_wecom.rate_limit_next("message/send")
    with pytest.raises(APILimitedException):
        client.message.send_text(fake_wecom.agent_id, "zhangsan", "too fast")


def test_wecom_template_cards_and_each_response_code_works_once_within_72_hours(fake_wecom):
    client = wechatpy_client(fake_wecom)
    card = {"card_type": "button_interaction", "main_title": {"title": "案件 1"}, "task_id": "bb_x_1_1",
            "button_list": [{"text": "认领", "style": 1, "key": "bb1:x:1:ack"}]}
    sent = client.message.send(fake_wecom.agent_id, "lisi", msg={"msgtype": "template_card", "template_card": card})
    event = fake_wecom.press("bb_x_1_1", "bb1:x:1:ack", from_user="lisi")

    def update(code: str) -> dict:
        return client.post("message/update_template_card", data={
            "userids": ["lisi"], "agentid": fake_wecom.agent_id, "response_code": code,
            "button": {"replace_name": "已认领"}})

    assert update(sent["response_code"])["errcode"] == 0
    with pytest.raises(WeChatClientException) as spent:
        update(sent["response_code"])
    assert spent.value.errcode == 40058, "once"
    pressed = event.split("<ResponseCode><![CDATA[")[1].split("]]>")[0]
    fake_wecom.age_response_codes(hours=73)
    with pytest.raises(WeChatClientException):
        update(pressed)  # 72 hours
    with pytest.raises(WeChatClientException) as again:
        client.message.send(fake_wecom.agent_id, "lisi", msg={"msgtype": "template_card", "template_card": card})
    assert again.value.errcode == 40058, "a task_id is unique per app"
    assert "<Event><![CDATA[template_card_event]]></Event>" in event and "<TaskId><![CDATA[bb_x_1_1]]>" in event
    assert "MsgId" not in event and len(fake_wecom.card_updates) == 1


def test_wecom_media_get_serves_amr_or_a_json_error(fake_wecom):
    media_id = fake_wecom.add_media(AMR)
    token = requests.get(fake_wecom.base_url + "/cgi-bin/gettoken",
                         params={"corpid": fake_wecom.corp_id, "corpsecret": fake_wecom.corp_secret}).json()
    assert token["errcode"] == 0 and token["expires_in"] == 7200

    url = fake_wecom.base_url + "/cgi-bin/media/get"
    voice = requests.get(url, params={"access_token": token["access_token"], "media_id": media_id})
    assert voice.content == AMR and voice.headers["Content-Type"] == "audio/amr"
    assert voice.headers["Content-disposition"] == f'attachment; filename="{media_id}.amr"'
    missing = requests.get(url, params={"access_token": token["access_token"], "media_id": "nope"})
    assert missing.headers["Content-Type"].startswith("application/json") and missing.json()["errcode"] == 40007
    assert requests.get(url, params={"media_id": media_id}).json()["errcode"] == 41001
    fake_wecom.invalidate_token()
    revoked = requests.get(url, params={"access_token": token["access_token"], "media_id": media_id})
    assert revoked.status_code == 200 and revoked.json()["errcode"] == 40014


def test_wecom_group_robot_enforces_size_key_and_rate():
    with wecom.FakeWeCom(robot_rate_limit=2) as fake:
        url = fake.base_url + "/cgi-bin/webhook/send"
        key = {"key": fake.robot_key}
        fits = "情" * (4096 // 3)  # 4095 bytes of UTF-8
        assert requests.post(url, params=key, json={"msgtype": "markdown",
                                                    "markdown": {"content": fits}}).json()["errcode"] == 0
        too_long = requests.post(url, params=key, json={"msgtype": "markdown",
                                                        "markdown": {"content": fits + "ab"}}).json()
        assert too_long["errcode"] == 40058
        assert too_long["errmsg"].startswith("markdown.content exceed max length 4096. invalid Request Parameter")
        assert requests.post(url, params={"key": "wrong"}, json={"msgtype": "text", "text": {"content": "x"}}
                             ).json()["errcode"] == 93000
        image = png_bytes()
        picture = {"base64": base64.b64encode(image).decode(), "md5": hashlib.md5(image).hexdigest()}
        assert requests.post(url, params=key, json={"msgtype": "image", "image": picture}).json()["errcode"] == 0
        limited = requests.post(url, params=key, json={"msgtype": "text", "text": {"content": "third"}})
        assert limited.status_code == 200 and limited.json()["errcode"] == 45009
        assert [m["images"] for m in fake.sent_messages] == [[], [image]]


def test_wechatpy_works_with_the_installed_crypto_backend():
    """wechatpy's own test vector: proves the cryptography backend decrypts like WeCom encrypts."""
    crypto = WeChatCrypto(wecom.DEFAULT_CALLBACK_TOKEN, wecom.DEFAULT_ENCODING_AES_KEY, wecom.DEFAULT_CORP_ID)
    echo = crypto.check_signature(
        "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425",
        "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==")
    assert echo == "5927782489442352469"


def test_wecom_callbacks_decrypt_with_wechatpy_and_forgeries_fail():
    crypto = WeChatCrypto(wecom.DEFAULT_CALLBACK_TOKEN, wecom.DEFAULT_ENCODING_AES_KEY, wecom.DEFAULT_CORP_ID)
    check = wecom.verification_request("echo-1")
    q = EnvironBuilder(path="/webhooks/wecom", **check.werkzeug_kwargs()).get_request().args  # as a server sees it
    assert crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]) == "echo-1"
    assert check.as_chat_request("/webhooks/wecom").query == check.query

    request = wecom.voice_callback("media-123", from_user="lisi", msg_id=42)
    q = request.query
    message = parse_message(crypto.decrypt_message(request.body, q["msg_signature"], q["timestamp"], q["nonce"]))
    assert (message.type, message.media_id, message.format) == ("voice", "media-123", "amr")
    assert (message.source, message.agent, message.id) == ("lisi", wecom.DEFAULT_AGENT_ID, 42)
    text = wecom.text_callback("帮助")
    q = text.query
    assert parse_message(crypto.decrypt_message(text.body, q["msg_signature"], q["timestamp"], q["nonce"])
                         ).content == "帮助"

    expected = {"signature": InvalidSignatureException, "ciphertext": InvalidSignatureException,
                "corp_id": InvalidCorpIdException, "aes_key": Exception}
    for forgery, error in expected.items():
        forged = wecom.voice_callback("media-123", forgery=forgery)
        q = forged.query
        with pytest.raises(error):
            crypto.decrypt_message(forged.body, q["msg_signature"], q["timestamp"], q["nonce"])
    forged_check = wecom.verification_request(forgery="signature").query
    with pytest.raises(InvalidSignatureException):
        crypto.check_signature(forged_check["msg_signature"], forged_check["timestamp"], forged_check["nonce"],
                               forged_check["echostr"])


# -- shared plumbing ------------------------------------------------------------------------


def test_faults_wildcards_waiting_and_session_routing(fake_wecom):
    session = fake_wecom.route_session(requests.Session())
    gettoken = "https://qyapi.weixin.qq.com/cgi-bin/gettoken"
    credentials = {"corpid": fake_wecom.corp_id, "corpsecret": fake_wecom.corp_secret}
    fake_wecom.fail_next("*", status=502, times=2)
    assert [session.get(gettoken, params=credentials).status_code for _ in range(3)] == [502, 502, 200]
    fake_wecom.fail_next("gettoken", status=200)
    assert session.get(gettoken, params=credentials).json() == {"errcode": -1, "errmsg": "system busy"}
    fake_wecom.fail_next("/cgi-bin/gettoken", status=500, body={"custom": True})
    assert session.get(gettoken, params=credentials).json() == {"custom": True}
    with pytest.raises(AssertionError, match="1 sent message"):
        fake_wecom.wait_for_messages(1, timeout=0.05)


def test_inbound_requests_arrive_byte_for_byte(fake_slack):
    request = slack.url_verification_request("abc")
    assert request.send(fake_slack.base_url + "/").status_code == 200  # the fake's sign-in page records it
    received = fake_slack.calls("sign_in_page")[0]
    assert received["body"] == request.body
    assert received["headers"]["X-Slack-Signature"] == request.headers["X-Slack-Signature"]
    assert request.as_chat_request("/webhooks/slack").headers["x-slack-signature"] == received["headers"][
        "X-Slack-Signature"]
