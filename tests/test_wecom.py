"""WeCom end to end: callbacks encrypted with wechatpy in, app messages out through the loopback API."""

from __future__ import annotations

import time

import pytest

from adapters.base import Refused
from adapters.wecom import WeComAdapter
from bot_bridge.acting.replies import label
from bot_bridge.chat.messages import CaseInsensitiveDict, InboundRequest
from bot_bridge.remembering.store import NoteStatus
from tests.audio_fixtures import encode, speech_clip
from tests.chat_helpers import delivered_after_retries, running_bot
from tests.platforms import fixtures, wecom

fake_wecom = fixtures.fake_wecom


@pytest.fixture
def bot(tmp_path, tiny_model_dir, tiny_model, fake_wecom):
    with running_bot(tmp_path, tiny_model_dir, tiny_model, fakes={"wecom_fake": fake_wecom}) as bot:
        yield bot


@pytest.fixture(scope="module")
def voice_amr():
    return encode(speech_clip(3), 16000, "amr")


def test_the_callback_url_check_answers_the_bare_decrypted_echostr(bot):
    response = bot.deliver(wecom.verification_request("5927782489442352469"), "wecom")

    assert (response.status_code, response.get_data()) == (200, b"5927782489442352469")


def test_a_voice_message_is_answered_to_its_sender(bot, fake_wecom, voice_amr):
    response = bot.deliver(wecom.voice_callback(fake_wecom.add_media(voice_amr), from_user="lisi"), "wecom")

    assert (response.status_code, response.get_data()) == (200, b"")
    [sent] = fake_wecom.wait_for_messages(1, timeout=30)
    [note] = bot.wait_until_finished()
    result = bot.store.result(note.result_id)
    assert sent["method"] == "message/send"
    assert (sent["params"]["touser"], sent["params"]["agentid"], sent["params"]["msgtype"]) == ("lisi", fake_wecom.agent_id, "text")
    assert label(result.emotion, result.confidence, "both") in sent["text"]  # "😠 愤怒 Angry · 87%"
    assert result.audio["codec"] == "libopencore_amrnb"
    assert note.status == NoteStatus.REPLIED


# Sealed with another AES key, the plaintext is garbage: unreadable (401) or naming no CorpID of ours (403).
@pytest.mark.parametrize(
    ("forgery", "statuses"),
    [("signature", {401}), ("ciphertext", {401}), ("corp_id", {403}), ("aes_key", {401, 403})],
)
def test_forged_callbacks_are_refused_before_anything_is_stored(bot, fake_wecom, voice_amr, forgery, statuses):
    media_id = fake_wecom.add_media(voice_amr)

    assert bot.deliver(wecom.voice_callback(media_id, forgery=forgery), "wecom").status_code in statuses
    assert bot.deliver(wecom.verification_request(forgery=forgery), "wecom").status_code in statuses
    assert bot.notes() == [] and fake_wecom.requests == []


def test_a_replayed_callback_with_an_old_timestamp_is_refused(bot, fake_wecom, voice_amr):
    captured = wecom.voice_callback(fake_wecom.add_media(voice_amr), timestamp=int(time.time()) - 6 * 60)

    assert bot.deliver(captured, "wecom").status_code == 403
    assert bot.notes() == [] and fake_wecom.requests == []


def test_wecoms_retries_of_one_msgid_get_one_reply(bot, fake_wecom, voice_amr):
    callback = wecom.voice_callback(fake_wecom.add_media(voice_amr), msg_id=7284920374659238471)

    statuses = [bot.deliver(callback, "wecom").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    bot.wait_until_finished()
    assert len(bot.notes()) == 1 and len(fake_wecom.calls("message/send")) == 1


def test_the_access_token_is_cached_and_renewed_when_wecom_says_it_expired(bot, fake_wecom, voice_amr):
    bot.deliver(wecom.text_callback("帮助"), "wecom")
    fake_wecom.wait_for_messages(1, timeout=10)
    fake_wecom.expire_token()

    bot.deliver(wecom.voice_callback(fake_wecom.add_media(voice_amr)), "wecom")

    fake_wecom.wait_for_messages(2, timeout=30)
    assert fake_wecom.gettoken_calls == 2  # once at first use, once after errcode 42001
    assert [call["response"]["errcode"] for call in fake_wecom.calls("media/get")[:1]] == [42001]
    assert "数据库" in fake_wecom.sent_messages[0]["text"]


def test_system_busy_and_rate_limits_are_retried(bot, fake_wecom, voice_amr):
    fake_wecom.fail_next("media/get", 502)
    fake_wecom.rate_limit_next("message/send")  # errcode 45009, HTTP 200

    bot.deliver(wecom.voice_callback(fake_wecom.add_media(voice_amr)), "wecom")

    sends = delivered_after_retries(bot, fake_wecom, "message/send")
    assert [call["response"]["errcode"] for call in sends] == [45009, 0]


def test_wechatpys_published_vectors_pass_verification_and_parsing():
    """wechatpy's tests/test_crypto.py vectors (token 123456, corp wx49f0ab532d5d035a), 2014 timestamps."""
    adapter = WeComAdapter(
        {"corp_id": "wx49f0ab532d5d035a", "corp_secret": "s", "agent_id": "1", "token": "123456",
         "encoding_aes_key": "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"}
    )
    echo = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
    check = _request("GET", {"msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "timestamp": "1411443780",
                             "nonce": "437374425", "echostr": echo})
    message = _request("POST", {"msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d", "timestamp": "1411525903",
                                "nonce": "461056294"}, VECTOR_MESSAGE)

    with pytest.raises(Refused) as stale:
        adapter.verify(message)  # in 2014 these were fresh; replayed today they are not
    assert stale.value.status == 403

    adapter.clock = lambda: 1411443780
    adapter.verify(check)
    assert adapter.parse(check).response.body == "5927782489442352469"
    adapter.clock = lambda: 1411525903
    adapter.verify(message)
    assert adapter.parse(message).messages == ()  # a text message ("test") that is not a help request
    forged = _request("POST", {**message.query, "nonce": "461056295"}, VECTOR_MESSAGE)
    with pytest.raises(Refused):
        adapter.verify(forged)


VECTOR_MESSAGE = b"""<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>
<Encrypt><![CDATA[RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>
<AgentID><![CDATA[1]]></AgentID>
</xml>"""


def _request(method: str, query: dict, body: bytes = b"") -> InboundRequest:
    return InboundRequest(method, "wecom", query, CaseInsensitiveDict(), body)


def test_an_aes_key_of_the_wrong_length_stops_the_start_in_every_role(tmp_path, tiny_model_dir, fake_wecom):
    from bot_bridge.service import Service
    from tests.chat_helpers import chat_settings, platform_environment

    environ = {**platform_environment(wecom_fake=fake_wecom), "WECOM_ENCODING_AES_KEY": "too-short"}
    service = Service(chat_settings(tmp_path, tiny_model_dir, environ, server__role="web"))

    with pytest.raises(ValueError, match="43 characters"):
        service.start_background("web")
    service.close()
