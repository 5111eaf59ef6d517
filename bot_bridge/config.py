"""Settings: one YAML file, environment variables on top, validated at start.

Why pydantic with ``extra="forbid"``: a misspelt key in a YAML file is the
most common way to misconfigure a service, and silently ignoring it turns a
typo into a production mystery. Every failure names the setting's full path
(``model.device``) or the environment variable that carried it.

Precedence, lowest first: built-in defaults, ``config/bot-bridge.yaml`` (or
the file named by ``BOT_BRIDGE_CONFIG``), environment variables.
"""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .emotions import EMOTION_KEYS

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = PROJECT_DIR / "config" / "bot-bridge.yaml"


class ConfigError(Exception):
    """Settings that cannot be used; the message names the setting."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- Settings per source chat: escalation.rules, transcribe.chats, reply.transcripts ---

Value = TypeVar("Value")


def for_chat(per_chat: Mapping[str, Value], platform: str, chat_id: str) -> Value | None:
    """The value that settings keyed by source chat give one chat: the most precise key that names it,
    ``platform:chat_id``, else ``platform:*``, else ``*``; None when none does. Every per-chat setting
    is read through this."""
    key = chat_key(per_chat, platform, chat_id)
    return None if key is None else per_chat[key]


def chat_key(per_chat: Mapping, platform: str, chat_id: str) -> str | None:
    """The key of ``for_chat``'s entry: which of ``platform:chat_id``, ``platform:*`` and ``*`` applies."""
    for source in (f"{platform}:{chat_id}", f"{platform}:*", "*"):
        if source in per_chat:
            return source
    return None


def _check_source(source: str) -> str:
    if source != "*" and ":" not in source:
        raise ValueError(f"{source!r} is not a source chat; write platform:chat_id, platform:* or *")
    return source


def _check_sources(per_chat: dict[str, Value]) -> dict[str, Value]:
    return {_check_source(source): value for source, value in per_chat.items()}


#: A setting keyed by source chat, ``platform:chat_id``, ``platform:*`` or ``*``, read with ``for_chat``.
PerChat = Annotated[dict[str, Value], AfterValidator(_check_sources)]


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535, description="HTTP port; a worker serves only /healthz, /readyz, /metrics")
    role: Literal["all", "web", "worker"] = "all"
    # Process layout (bot_bridge/layout.py says why these defaults)
    processes: int | None = Field(
        None, ge=1, le=64, description="processes of this `serve`; default: web one per core (at least 2), all/worker 1"
    )
    threads: int = Field(8, ge=1, le=256, description="HTTP threads per process")
    # Limits on what clients send (bot_bridge/web/request_limits.py, docs/operations.md)
    webhook_max_bytes: int = Field(
        1_000_000, ge=10_000, description="chat webhook bodies over this are refused (413) before they are read"
    )
    body_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="a request body not complete this long after its headers is refused (408)"
    )


class ModelSettings(_Section):
    name: str = "iic/emotion2vec_plus_large"
    hub: Literal["ms", "hf"] = "ms"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch threads per process; default: cores / server.processes")
    mode: Literal["exact", "fast"] = "exact"
    max_chunk_s: float = Field(30.0, gt=1, le=60)
    batch_size: int | None = Field(None, ge=1, le=64, description="recordings per forward pass; default 8 on CUDA, 1 on CPU")
    batch_wait_ms: float = Field(10.0, ge=0, le=1000, description="how long a batch waits for company")


class TranscribeSettings(_Section):
    """What was said, by SenseVoice-Small (bot_bridge/hearing/transcriber.py); loads like ``model``."""

    enabled: bool = Field(True, description="transcribe voice notes and uploads (POST /api/predict transcribe=)")
    model: str = Field("iic/SenseVoiceSmall", description="hub id (downloaded from model.hub) or a local directory")
    language: Literal["auto", "zh", "en", "yue", "ja", "ko"] = "auto"
    itn: bool = Field(True, description="punctuation and numbers as digits (SenseVoice's inverse text normalisation)")
    chats: PerChat[bool] = Field(
        default_factory=dict,
        description="per source chat 'platform:chat_id', 'platform:*' or '*' (the most precise one applies): "
        "whether its voice notes are transcribed, instead of enabled",
    )

    def enabled_for(self, platform: str, chat_id: str) -> bool:
        """Whether a chat's voice notes are transcribed: its entry in ``chats``, else ``enabled``."""
        chosen = for_chat(self.chats, platform, chat_id)
        return self.enabled if chosen is None else chosen


class AudioSettings(_Section):
    max_bytes: int = Field(25_000_000, gt=0)
    max_duration_s: float = Field(300.0, gt=0)
    min_duration_s: float = Field(0.3, ge=0)
    keep_audio: bool = True


class ApiSettings(_Section):
    token: str | None = None
    predict_timeout_s: float = Field(
        120.0, gt=0, description="role web: how long POST /api/predict waits for a worker before 503/504"
    )


class SsoSettings(_Section):
    """Sign-in to the console through an OpenID Connect provider (docs/accounts.md); off without discovery_url."""

    discovery_url: str | None = Field(None, description="the provider's .well-known/openid-configuration URL")
    client_id: str | None = None
    client_secret: str | None = None
    name_claim: str = Field("preferred_username", description="the ID token claim that names the account")
    role_claim: str | None = Field(None, description="a claim holding viewer, agent or admin; read at each sign-in")
    default_role: Literal["viewer", "agent", "admin"] | None = Field(
        "viewer", description="the role of an SSO account with no role claim; empty: such people are refused"
    )

    @model_validator(mode="after")
    def _complete(self) -> "SsoSettings":
        if self.discovery_url and not (self.client_id and self.client_secret):
            raise ValueError("console.sso needs client_id and client_secret with its discovery_url")
        return self


class ConsoleSettings(_Section):
    password: str | None = None
    secret_key: str | None = None
    sso: SsoSettings = Field(default_factory=SsoSettings)
    timezone: str = Field(
        "Asia/Shanghai", description="the zone of the times the console shows, and of the day its digest page opens on"
    )
    trusted_proxies: int = Field(
        0, ge=0, le=10, description="reverse proxies in front of bot-bridge whose X-Forwarded-For/-Proto are believed"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return TargetSettings._known_timezone(value)


class QueueSettings(_Section):
    url: str | None = Field(None, description="empty: SQLite under data_dir; redis://host:6379/0 to scale out")
    name: str = Field("bot-bridge", pattern=r"^[A-Za-z0-9_-]+$", description="deployments sharing a Redis need their own")
    worker_threads: int | None = Field(
        None, ge=1, le=64, description="notes in work at once per model process; default 2 on CPU, model.batch_size on CUDA"
    )
    shutdown_grace_s: float = Field(10.0, ge=0, description="on SIGTERM, notes still in work after this are handed back")
    max_attempts: int = Field(5, ge=1, description="tries per chat voice note before it is marked failed")
    retry_delay_s: float = Field(15.0, gt=0, description="wait before the 2nd try; tripled for each later one")
    lease_s: float = Field(60.0, gt=0, description="a note held this long by a silent worker is taken back")
    recovery_interval_s: float = Field(15.0, gt=0, description="how often expired leases are looked for")

    @field_validator("url")
    @classmethod
    def _known_queue(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be empty (SQLite queue under data_dir) or a redis:// URL")
        return value or None


#: How the bot answers a voice note in a chat (bot_bridge/acting/reply_modes.py, docs/reply-modes.md).
ReplyMode = Literal["message", "reaction", "silent"]
TranscriptInReply = Literal["off", "short", "full"]


class ReplySettings(_Section):
    language: Literal["zh", "en", "both"] = "both"
    languages: dict[str, Literal["zh", "en", "both"]] = Field(
        default_factory=dict, description="per chat: 'platform:chat_id' -> language"
    )
    chart_min_duration_s: float = 10.0
    mode: ReplyMode = Field("message", description="message, reaction (an emoji on the voice note) or silent")
    modes: PerChat[ReplyMode] = Field(
        default_factory=dict,
        description="per source chat 'platform:chat_id', 'platform:*' or '*' (the most precise one applies)",
    )
    transcript: TranscriptInReply = Field(
        "short", description="what was said, under the emotion: off, short (the first 200 characters) or full"
    )
    transcripts: PerChat[TranscriptInReply] = Field(
        default_factory=dict,
        description="per source chat 'platform:chat_id', 'platform:*' or '*' (the most precise one applies) -> "
        "off, short or full, instead of transcript",
    )

    def transcript_for(self, platform: str, chat_id: str) -> str:
        """How much of the transcript a chat's replies carry: its entry in ``transcripts``, else ``transcript``."""
        return for_chat(self.transcripts, platform, chat_id) or self.transcript


class InboundSettings(_Section):
    """Platforms reached without a public URL: pulled updates (Telegram polling), long connections (Slack Socket
    Mode); bot_bridge/acting/listeners.py."""

    lease_s: float = Field(
        30.0, gt=0, description="one process pulls a platform's updates; another takes over this long after it dies"
    )
    retry_delay_s: float = Field(
        5.0, gt=0, description="after a failed pull or connection; doubled each time, up to 5 minutes"
    )


# --- Escalations and daily digests (bot_bridge/acting/escalation.py, digest.py, scheduler.py) ---
#
# ``targets`` are where alerts go, ``routes`` which source chats go to which
# targets; ``escalation`` says which voice notes are cases and how often they
# are swept, ``digest`` which targets get a daily digest and when. The
# commented example is config/escalation.example.yaml.

Language = Literal["zh", "en", "both"]
#: The longest keyword of an escalation rule (the ``escalations`` table keeps the one that matched).
MAX_KEYWORD = 64
#: How often the scheduler looks for due digests: the shortest grace period that cannot miss one.
DIGEST_CHECK_MINUTES = 1


def _check_thresholds(thresholds: dict[str, float]) -> dict[str, float]:
    for emotion, score in thresholds.items():
        if emotion not in EMOTION_KEYS:
            raise ValueError(f"{emotion!r} is not an emotion; use one of {', '.join(EMOTION_KEYS)}")
        if not 0 < score <= 1:
            raise ValueError(f"{emotion}: {score} is not a score between 0 (exclusive) and 1")
    return thresholds


class EscalationRule(_Section):
    """When a chat's voice note is a case: emotion thresholds, keywords of its transcript, and how they combine.

    Written flat in the settings, thresholds beside ``keywords`` and ``match``:
    ``{angry: 0.5, keywords: [退款, refund], match: any}``; a rule of thresholds alone is the form every
    earlier version read. ``match: any``: an emotion at or over its threshold makes a case, and so does a
    keyword alone. ``match: all``: only a keyword together with an emotion at or over its threshold.
    Keywords are found regardless of case; a keyword with Chinese (or Japanese) characters anywhere in the
    transcript, any other only as a whole word (``bot_bridge.words.find_keyword``).
    """

    thresholds: dict[str, float] = Field(default_factory=dict, description="emotion -> score at or above which")
    keywords: list[str] = Field(default_factory=list, description="words of the transcript")
    match: Literal["any", "all"] = "any"

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        if isinstance(value, dict) and "thresholds" not in value:
            thresholds = {key: score for key, score in value.items() if key not in ("keywords", "match")}
            return {**{key: value[key] for key in ("keywords", "match") if key in value}, "thresholds": thresholds}
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_thresholds(value)

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        keywords = [" ".join(keyword.split()) for keyword in value]
        empty_or_long = [keyword for keyword in keywords if not 0 < len(keyword) <= MAX_KEYWORD]
        if empty_or_long:
            raise ValueError(f"keywords must be 1 to {MAX_KEYWORD} characters long, not {empty_or_long[0]!r}")
        return keywords

    @model_validator(mode="after")
    def _all_needs_both(self) -> EscalationRule:
        if self.match == "all" and not (self.thresholds and self.keywords):
            raise ValueError("match: all makes a case of a keyword together with an emotion, so it needs both "
                             "keywords and emotion thresholds; with only one of them, write match: any")
        return self


Value = TypeVar("Value")


class TargetSettings(_Section):
    """One place alerts go: a chat of a configured platform, or a WeCom group robot."""

    platform: str = Field(description="slack, telegram, wecom (app message) or wecom_robot (group robot webhook)")
    chat_id: str = Field(min_length=1, description="channel, chat, WeCom user ids a|b, or the robot's webhook key")
    name: str | None = Field(None, description="how people see it (console, logs); default: the target's key")
    language: Language = "both"
    timezone: str = Field("Asia/Shanghai", description="times in alerts, and the clock of the daily digest")

    @field_validator("platform")
    @classmethod
    def _known_platform(cls, value: str) -> str:
        from adapters import adapter_classes, alert_only_classes

        known = sorted({*adapter_classes(), *alert_only_classes()})
        if value not in known:
            raise ValueError(f"{value!r} is not a platform; use one of {', '.join(known)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Asia/Shanghai or Europe/London") from None
        return value


class LevelSettings(_Section):
    """One step of a route's re-escalation: who hears of a case still open ``after_min`` after it opened."""

    targets: list[str] = Field(min_length=1, description="keys of targets")
    after_min: float = Field(0.0, ge=0, description="minutes after the case opened; 0: at once")


class RouteSettings(_Section):
    """Which source chats go to which targets: ``targets`` (all at once), or ``levels`` that re-escalate a
    case nobody acknowledged (bot_bridge/acting/alerting.py ``Routes``, docs/cases.md)."""

    sources: list[str] = Field(min_length=1, description="platform:chat_id, platform:* or *")
    targets: list[str] | None = Field(None, min_length=1, description="keys of targets; the same as one level at 0")
    levels: list[LevelSettings] | None = Field(None, min_length=1, description="[{targets, after_min}, ...]")

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        return [_check_source(source) for source in value]

    @model_validator(mode="after")
    def _targets_or_levels(self) -> RouteSettings:
        if (self.targets is None) == (self.levels is None):
            raise ValueError("give a route either targets or levels (levels: [{targets: [...], after_min: 0}, ...])")
        return self

    @property
    def steps(self) -> list[LevelSettings]:
        """The route's levels; ``targets`` alone is one level at 0."""
        return self.levels if self.levels is not None else [LevelSettings(targets=self.targets)]


#: The share of flagged notes that should be right, unless calibration is asked another (bot_bridge/acting/calibration.py).
DEFAULT_PRECISION = 0.8


class EscalationSettings(_Section):
    sweep_interval_min: float = Field(5.0, gt=0, description="new cases go out together this often")
    default_rule: EscalationRule = Field(
        default_factory=lambda: EscalationRule(thresholds={"angry": 0.5}),
        description="emotion -> score at or above which a note is a case; keywords; match any or all",
    )
    rules: PerChat[EscalationRule] = Field(
        default_factory=dict,
        description="per source chat 'platform:chat_id', 'platform:*' or '*' (the most precise one applies), "
        "instead of the default rule",
    )
    immediate: dict[str, float] = Field(
        default_factory=dict, description="a case scoring this high goes out within immediate_check_s; empty: off"
    )
    immediate_check_s: float = Field(30.0, gt=0)
    max_age_h: float = Field(24.0, gt=0, description="a note analysed longer ago than this is not escalated")
    max_attempts: int = Field(12, ge=1, description="tries per case and target before giving up")
    group_window_min: float = Field(
        30.0, gt=0, description="a note from the same chat and sender within this many minutes of the case's last "
        "note joins that case (docs/cases.md)"
    )

    @field_validator("immediate")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_thresholds(value)


class DigestTargetSettings(_Section):
    at: time = Field(time(18, 0), description="local time (the target's timezone) the digest goes out")


class DigestSettings(_Section):
    targets: dict[str, DigestTargetSettings] = Field(default_factory=dict, description="keys of targets")
    skip_empty: bool = True
    grace_period_h: float = Field(6.0, description="a digest missed while down is sent this late at most")

    @field_validator("grace_period_h")
    @classmethod
    def _grace_covers_a_check(cls, value: float) -> float:
        if value * 60 < DIGEST_CHECK_MINUTES:
            raise ValueError(f"{value} h is shorter than the {DIGEST_CHECK_MINUTES} minute between checks for due "
                             "digests, so none would go out; a few hours is usual")
        return value


class ChatRetentionSettings(_Section):
    audio_days: float | None = Field(None, gt=0, description="kept recordings of these chats: stricter than the "
                                     "deployment's rule, never laxer")
    results_days: float | None = Field(None, gt=0, description="results, transcripts, notes of these chats")


class RetentionSettings(_Section):
    """How long people's data is kept (docs/retention-and-deletion.md); empty keeps it for ever."""

    audio_days: float | None = Field(None, gt=0, description="kept recordings and their playable copies")
    results_days: float | None = Field(None, gt=0, description="results, transcripts, embeddings, output folders, "
                                       "chat voice notes")
    chats: PerChat[ChatRetentionSettings] = Field(
        default_factory=dict, description="stricter rules by source: platform:chat_id, platform:* or *")
    sweep_interval_h: float = Field(24.0, gt=0, description="how often the sweep deletes what is due")
    batch: int = Field(200, ge=1, description="results and notes deleted per transaction")


class Settings(_Section):
    data_dir: Path = Path("var")
    database_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    server: ServerSettings = Field(default_factory=ServerSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    transcribe: TranscribeSettings = Field(default_factory=TranscribeSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    reply: ReplySettings = Field(default_factory=ReplySettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    platforms: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per chat platform, the settings its adapter reads (see adapters/)",
    )
    # escalations and daily digests (section above)
    public_url: str | None = Field(None, description="where people open the console, for links in alerts")
    targets: dict[str, TargetSettings] = Field(default_factory=dict)
    routes: list[RouteSettings] = Field(default_factory=list)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// address, such as https://bot-bridge.example.com")
        return value.rstrip("/") if value else None

    @field_validator("routes")
    @classmethod
    def _routes_name_targets(cls, routes: list[RouteSettings], info: ValidationInfo) -> list[RouteSettings]:
        for number, route in enumerate(routes):
            for level, step in enumerate(route.steps):
                where = f"routes[{number}].targets" if route.levels is None else f"routes[{number}].levels[{level}]"
                _check_target_names(where, step.targets, info)
        return routes

    @field_validator("digest")
    @classmethod
    def _digests_name_targets(cls, digest: DigestSettings, info: ValidationInfo) -> DigestSettings:
        _check_target_names("digest.targets", digest.targets, info)
        return digest

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value if value.is_absolute() else (Path.cwd() / value)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'bot-bridge.db'}"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"


def _check_target_names(where: str, names, info: ValidationInfo) -> None:
    known = info.data.get("targets") or {}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"{where} names {', '.join(map(repr, unknown))}, not one of targets: {', '.join(known) or '(none)'}"
        )


# Environment variable -> (setting path, how to parse the string)
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "BOT_BRIDGE_DATA_DIR": ("data_dir",),
    "BOT_BRIDGE_DATABASE_URL": ("database_url",),
    "BOT_BRIDGE_LOG_LEVEL": ("log_level",),
    "BOT_BRIDGE_HOST": ("server", "host"),
    "BOT_BRIDGE_PORT": ("server", "port"),
    "BOT_BRIDGE_ROLE": ("server", "role"),
    "BOT_BRIDGE_PROCESSES": ("server", "processes"),
    "BOT_BRIDGE_MODEL": ("model", "name"),
    "BOT_BRIDGE_HUB": ("model", "hub"),
    "BOT_BRIDGE_DEVICE": ("model", "device"),
    "BOT_BRIDGE_THREADS": ("model", "threads"),
    "BOT_BRIDGE_MODE": ("model", "mode"),
    "BOT_BRIDGE_TRANSCRIBE_MODEL": ("transcribe", "model"),
    "BOT_BRIDGE_MAX_BYTES": ("audio", "max_bytes"),
    "BOT_BRIDGE_MAX_DURATION_S": ("audio", "max_duration_s"),
    "BOT_BRIDGE_API_TOKEN": ("api", "token"),
    "BOT_BRIDGE_CONSOLE_PASSWORD": ("console", "password"),
    "BOT_BRIDGE_SECRET_KEY": ("console", "secret_key"),
    "BOT_BRIDGE_CONSOLE_TIMEZONE": ("console", "timezone"),
    "BOT_BRIDGE_TRUSTED_PROXIES": ("console", "trusted_proxies"),
    "BOT_BRIDGE_SSO_DISCOVERY_URL": ("console", "sso", "discovery_url"),
    "BOT_BRIDGE_SSO_CLIENT_ID": ("console", "sso", "client_id"),
    "BOT_BRIDGE_SSO_CLIENT_SECRET": ("console", "sso", "client_secret"),
    "BOT_BRIDGE_QUEUE_URL": ("queue", "url"),
    "BOT_BRIDGE_QUEUE_NAME": ("queue", "name"),
    "BOT_BRIDGE_WORKER_THREADS": ("queue", "worker_threads"),
    "BOT_BRIDGE_REPLY_LANGUAGE": ("reply", "language"),
    "BOT_BRIDGE_PUBLIC_URL": ("public_url",),
}


def load_settings(
    config_file: str | os.PathLike | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read the YAML file, apply the environment and ``overrides`` (dotted keys), validate.

    ``overrides`` use ``__`` for nesting: ``load_settings(model__name="/models/x")``.
    """
    environ = os.environ if environ is None else environ
    path = Path(config_file or environ.get("BOT_BRIDGE_CONFIG") or DEFAULT_CONFIG_FILE)
    data = _read_yaml(path) if path.exists() else {}
    if config_file and not path.exists():
        raise ConfigError(f"config file {path} does not exist")

    origin: dict[tuple[str, ...], str] = {}
    for variable, setting in ENVIRONMENT.items():
        if environ.get(variable, "") != "":
            _set(data, setting, environ[variable])
            origin[setting] = variable
    for dotted, value in overrides.items():
        _set(data, tuple(dotted.split("__")), value)
    _apply_platform_environment(data, environ)
    _check_platforms(data.get("platforms") or {}, path)

    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, path, origin)) from None


def _apply_platform_environment(data: dict, environ: dict[str, str]) -> None:
    """Conventional platform variables (``TELEGRAM_BOT_TOKEN``...) fill ``platforms.<name>``.

    Each adapter declares the variables it reads, so a new platform brings its
    own without this module knowing about it.
    """
    from adapters import environment_variables

    for platform, variables in environment_variables().items():
        for key, variable in variables.items():
            if environ.get(variable, "") != "":
                data.setdefault("platforms", {}).setdefault(platform, {})[key] = environ[variable]


def _check_platforms(platforms: dict, path: Path) -> None:
    """``platforms.<name>.<key>`` must name a chat adapter and one of its settings.

    The section is a free-form mapping for the settings model (each adapter
    owns its keys), so misspellings are caught here instead.
    """
    from adapters import environment_variables

    known = environment_variables()
    for platform, values in platforms.items():
        if platform not in known:
            raise ConfigError(
                f"invalid settings:\n  setting platforms.{platform} (in {path}): unknown platform; "
                f"known: {', '.join(sorted(known))}"
            )
        for key in values or {}:
            if key not in known[platform]:
                raise ConfigError(
                    f"invalid settings:\n  setting platforms.{platform}.{key} (in {path}): unknown setting; "
                    f"known: {', '.join(sorted(known[platform]))}"
                )


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(loaded).__name__}")
    return loaded


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def _describe(error: ValidationError, path: Path, origin: dict[tuple[str, ...], str]) -> str:
    lines = []
    for problem in error.errors():
        location = tuple(str(part) for part in problem["loc"])
        where = origin.get(location)
        source = f" (from environment variable {where})" if where else f" (in {path})"
        message = "unknown setting" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"setting {'.'.join(location)}{source}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)
