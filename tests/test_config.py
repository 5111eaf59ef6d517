"""Settings: YAML file, environment on top, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot_bridge.config import ENVIRONMENT, ConfigError, load_settings


def test_defaults_are_the_production_ones(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path))
    assert settings.model.name == "iic/emotion2vec_plus_large"
    assert settings.model.device == "auto"
    assert settings.server.host == "127.0.0.1" and settings.server.port == 7860
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'bot-bridge.db'}"
    assert (settings.audio.max_bytes, settings.audio.max_duration_s, settings.audio.min_duration_s) == (25_000_000, 300, 0.3)


def test_environment_overrides_the_file(tmp_path):
    config = tmp_path / "bot-bridge.yaml"
    config.write_text("model:\n  name: iic/emotion2vec_plus_base\n  device: cpu\n", encoding="utf-8")
    environ = {
        "BOT_BRIDGE_MODEL": "/models/e2v",
        "BOT_BRIDGE_DATA_DIR": str(tmp_path / "d"),
        "BOT_BRIDGE_DATABASE_URL": "postgresql+psycopg://localhost/test",
    }
    settings = load_settings(config, environ=environ)
    assert settings.model.name == "/models/e2v"
    assert settings.model.device == "cpu"
    assert settings.resolved_database_url == "postgresql+psycopg://localhost/test"
    assert settings.data_dir == tmp_path / "d"


def test_a_misspelt_key_in_the_file_is_named(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  devise: cpu\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model\.devise .*unknown setting"):
        load_settings(config, environ={})


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match=r"model\.device \(from environment variable BOT_BRIDGE_DEVICE\)"):
        load_settings(environ={"BOT_BRIDGE_DEVICE": "tpu"})


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_the_shipped_example_config_is_valid_and_equals_the_defaults():
    shipped = load_settings(environ={})
    from bot_bridge.config import Settings

    assert shipped.model_dump(exclude={"data_dir"}) == Settings().model_dump(exclude={"data_dir"})


def test_every_environment_variable_is_in_the_settings_reference():
    reference = (Path(__file__).parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    assert [variable for variable in ENVIRONMENT if f"`{variable}`" not in reference] == []


@pytest.mark.parametrize(
    ("yaml_text", "named"),
    [("platforms:\n  telgram:\n    bot_token: x\n", r"platforms\.telgram .*unknown platform; known: .*\bslack, telegram, wecom\b"),
     ("platforms:\n  telegram:\n    bot_tokn: x\n", r"platforms\.telegram\.bot_tokn .*unknown setting")],
)
def test_a_misspelt_platform_or_platform_setting_is_named(tmp_path, yaml_text, named):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=named):
        load_settings(config, environ={})


def test_per_chat_settings_take_the_most_precise_source_chat():
    settings = load_settings(environ={}, transcribe__chats={"wecom:*": False, "wecom:boss": True},
                             reply__transcripts={"*": "off", "telegram:*": "full", "telegram:-100123": "short"})

    assert [settings.transcribe.enabled_for("wecom", chat) for chat in ("boss", "anyone")] == [True, False]
    assert settings.transcribe.enabled_for("telegram", "-100123") is True  # no entry: transcribe.enabled
    assert [settings.reply.transcript_for("telegram", chat) for chat in ("-100123", "-100999")] == ["short", "full"]
    assert settings.reply.transcript_for("slack", "C1") == "off"
    assert load_settings(environ={}).reply.transcript_for("slack", "C1") == "short"


def test_an_escalation_rule_of_thresholds_alone_reads_as_before_and_keywords_sit_beside_them():
    settings = load_settings(environ={}, escalation={"default_rule": {"angry": 0.5},
                                                     "rules": {"wecom:*": {"angry": 0.6, "keywords": ["退款", " refund "],
                                                                           "match": "all"}}})

    default, wecom = settings.escalation.default_rule, settings.escalation.rules["wecom:*"]
    assert (default.thresholds, default.keywords, default.match) == ({"angry": 0.5}, [], "any")
    assert (wecom.thresholds, wecom.keywords, wecom.match) == ({"angry": 0.6}, ["退款", "refund"], "all")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"transcribe__chats": {"wecom": False}}, r"transcribe\.chats.*'wecom' is not a source chat"),
     ({"reply__transcripts": {"telegram:1": "long"}}, r"reply\.transcripts\.telegram:1"),
     ({"reply__transcript": "some"}, r"reply\.transcript .*'off', 'short' or 'full'")],
)
def test_a_wrong_transcript_setting_is_named(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(environ={}, **overrides)
