"""The web console: the drag-and-drop analysis page and the operations views.

Everything here is behind a login. The password is ``console.password``;
without one, a password is generated once and kept in
``<data_dir>/console-password`` (mode 0600) so every process and restart
shares it. Sessions are cookies signed with ``console.secret_key`` (or a key
kept the same way in ``<data_dir>/console-secret-key``).

The console's JavaScript never calls ``/api/*`` and never sees the API
token. It calls the console's own routes (``POST /analyse``,
``/results/<id>/...``), which need a signed-in session and, for POST, the
session's CSRF token in a header; they run the very same view functions as
``/api/*``. So ``/api/*`` keeps bearer-token-only authentication (a cookie
there would make it forgeable from other sites), and the token stays on the
server.

Escalations and digests (issue 4) reach the pages only through the three
hook functions at the end of this module.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from ..alert_store import AlertStore, DeliveryState
from ..alerting import build_targets, source_line
from ..digest import Digests
from ..emotions import BY_KEY, EMOTIONS
from ..errors import BotBridgeError
from ..model_files import has_random_weights
from ..service import Service
from .api import get_audio, get_embedding, get_result, predict

log = logging.getLogger(__name__)

console = Blueprint("console", __name__)

PASSWORD_FILE = "console-password"
SECRET_KEY_FILE = "console-secret-key"
SESSION_LIFETIME = timedelta(hours=12)
LANGUAGES = ("both", "zh", "en")
LANGUAGE_COOKIE = "console_lang"
PAGE_SIZE = 50
LOGIN_ATTEMPTS = 10  # failed logins per address ...
LOGIN_WINDOW_S = 600  # ... within this many seconds, then refused until the window passes

# Content Security Policy: nothing but this server; blob: for the browser's own copy of an upload.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # signed-in pages and recordings stay out of shared caches
}


# --------------------------------------------------------------------------
# Setup, credentials and sign-in
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleAuth:
    password: str
    password_file: Path | None  # where a generated password is kept; None when configured

    def accepts(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.password.encode())

    def session_mark(self, secret_key: str) -> str:
        """What a signed-in session carries: changing the password signs every session out."""
        return hmac.new(secret_key.encode(), self.password.encode(), "sha256").hexdigest()[:32]


def init_console(app: Flask, service: Service) -> None:
    """Register the console on ``app``: its blueprint, signed sessions, and the password."""
    console_settings = service.settings.console
    data_dir = service.settings.data_dir
    if console_settings.password:
        console_auth = ConsoleAuth(console_settings.password, None)
    else:
        path = data_dir / PASSWORD_FILE
        password, created = persistent_secret(path, lambda: secrets.token_urlsafe(12))
        console_auth = ConsoleAuth(password, path)
        if created:
            log.warning(
                "no console.password is set: generated the web console password %s, kept in %s "
                "(set console.password or BOT_BRIDGE_CONSOLE_PASSWORD to choose one)",
                password,
                path,
            )
        else:
            log.info("web console password: the generated one kept in %s", path)
    app.secret_key = console_settings.secret_key or persistent_secret(
        data_dir / SECRET_KEY_FILE, lambda: secrets.token_hex(32)
    )[0]
    app.config.update(
        SESSION_COOKIE_NAME="bot_bridge_console",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.extensions["bot_bridge_console"] = console_auth
    app.register_blueprint(console)


def persistent_secret(path: Path, generate) -> tuple[str, bool]:
    """The secret kept in ``path``, generated and written (mode 0600) if absent; ``(secret, created)``.

    Several processes may start at once: the file appears atomically (a hard
    link of a complete temporary file), and the losers read the winner's.
    """
    if path.exists():
        return path.read_text(encoding="utf-8").strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(generate() + "\n")
    try:
        os.link(temporary, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        temporary.unlink()
    return path.read_text(encoding="utf-8").strip(), created


def service() -> Service:
    return current_app.extensions["bot_bridge"]


def auth() -> ConsoleAuth:
    return current_app.extensions["bot_bridge_console"]


def signed_in() -> bool:
    mark = session.get("signed_in")
    return bool(mark) and hmac.compare_digest(mark, auth().session_mark(current_app.secret_key))


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


class _LoginThrottle:
    """Counts failed logins per client address; too many within the window are refused."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            failures = self._failures.get(address)
            if not failures:
                return False
            while failures and failures[0] < time.monotonic() - LOGIN_WINDOW_S:
                failures.popleft()
            if not failures:
                del self._failures[address]
            return len(failures) >= LOGIN_ATTEMPTS

    def failed(self, address: str) -> None:
        with self._lock:
            self._failures[address].append(time.monotonic())


_throttle = _LoginThrottle()
_DATA_ENDPOINTS: set[str] = set()  # routes the console's JavaScript calls: they answer JSON, never HTML
_OPEN_ENDPOINTS = {"console.login"}


def data_route(rule: str, **options):
    """A route for the console's JavaScript: when signed out it answers 401 JSON, not the login page."""

    def register(view):
        _DATA_ENDPOINTS.add(f"console.{view.__name__}")
        return console.route(rule, **options)(view)

    return register


def json_error(status: int, code: str, message: str, message_zh: str):
    return jsonify(code=code, message=message, message_zh=message_zh), status


@console.before_request
def _require_sign_in_and_csrf():
    if request.endpoint not in _OPEN_ENDPOINTS and not signed_in():
        if request.endpoint in _DATA_ENDPOINTS:
            return json_error(
                401, "signed_out", "Your console session has ended; please sign in again.", "登录已失效，请重新登录。"
            )
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        supplied = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            if request.endpoint in _DATA_ENDPOINTS:
                return json_error(
                    403, "csrf_failed", "This page is out of date; reload it and try again.", "页面已过期，请刷新后重试。"
                )
            return render_template("login.html", problem="expired", next=_safe_next()), 400
    return None


@console.after_request
def _security_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@console.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", next=_safe_next())
    address = request.remote_addr or "unknown"
    if _throttle.blocked(address):
        return render_template("login.html", problem="throttled", next=_safe_next()), 429
    if not auth().accepts(request.form.get("password", "")):
        _throttle.failed(address)
        return render_template("login.html", problem="wrong_password", next=_safe_next()), 401
    session.clear()  # a fresh session (and CSRF token) for the signed-in person
    session.permanent = True
    session["signed_in"] = auth().session_mark(current_app.secret_key)
    return redirect(_safe_next() or url_for("console.analyse_page"))


@console.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("console.login", signed_out=1))


def _safe_next() -> str | None:
    """The page to return to after signing in, if it is a path on this site."""
    target = request.values.get("next", "")
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return None


# --------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------


@console.get("/")
def analyse_page():
    audio = service().settings.audio
    return render_template("analyse.html", max_bytes=audio.max_bytes, max_duration_s=audio.max_duration_s)


@console.get("/voice-notes")
def voice_notes_page():
    platform = request.args.get("platform") or None
    chat = request.args.get("chat") or None
    chat_platform, _, chat_id = (chat or "").partition(":")
    emotion = request.args.get("emotion") if request.args.get("emotion") in BY_KEY else None
    before = request.args.get("before", type=int)
    rows = service().store.console_voice_notes(
        platform=platform or (chat_platform if chat else None),
        chat_id=chat_id or None,
        emotion=emotion,
        before_id=before,
        limit=PAGE_SIZE + 1,
    )
    chats = service().store.console_chats()
    older_url = None
    if len(rows) > PAGE_SIZE:
        filters = {key: value for key, value in request.args.items() if key != "before" and value}
        older_url = url_for("console.voice_notes_page", **filters, before=rows[PAGE_SIZE - 1][0].id)
    return render_template(
        "voice_notes.html",
        rows=rows[:PAGE_SIZE],
        chats=chats,
        platforms=sorted({platform for platform, _, _ in chats}),
        selected={"platform": platform, "chat": chat, "emotion": emotion},
        older_url=older_url,
    )


@console.get("/results/<result_id>")
def result_page(result_id: str):
    row = service().store.result_row(result_id)
    if row is None:
        abort(404)
    return render_template(
        "result.html",
        row=row,
        payload=row.payload,
        voice_note=service().store.voice_notes_for_results([result_id]).get(result_id),
        escalation=escalated_case(service(), result_id),
    )


@console.get("/escalations")
def escalations_page():
    state = request.args.get("state") if request.args.get("state") in ESCALATION_STATES else None
    return render_template("escalations.html", cases=escalated_cases(service(), state=state), state=state)


@console.get("/digest")
def digest_page():
    try:
        day = date.fromisoformat(request.args["date"]) if request.args.get("date") else date.today()
    except ValueError:
        return render_template("digest.html", day=date.today(), preview=None, bad_date=request.args["date"]), 400
    return render_template("digest.html", day=day, preview=digest_preview(service(), day), bad_date=None)


@console.errorhandler(404)
def _not_found(_error):
    return render_template("not_found.html"), 404


# --------------------------------------------------------------------------
# Data for the console's JavaScript: the API's own views, behind the sign-in
# --------------------------------------------------------------------------


@data_route("/analyse", methods=["POST"])
def analyse():
    return predict()


@data_route("/results/<result_id>/result.json")
def result_json(result_id: str):
    response = get_result(result_id)
    response.headers["Content-Disposition"] = 'attachment; filename="result.json"'
    return response


@data_route("/results/<result_id>/embedding.npy")
def result_embedding(result_id: str):
    return get_embedding(result_id)


@data_route("/results/<result_id>/audio")
def result_audio(result_id: str):
    return get_audio(result_id)


@data_route("/results/<result_id>/similar")
def similar(result_id: str):
    store = service().store
    if store.result_row(result_id) is None:
        raise BotBridgeError("not_found", f"result {result_id}")
    matches = store.similar_results(result_id, limit=request.args.get("limit", 8, type=int))
    notes = store.voice_notes_for_results([row.id for row, _ in matches])
    return jsonify(
        result_id=result_id,
        items=[_similar_item(row, similarity, notes.get(row.id)) for row, similarity in matches],
    )


def _similar_item(row, similarity: float, note) -> dict:
    emotion = BY_KEY[row.emotion]
    return {
        "id": row.id,
        "url": url_for("console.result_page", result_id=row.id),
        "similarity": round(similarity, 4),
        "emotion": row.emotion,
        "emoji": emotion.emoji,
        "label_zh": emotion.zh,
        "label_en": emotion.en,
        "confidence": round(row.confidence, 4),
        "created_at": row.created_at.isoformat(timespec="seconds"),
        "duration_s": row.duration_s,
        "source": _source_line(row, note),
    }


def _source_line(row, note) -> str:
    """Where a result came from, in one line: ``telegram · Support · Alice`` or the uploaded file's name."""
    if note is not None:
        return " · ".join(part for part in (note.platform, note.chat_name or note.chat_id, note.sender_name) if part)
    return " · ".join(part for part in (row.origin, row.file_name) if part)


# --------------------------------------------------------------------------
# What every page shows
# --------------------------------------------------------------------------


@console.app_template_filter("local_time")
def _local_time(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M")


@console.app_template_filter("base64")
def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@console.context_processor
def _page_context() -> dict:
    state = service().model_state
    language = request.cookies.get(LANGUAGE_COOKIE)
    return {
        "csrf_token": csrf_token,
        "signed_in": signed_in(),
        "language": language if language in LANGUAGES else "both",
        "model_state": state,
        "random_weights": random_weights_in_use(service(), state),
        "emotion_list": [asdict(e) for e in EMOTIONS],
        "emotion": BY_KEY,
        "password_file": auth().password_file and auth().password_file.name,
        "one_day": timedelta(days=1),
        "escalation_states": ESCALATION_STATES,
        "source_line": _source_line,
    }


def random_weights_in_use(service: Service, state: dict) -> bool:
    """Whether the model this process serves has random weights, known before it finishes loading
    when it is a local directory (as ``make demo``'s is)."""
    if state["state"] == "ready":
        return bool(state.get("random_weights"))
    local = Path(service.settings.model.name).expanduser()
    return local.is_dir() and has_random_weights(local)


# --------------------------------------------------------------------------
# Hooks for issue 4 (escalations and daily digests)
#
# The pages call only these three functions, and their templates only
# render what the functions return. Until the escalation tables exist they
# return nothing, which the pages show as "not escalated" / an empty list /
# "no digest". Wiring issue 4 means replacing the three bodies; the data
# classes below are the contract with the templates.
# --------------------------------------------------------------------------

ESCALATION_STATES = {"pending": ("待发送", "pending"), "sent": ("已发送", "sent"), "failed": ("失败", "failed")}


@dataclass(frozen=True)
class TargetState:
    target: str  # how people name the target: "Slack #support", "WeCom robot 客服群"
    state: str  # a key of ESCALATION_STATES
    at: datetime | None = None  # when it was sent, or last tried
    detail: str | None = None  # why the last try failed, in words for an operator


@dataclass(frozen=True)
class EscalatedCase:
    result_id: str
    emotion: str  # the emotion whose rule matched (key of EMOTIONS)
    score: float  # that emotion's score, 0..1
    rule: str  # the rule in words: "angry ≥ 0.50"
    source: str  # "telegram · Support group · Alice"
    matched_at: datetime
    targets: tuple[TargetState, ...]


@dataclass(frozen=True)
class DigestMessage:
    target: str
    text: str  # the digest exactly as the target would receive it
    chart_png: bytes | None = None


@dataclass(frozen=True)
class DigestPreview:
    day: date
    messages: tuple[DigestMessage, ...]


def escalated_case(service: Service, result_id: str) -> EscalatedCase | None:
    """The escalation of one result with its state per target; ``None``: not escalated."""
    found = _escalated(service, AlertStore(service.store).cases(result_id=result_id, limit=1))
    return found[0] if found else None


def escalated_cases(service: Service, *, state: str | None = None, limit: int = 200) -> list[EscalatedCase]:
    """The newest escalations first; ``state`` keeps the cases with a target in that state."""
    states = _DELIVERY_STATES[state] if state else None
    return _escalated(service, AlertStore(service.store).cases(states=states, limit=limit))


def digest_preview(service: Service, day: date) -> DigestPreview | None:
    """The digests of ``day`` as each target would receive them; ``None``: none for that day."""
    targets = build_targets(service.settings, service.chat.adapters)
    digests = Digests(service.store, service.settings, targets)
    messages = []
    for target in digests.targets.values():
        preview = digests.preview(target, day) if target.sender is not None else None
        if preview is not None:
            texts, chart = preview  # the chart follows the last text, as when it is sent
            messages += [DigestMessage(target.name, text) for text in texts[:-1]]
            messages.append(DigestMessage(target.name, texts[-1], chart))
    return DigestPreview(day, tuple(messages)) if messages else None


# The console's states of a target, and the delivery states (bot_bridge.alert_store) each covers.
_DELIVERY_STATES = {
    "pending": (DeliveryState.PENDING, DeliveryState.SENDING),
    "sent": (DeliveryState.SENT,),
    "failed": (DeliveryState.RETRYING, DeliveryState.GAVE_UP),
}


def _escalated(service: Service, cases) -> list[EscalatedCase]:
    names = {key: target.name or key for key, target in service.settings.targets.items()}
    return [
        EscalatedCase(
            result_id=case.result_id,
            emotion=case.emotion,
            score=case.score,
            rule=f"{case.emotion} ≥ {case.threshold:.2f}" + (" ‼️" if case.severe else ""),
            source=source_line(note),
            matched_at=case.matched_at,
            targets=tuple(_target_state(names.get(row.target, row.target), row) for row in deliveries),
        )
        for case, note, deliveries in cases
    ]


def _target_state(name: str, row) -> TargetState:
    state = next(console for console, covered in _DELIVERY_STATES.items() if row.state in covered)
    detail = row.last_error
    if row.state == DeliveryState.RETRYING:
        detail = f"try {row.attempts} failed, tried again at the next sweep: {row.last_error}"
    elif row.state == DeliveryState.GAVE_UP:
        detail = f"gave up after {row.attempts} tries: {row.last_error}"
    elif row.state == DeliveryState.SENT and row.maybe_sent:
        detail = "sent again after a restart while sending: may have arrived twice"
    return TargetState(name, state, row.sent_at or row.updated_at, detail)
