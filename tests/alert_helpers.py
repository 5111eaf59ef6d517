"""What the escalation, digest and scheduler tests share.

Voice notes are written straight into the store with known scores and
times (``add_chat_note``), so no model runs and every number is known.
``Alerts`` builds the escalator and the digests on settings whose targets
are the loopback fakes, with retries that do not sleep; time is whatever
the test passes as ``now``.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from adapters import enabled_adapters
from bot_bridge.acting.alerting import build_targets
from bot_bridge.acting.digest import Digests
from bot_bridge.acting.escalation import Escalator
from bot_bridge.chat.messages import ChatMessage
from bot_bridge.chat.outbound import OutboundHttp
from bot_bridge.config import Settings, load_settings
from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.remembering.results import Result, Segment, Transcript
from bot_bridge.remembering.store import NoteStatus, Store, VoiceNoteRow
from tests.chat_helpers import platform_environment
from tests.platforms import slack as fake_slack_module

#: 14:00 in Shanghai, 06:00 in London.
NOON = datetime(2026, 3, 4, 6, 0, tzinfo=timezone.utc)
PUBLIC_URL = "https://bot.example.com"
SLACK_CHANNEL = fake_slack_module.DEFAULT_CHANNEL
TELEGRAM_CHAT = "-1001234567890"
_deliveries = itertools.count(1)


def scores(**given: float) -> dict[str, float]:
    """Nine scores: the ``given`` ones, ``neutral`` taking what is left of 1."""
    full = {key: 0.0 for key in EMOTION_KEYS}
    full.update(given)
    full["neutral"] = given.get("neutral", round(1.0 - sum(given.values()), 6))
    return full


def add_chat_note(
    store: Store,
    *,
    received_at: datetime,
    emotions: dict[str, float],
    platform: str = "telegram",
    chat_id: str = "-100777",
    chat_name: str | None = "Support group",
    sender_name: str = "Alice",
    duration_s: float = 6.0,
    reason: str | None = None,
    analysed: bool = True,
    said: str | None = None,
) -> str | None:
    """A chat voice note received at ``received_at`` and analysed 5 s later; its result id. ``said``: the text of
    its transcript, as SenseVoice with real weights would have written it."""
    message = ChatMessage(platform=platform, delivery_id=f"d{next(_deliveries)}", kind="voice", chat_id=chat_id,
                          chat_name=chat_name, sender_id=f"id-{sender_name}", sender_name=sender_name,
                          received_at=received_at)
    note_id, _ = store.record_voice_note(message)
    if not analysed:
        return None
    result = Result(scores=scores(**emotions), duration_s=duration_s, speech_ratio=1.0, model={"name": "test-model"},
                    reason=reason, origin=platform, created_at=received_at + timedelta(seconds=5),
                    transcript=None if said is None else transcript(said, duration_s))
    store.save_result(result)
    with store.session.begin() as session:
        session.execute(update(VoiceNoteRow).where(VoiceNoteRow.id == note_id)
                        .values(result_id=result.id, status=NoteStatus.REPLIED))
    return result.id


def transcript(text: str, duration_s: float = 6.0, *, random_weights: bool = False,
               emotion: str | None = None) -> Transcript:
    """A one-segment transcript of ``text`` (SenseVoice's tags: Chinese when it has a Chinese character)."""
    language = "zh" if any("\u4e00" <= char <= "\u9fff" for char in text) else "en"
    return Transcript(text=text, language=language, segments=[Segment(0.2, duration_s - 0.2, text, language, emotion)],
                      events=["Speech"], sensevoice_emotion=emotion,
                      model={"name": "iic/SenseVoiceSmall", "random_weights": random_weights})


def target_config(telegram=None, slack=None, wecom=None, **extra) -> dict:
    """One target per fake given: ``slack`` (#C0VOICES01, en), ``telegram`` (zh), ``robot`` (both)."""
    targets = {}
    if slack is not None:
        targets["slack"] = {"platform": "slack", "chat_id": SLACK_CHANNEL, "name": "Slack #support", "language": "en",
                            "timezone": "Europe/London"}
    if telegram is not None:
        targets["telegram"] = {"platform": "telegram", "chat_id": TELEGRAM_CHAT, "language": "zh"}
    if wecom is not None:
        targets["robot"] = {"platform": "wecom_robot", "chat_id": wecom.robot_key, "name": "客服群 robot"}
    targets.update(extra)
    return targets


def alert_settings(tmp_path, *, telegram=None, slack=None, wecom=None, targets=None, **overrides) -> Settings:
    """Settings with a target per fake, every chat routed to every target, and links to ``PUBLIC_URL`` (unless
    ``public_url`` says otherwise)."""
    targets = targets or target_config(telegram, slack, wecom)
    environ = platform_environment(telegram, slack, wecom)
    overrides.setdefault("routes", [{"sources": ["*"], "targets": list(targets)}])
    overrides.setdefault("public_url", PUBLIC_URL)
    return load_settings(environ=environ, data_dir=str(tmp_path / "data"), targets=targets, **overrides)


class Alerts:
    """The escalator and the digests of ``settings``, as one process of a deployment has them."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store(settings.resolved_database_url, settings.outputs_dir)
        http = OutboundHttp(attempts=2, sleep=lambda _seconds: None)
        self.targets = build_targets(settings, enabled_adapters(settings.platforms, http), http)
        self.escalator = Escalator(self.store, settings, self.targets)
        self.digests = Digests(self.store, settings, self.targets)

    def restart(self) -> Alerts:
        """A fresh process on the same database."""
        self.store.close()
        return Alerts(self.settings)

    def close(self) -> None:
        self.store.close()


def texts(fake) -> list[str]:
    return [message["text"] for message in fake.sent_messages if message["text"]]


class RecordingHttp:
    """Stands in for ``OutboundHttp`` where only what was posted matters: each call's ``params``."""

    def __init__(self) -> None:
        self.params: list[dict] = []

    def call(self, method: str, url: str, *, params: dict, **_kwargs) -> None:
        self.params.append(params)

    def keys(self) -> list[str]:
        return [params["key"] for params in self.params]
