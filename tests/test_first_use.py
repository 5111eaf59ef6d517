"""What a newcomer meets in the first ten minutes: signing in, wrong addresses, the API's words, the
model advice, result folders, and who sent a WeCom note.

``make demo`` itself (its banner, the CLI on its model, its sample chat): tests/test_demo.py; what
``digest --now`` says it sends: tests/test_digest.py.
"""

from __future__ import annotations

import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot_bridge.acting.alerting import source_line
from bot_bridge.chat.messages import ChatMessage
from bot_bridge.errors import ModelUnavailable
from bot_bridge.hearing import model_files
from bot_bridge.hearing.model_files import resolve_model_dir
from bot_bridge.web import create_app
from tests.audio_fixtures import encode, speech_clip

CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def language_view(html: str, keep: str) -> str:
    """The text a reader sees with the console's language switch on ``keep`` (``zh`` or ``en``)."""
    drop = "en" if keep == "zh" else "zh"
    html = re.sub(rf'<span class="{drop}" lang="[^"]+">.*?</span>', "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def login_hint(html: str) -> str:
    match = re.search(r'<p class="hint">(.*?)</p>', html, flags=re.S)
    assert match, "the login page says where the password is"
    return match.group(1)


# --- 11: the login page names the password file of this instance, in whole sentences per language ---


def test_the_login_hint_names_this_instances_password_file_in_each_language(settings, service):
    hint = login_hint(create_app(service=service).test_client().get("/login").get_data(as_text=True))
    path = str((settings.data_dir / "console-password").resolve())

    zh, en = language_view(hint, "zh"), language_view(hint, "en")
    assert path in zh and path in en, (zh, en)
    assert not CJK.search(en), en
    assert zh.endswith("。") and en.endswith("."), (zh, en)
    assert "BOT_BRIDGE_CONSOLE_PASSWORD" in en


def test_a_configured_password_is_not_looked_for_in_a_file(settings, service):
    settings.console.password = "chosen by the operator"
    hint = login_hint(create_app(service=service).test_client().get("/login").get_data(as_text=True))
    assert "console-password" not in hint
    assert "BOT_BRIDGE_CONSOLE_PASSWORD" in language_view(hint, "en")


# --- 18: small things ---


def test_an_unknown_address_gets_the_consoles_page_and_an_unknown_api_path_json(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "console.css" in html and "Page not found" in html and "找不到这一页" in html
    assert page.headers["X-Content-Type-Options"] == "nosniff"

    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.is_json and api.get_json()["code"] == "not_found"


def test_api_json_carries_chinese_and_emoji_as_they_are(client):
    created = client.post("/api/predict", data={"file": (io.BytesIO(encode(speech_clip(2.0), 16000, "wav_s16")), "note.wav")})
    raw = created.get_data(as_text=True)
    assert created.status_code == 201
    assert "\\u" not in raw and created.get_json()["label_zh"] in raw and created.get_json()["emoji"] in raw

    missing = client.get("/api/results/nope").get_data(as_text=True)
    assert "找不到这条记录。" in missing


def test_the_offline_advice_names_the_directory_the_readme_names(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(model_files.HUB_HOSTS, "ms", "modelscope.invalid")
    with pytest.raises(ModelUnavailable) as raised:
        resolve_model_dir("iic/emotion2vec_plus_large", "ms")
    assert "bot-bridge model download iic/emotion2vec_plus_large ./emotion2vec_plus_large" in raised.value.detail
    assert "emotion2vec_model" not in raised.value.detail


def test_result_folders_say_their_time_is_utc(client, service):
    created = client.post("/api/predict", data={"file": (io.BytesIO(encode(speech_clip(2.0), 16000, "wav_s16")), "note.wav")})
    result = created.get_json()
    [folder] = service.settings.outputs_dir.glob(f"*_{result['id']}")
    utc = datetime.fromisoformat(result["created_at"]).astimezone(ZoneInfo("UTC"))
    assert folder.name == f"{utc:%Y%m%d_%H%M%S}Z_{result['id']}"


def test_a_wecom_note_names_its_sender_once(service):
    # What WeComAdapter.parse gives: a direct message, whose chat is its sender, known by user id only.
    message = ChatMessage(platform="wecom", delivery_id="m1", kind="voice", chat_id="wcang01", sender_id="wcang01")
    service.store.record_voice_note(message)
    [note] = service.store.voice_notes()
    assert source_line(note) == "wecom · wcang01"

    group = ChatMessage(platform="telegram", delivery_id="m2", kind="voice", chat_id="-1007", chat_name="Support",
                        sender_id="42", sender_name="Alice")
    service.store.record_voice_note(group)
    assert {source_line(note) for note in service.store.voice_notes()} == {"wecom · wcang01",
                                                                          "telegram · Support · Alice"}

