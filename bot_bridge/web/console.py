"""The web console: the drag-and-drop analysis page and the operations views.

Everything here is behind a sign-in with a named account whose role each
view checks (``console_access.py``, ``remembering/accounts.py``). The first
start with no account makes the ``admin`` account from the shared password of
earlier versions: ``console.password``, or one generated once and kept in
``<data_dir>/console-password`` (mode 0600) so every process and restart
shares it. The session cookie is signed with ``console.secret_key`` (or a key
kept the same way in ``<data_dir>/console-secret-key``) and carries a token
of a session kept in the database.

The console's JavaScript never calls ``/api/*`` and never sees the API
token. It calls the console's own routes (``POST /analyse``, which starts an
analysis the page then follows, ``console_jobs.py``; ``/results/<id>/...``),
which need a signed-in session and, for POST, the session's CSRF token in a
header; they read the request and the results as ``/api/*`` does. So ``/api/*`` keeps bearer-token-only authentication (a cookie
there would make it forgeable from other sites), and the token stays on the
server.

Behind a reverse proxy, ``console.trusted_proxies`` says how many proxies'
``X-Forwarded-For``/``-Proto`` to believe (``create_app`` applies Werkzeug's
``ProxyFix``), so the login throttle counts each person's own address.
Times are shown in ``console.timezone``, with the zone said.

The escalation and digest pages read ``bot_bridge.remembering.case_store`` and
``bot_bridge.acting.digest`` through the functions at the end of this module, whose
data classes are all their templates render; the Cases pages are ``console_cases``.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    session,
    url_for,
)

from adapters import adapter_classes

from ..acting.alerting import Target, build_targets, local_time, source_line
from ..acting.calibration import MIN_EACH, MIN_LABELS, calibrate
from ..acting.calibration_chart import calibration_chart
from ..acting.digest import Digests
from ..acting.reply_modes import chat_mode
from ..config import DEFAULT_PRECISION, Settings
from ..emotions import BY_KEY, EMOTIONS
from ..errors import BotBridgeError
from ..hearing.model_files import has_random_weights
from ..hearing.playable import PLAYABLE_FILE, PLAYABLE_MIMETYPE
from ..remembering import first_password
from ..remembering.accounts import Accounts
from ..remembering.case_store import CaseStore, DeliveryState
from ..remembering.labels import LabelError, Labels
from ..remembering.search import SearchIndex, query_words
from ..service import Service
from ..words import clip
from . import queries
from .api import analysis_request, get_audio, get_embedding, get_result, http_error, service
from .console_access import EVERYONE, allow, client_address, current_account, end_session, record, required_role
from .console_access import open_to_one_time_password, record_refused_sign_in, start_session
from .console_jobs import job_answer, start_analysis

log = logging.getLogger(__name__)

console = Blueprint("console", __name__)

FIRST_ADMIN = "admin"  # the account the shared password of earlier versions becomes
SECRET_KEY_FILE = "console-secret-key"
SESSION_LIFETIME = timedelta(hours=12)  # from signing in, however busy the session
LANGUAGES = ("both", "zh", "en")
LANGUAGE_COOKIE = "console_lang"
PAGE_SIZE = 50
LOGIN_ATTEMPTS = 10  # failed logins per address ...
LOGIN_WINDOW_S = 600  # ... within this many seconds, then refused until the window passes
LOGIN_ADDRESSES = 10_000  # addresses the throttle remembers at most
MAX_ROW_ID = 2**63 - 1  # the largest integer SQLite and PostgreSQL's bigint hold
# Days a digest can be previewed for: no note is older than the Unix epoch, and the last day stays a
# year clear of the end of Python's calendar (9999-12-31), past which the next-day link, the
# target's time zone (up to UTC+14) and the 24 h window around the day would overflow.
DIGEST_FIRST_DAY, DIGEST_LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)
SIMILAR_DEFAULT, SIMILAR_MAX = 8, 50  # "find similar": how many it lists, and the most ?limit= may ask for
SEARCH_KINDS = {"chat": ("聊天语音", "Chat voice notes"), "upload": ("上传", "Uploads")}
FIRST_WORDS = 80  # characters of a transcript a list shows

# A label the result page's own forms cannot send; a page from before a change, or a hand-made request.
LABEL_REFUSED = ("这条反馈无法记录：页面可能已过期，请刷新后重试。",
                 "This feedback cannot be recorded: the page may be out of date; reload it and try again.")
ROLE_REFUSED = ("您的账户角色无权打开此页面或执行此操作；需要时请联系管理员。",
                "Your account's role does not allow this page or action; ask an admin if you need it.")

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


def init_console(app: Flask, service: Service) -> None:
    """Register the console on ``app``: its blueprint, signed sessions, and the first admin account."""
    console_settings = service.settings.console
    data_dir = service.settings.data_dir
    first_admin(service)
    app.secret_key = console_settings.secret_key or persistent_secret(
        data_dir / SECRET_KEY_FILE, lambda: secrets.token_hex(32)
    )[0]
    app.config.update(
        SESSION_COOKIE_NAME="bot_bridge_console",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        # where people open the console over HTTPS, the browser never sends the cookie over plain HTTP
        SESSION_COOKIE_SECURE=(service.settings.public_url or "").startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.register_blueprint(console)


def first_admin(service: Service) -> None:
    """With no admin account yet, the shared console password (``console_credentials``) becomes the ``admin``
    account's, so a deployment upgraded from one shared password keeps working; the log says so."""
    accounts = Accounts(service.store)
    if accounts.has_admin():
        return
    credentials, generated = console_credentials(service.settings)
    if not accounts.add_first_admin(FIRST_ADMIN, credentials.password):
        return  # another process of the deployment made it a moment ago
    if generated:
        log.warning("no console.password is set: generated the password %s of the console's %r account, kept in "
                    "%s; add people's own accounts with `bot-bridge users add`", credentials.password, FIRST_ADMIN,
                    credentials.password_file)
    else:
        log.warning("console accounts: the shared console password (%s) is now the password of the admin account "
                    "%r; sign in with that name, and add people's own accounts with `bot-bridge users add`",
                    credentials.password_file or "console.password", FIRST_ADMIN)


def console_credentials(settings: Settings) -> tuple[ConsoleAuth, bool]:
    """The console's password: ``console.password``, or one generated once and kept in
    ``<data_dir>/console-password``; and whether it was generated just now."""
    if settings.console.password:
        return ConsoleAuth(settings.console.password, None), False
    path = first_password.path(settings)
    password, created = persistent_secret(path, lambda: secrets.token_urlsafe(12))
    return ConsoleAuth(password, path), created


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


def signed_in() -> bool:
    """Whether this request's session is one the database still has, of an enabled account, younger than
    ``SESSION_LIFETIME``: signing out (here or everywhere), disabling or resetting the account ends it."""
    return current_account() is not None


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


class LoginThrottle:
    """Counts failed logins per client address; ``attempts`` within ``window_s`` seconds are refused.

    The counts live in this process's memory: each process of a deployment
    counts its own, and a restart forgets them. That slows guessing down,
    which is its purpose; it is no record of who tried. At most ``addresses``
    are remembered: past that, those whose failures are all older than the
    window go first, then the longest quiet ones.
    """

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window_s: float = LOGIN_WINDOW_S,
                 addresses: int = LOGIN_ADDRESSES, clock=time.monotonic) -> None:
        self.attempts, self.window_s, self.addresses, self.clock = attempts, window_s, addresses, clock
        self._failures: dict[str, deque[float]] = {}  # the longest quiet address first
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            failures = self._failures.get(address)
            return failures is not None and len(failures) == self.attempts and self._recent(failures[0])

    def failed(self, address: str) -> None:
        with self._lock:
            failures = self._failures.pop(address, None) or deque(maxlen=self.attempts)
            if len(self._failures) >= self.addresses:
                self._failures = {key: times for key, times in self._failures.items() if self._recent(times[-1])}
                while len(self._failures) >= self.addresses:
                    del self._failures[next(iter(self._failures))]
            failures.append(self.clock())
            self._failures[address] = failures

    def _recent(self, moment: float) -> bool:
        return moment > self.clock() - self.window_s

    def __len__(self) -> int:
        return len(self._failures)


_throttle = LoginThrottle()
_DATA_ENDPOINTS: set[str] = set()  # routes the console's JavaScript calls: they answer JSON, never HTML


def data_route(rule: str, **options):
    """A route for the console's JavaScript: when signed out it answers 401 JSON, not the login page."""

    def register(view):
        _DATA_ENDPOINTS.add(f"console.{view.__name__}")
        return console.route(rule, **options)(view)

    return register


def json_error(status: int, code: str, message: str, message_zh: str):
    return jsonify(code=code, message=message, message_zh=message_zh), status


@console.before_request
def require_sign_in_and_csrf():
    """Every console page needs a signed-in session of a role its view allows (``console_access.allow``) and a
    password of the account's own choosing, not a one-time one; every POST needs the session's CSRF token (the
    other console blueprints apply it too)."""
    role = required_role(request.endpoint)
    if role != EVERYONE and not signed_in():
        if request.endpoint in _DATA_ENDPOINTS:
            return json_error(
                401, "signed_out", "Your console session has ended; please sign in again.", "登录已失效，请重新登录。"
            )
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    if role != EVERYONE and current_account().password_one_time and not open_to_one_time_password(request.endpoint):
        return _choose_password_first()
    if role is None or (role != EVERYONE and not current_account().may(role)):
        log.info("console: %s refused %s (needs %s)", current_account().name, request.endpoint, role or "a role mark")
        if request.endpoint in _DATA_ENDPOINTS:
            return json_error(403, "role_refused", "Your account's role does not allow this.", "您的账户角色无权执行此操作。")
        return render_template("bad_request.html", message=ROLE_REFUSED, back_url=url_for("console.analyse_page")), 403
    if request.method == "POST":
        supplied = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            if request.endpoint in _DATA_ENDPOINTS:
                return json_error(
                    403, "csrf_failed", "This page is out of date; reload it and try again.", "页面已过期，请刷新后重试。"
                )
            return render_template("login.html", problem="expired", next=safe_next()), 400
    return None


def _choose_password_first():
    """Where an account signed in with its one-time password goes: to choose its own, then on to the page asked
    for (a GET's); the console's JavaScript gets a 403 that says so."""
    if request.endpoint in _DATA_ENDPOINTS:
        return json_error(403, "password_not_chosen", "Choose your own password first, on the console's password page.",
                          "请先在控制台的密码页面设置您自己的密码。")
    asked = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("password.password_page", next=asked))


@console.after_request
def add_security_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@console.route("/login", methods=["GET", "POST"])
@allow(EVERYONE)
def login():
    """Sign in with an account's name (``admin`` when left empty, as the shared password's was) and password."""
    if request.method == "GET":
        return render_template("login.html", next=safe_next())
    address = client_address()
    if _throttle.blocked(address):
        return render_template("login.html", problem="throttled", next=safe_next()), 429
    name = request.form.get("username", "").strip().lower() or FIRST_ADMIN
    account = Accounts(service().store).check_password(name, request.form.get("password", ""))
    if account is None:
        _throttle.failed(address)
        record_refused_sign_in(name, "password")
        return render_template("login.html", problem="wrong_password", next=safe_next()), 401
    start_session(account, SESSION_LIFETIME)
    record("sign_in", f"user:{account.name}")
    return redirect(safe_next() or url_for("console.analyse_page"))


@console.post("/logout")
@allow("viewer", one_time_password=True)
def logout():
    record("sign_out", f"user:{current_account().name}")
    end_session()
    return redirect(url_for("console.login", signed_out=1))


@console.post("/logout/everywhere")
@allow("viewer", one_time_password=True)
def logout_everywhere():
    """End every session of the signed-in account, in every browser (a lost laptop, a shared computer)."""
    name = current_account().name
    ended = Accounts(service().store).end_sessions(name)
    record("sign_out.everywhere", f"user:{name}", sessions_ended=ended)
    session.clear()
    return redirect(url_for("console.login", signed_out=1))


def safe_next() -> str | None:
    """The page to return to after signing in, if it is a path on this site.

    Browsers drop tabs and line breaks in URLs and read ``\\`` as ``/``, so
    ``/\\evil.example`` or ``/<tab>/evil.example`` would lead off site: any
    control character or backslash is refused, and so is anything with a
    scheme or a host, or not starting with one ``/``.
    """
    target = request.values.get("next", "")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target) or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


# --------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------


@console.get("/")
@allow("viewer")
def analyse_page():
    audio = service().settings.audio
    return render_template("analyse.html", max_bytes=audio.max_bytes, max_duration_s=audio.max_duration_s)


@console.get("/voice-notes")
@allow("viewer")
def voice_notes_page():
    platform = request.args.get("platform") or None
    chat = request.args.get("chat") or None
    chat_platform, _, chat_id = (chat or "").partition(":")
    emotion = request.args.get("emotion") if request.args.get("emotion") in BY_KEY else None
    before = request.args.get("before") or None
    if before is not None and not _is_row_id(before):
        return _bad_request(("没有这一页语音消息。", "No such page of voice notes."), "console.voice_notes_page")
    rows = queries.voice_notes(
        service().store,
        platform=platform or (chat_platform if chat else None),
        chat_id=chat_id or None,
        emotion=emotion,
        before_id=None if before is None else int(before),
        limit=PAGE_SIZE + 1,
    )
    chats = queries.chats(service().store)
    older_url = None
    if len(rows) > PAGE_SIZE:
        filters = {key: value for key, value in request.args.items() if key != "before" and value}
        older_url = url_for("console.voice_notes_page", **filters, before=rows[PAGE_SIZE - 1][0].id)
    adapters, reply = service().chat.adapters, service().settings.reply
    modes = {(note.platform, note.chat_id): chat_mode(reply, adapters.get(note.platform), note.platform, note.chat_id)
             for note, _ in rows}
    return render_template(
        "voice_notes.html",
        rows=rows[:PAGE_SIZE],
        modes=modes,
        chats=chats,
        platforms=sorted({platform for platform, _, _ in chats}),
        selected={"platform": platform, "chat": chat, "emotion": emotion},
        older_url=older_url,
        platforms_on=[f"{name} (/webhooks/{adapter.webhook_path})" for name, adapter in sorted(service().chat.adapters.items())],
        platform_setup=[(name, [cls.environment[key] for key in cls.missing_settings({})])
                        for name, cls in sorted(adapter_classes().items())],
    )


@console.route("/search", methods=["GET", "POST"])
@allow("viewer")
def search_page():
    """Voice notes and uploads whose transcripts say every word asked for, newest first (``remembering/search.py``).

    The words come in a POST body, not the address: no access log, proxy log or browser history keeps them."""
    query = request.form.get("q", "").strip()
    kind = request.form.get("kind") if request.form.get("kind") in SEARCH_KINDS else None
    found = SearchIndex(service().store).search(query, kind=kind, limit=PAGE_SIZE + 1) if query else []
    return render_template("search.html", query=query, kind=kind, kinds=SEARCH_KINDS, found=found[:PAGE_SIZE],
                           more=len(found) > PAGE_SIZE, searched=bool(query_words(query)))


@console.get("/results/<result_id>")
@allow("viewer")
def result_page(result_id: str):
    row = service().store.result_row(result_id)
    if row is None:
        abort(404)
    record("result.view", f"result:{result_id}")  # who saw a person's words and recording
    escalation = escalated_case(service(), result_id)
    return render_template(
        "result.html",
        row=row,
        payload=row.payload,
        voice_note=queries.voice_notes_for_results(service().store, [result_id]).get(result_id),
        escalation=escalation,
        labelled_emotion=escalation.emotion if escalation else row.emotion,
        labels=Labels(service().store).history(result_id),
    )


@console.post("/results/<result_id>/label")
@allow("agent")
def label_result(result_id: str):
    """Feedback on a result: "Right", "Not <emotion>", or the right emotion picked (an agent's action).

    The form says which emotion the label is about (the one the page shows:
    the escalated emotion, else the model's) and the verdict, or the picked
    emotion (``correct``). Back to the result page, which shows the label.
    """
    if service().store.result_row(result_id) is None:
        abort(404)
    form = request.form
    correct = form.get("correct") or None
    try:
        Labels(service().store).record(
            result_id, emotion=form.get("emotion", ""), verdict=form.get("verdict", ""), correct=correct,
            actor=console_actor(), via="console",
        )
    except LabelError as error:
        log.info("console: a label on result %s was refused: %s", result_id, error)
        return _bad_request(LABEL_REFUSED, "console.result_page", result_id=result_id)
    return redirect(url_for("console.result_page", result_id=result_id, _anchor="feedback"), 303)


@console.get("/calibration")
@allow("viewer")
def calibration_page():
    emotion = request.args.get("emotion") if request.args.get("emotion") in BY_KEY else None
    target = _target_precision(request.args.get("precision"))
    if target is None:
        return _bad_request(("目标精确率应在 0 到 1 之间（例如 0.8）。", "The target precision is a number above 0, up "
                             "to 1 (such as 0.8)."), "console.calibration_page")
    calibrations = calibrate(service().store, service().settings.escalation, target=target, emotion=emotion)
    return render_template("calibration.html", target=target, emotion_filter=emotion,
                           calibrations=[(item, calibration_chart(item)) for item in calibrations],
                           min_labels=MIN_LABELS, min_each=MIN_EACH)


@console.get("/escalations")
@allow("viewer")
def escalations_page():
    state = request.args.get("state") if request.args.get("state") in ESCALATION_STATES else None
    settings = service().settings
    return render_template("escalations.html", cases=escalated_cases(service(), state=state), state=state,
                           configured=bool(settings.targets and settings.routes),
                           default_rule=rule_words(**settings.escalation.default_rule.model_dump()))


@console.get("/digest")
@allow("viewer")
def digest_page():
    today = datetime.now(console_zone()).date()
    asked = request.args.get("date")
    try:
        day = date.fromisoformat(asked) if asked else today
    except ValueError:
        return render_template("digest.html", day=today, preview=None, bad_date=asked, problem="not_a_date",
                               digest_times=digest_times(service().settings)), 400
    if not DIGEST_FIRST_DAY <= day <= DIGEST_LAST_DAY:
        return render_template("digest.html", day=today, preview=None, bad_date=asked, problem="out_of_range",
                               first_day=DIGEST_FIRST_DAY, last_day=DIGEST_LAST_DAY,
                               digest_times=digest_times(service().settings)), 400
    return render_template("digest.html", day=day, preview=digest_preview(service(), day), bad_date=None,
                           digest_times=digest_times(service().settings))


@console.app_errorhandler(404)
def _not_found(error):
    """Any address nobody serves: the console's own page for people; JSON under ``/api/``; bare for webhooks."""
    if request.path.startswith(("/api/", "/webhooks/")):
        return http_error(error)
    response = current_app.make_response((render_template("not_found.html"), 404))
    response.headers.update(SECURITY_HEADERS)
    return response


def console_actor() -> str:
    """Who acts in this session, as labels and the audit log name them: the signed-in account's name."""
    return current_account().name


def _target_precision(asked: str | None) -> float | None:
    """The calibration page's ``?precision=``: the default when absent, None when it is no share."""
    if not asked:
        return DEFAULT_PRECISION
    try:
        value = float(asked)
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


def _is_row_id(value: str) -> bool:
    """A database row id: digits, 1 to ``MAX_ROW_ID`` (SQLite cannot even compare a larger number)."""
    return value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ROW_ID


def _bad_request(message: tuple[str, str], back_endpoint: str, **back_values):
    """A request the console cannot answer as asked: the styled page, its words, and the way back (400)."""
    return render_template("bad_request.html", message=message, back_url=url_for(back_endpoint, **back_values)), 400


# --------------------------------------------------------------------------
# Data for the console's JavaScript: the API's own views, behind the sign-in
# --------------------------------------------------------------------------


@data_route("/analyse", methods=["POST"])
@allow("agent")
def analyse():
    """Start an analysis (202); the page follows it at the job's URL (``console_jobs.py``)."""
    job_id = start_analysis(service(), analysis_request())
    record("upload.analyse", f"job:{job_id}")  # not the file's name: it may name a customer
    return jsonify(id=job_id, url=url_for("console.analysis_job", job_id=job_id)), 202


@data_route("/analyse/<job_id>")
@allow("agent")
def analysis_job(job_id: str):
    answer = job_answer(service(), job_id)
    if answer is None:
        raise BotBridgeError("not_found", f"analysis job {job_id}")
    return jsonify(answer)


@data_route("/results/<result_id>/result.json")
@allow("viewer")
def result_json(result_id: str):
    response = get_result(result_id)
    record("result.download", f"result:{result_id}")
    response.headers["Content-Disposition"] = 'attachment; filename="result.json"'
    return response


@data_route("/results/<result_id>/embedding.npy")
@allow("viewer")
def result_embedding(result_id: str):
    return get_embedding(result_id)


@data_route("/results/<result_id>/audio")
@allow("viewer")
def result_audio(result_id: str):
    """The recording for the page's player: the copy browsers can play when the original is AMR or SILK."""
    playable = service().store.result_file(result_id, PLAYABLE_FILE)
    if playable is None:
        return get_audio(result_id)
    return send_file(playable, mimetype=PLAYABLE_MIMETYPE, download_name=PLAYABLE_FILE)


@data_route("/results/<result_id>/similar")
@allow("viewer")
def similar(result_id: str):
    store = service().store
    if store.result_row(result_id) is None:
        raise BotBridgeError("not_found", f"result {result_id}")
    limit = min(max(request.args.get("limit", SIMILAR_DEFAULT, type=int), 1), SIMILAR_MAX)
    matches = queries.similar_results(store, result_id, limit=limit)
    notes = queries.voice_notes_for_results(store, [row.id for row, _ in matches])
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
        "when": shown_time(row.created_at, console_zone()),
        "duration_s": row.duration_s,
        "source": _came_from(row, note),
    }


def _came_from(row, note) -> str:
    """``telegram · Support · Alice`` for a chat's voice note (as alerts say it), ``api · clip.wav`` for an upload."""
    return source_line(note) if note is not None else " · ".join(part for part in (row.origin, row.file_name) if part)


# --------------------------------------------------------------------------
# What every page shows
# --------------------------------------------------------------------------


def console_zone() -> ZoneInfo:
    return ZoneInfo(service().settings.console.timezone)


def shown_time(moment: datetime, zone: ZoneInfo) -> str:
    """``2025-03-04 17:30 UTC+8``: ``moment`` in ``zone``, saying which."""
    offset = int(moment.astimezone(zone).utcoffset().total_seconds()) // 60
    hours, minutes = divmod(abs(offset), 60)
    label = f"UTC{'+' if offset > 0 else '-'}{hours}{f':{minutes:02d}' if minutes else ''}" if offset else "UTC"
    return f"{local_time(moment, zone)} {label}"


@console.app_template_filter("local_time")
def _local_time(moment: datetime | None) -> str:
    return "" if moment is None else shown_time(moment, console_zone())


@console.app_template_filter("first_words")
def _first_words(row) -> str | None:
    """The start of a stored result's transcript, for lists; None when it has none."""
    transcript = row.transcript
    return clip(transcript.text, FIRST_WORDS) if transcript is not None and transcript.text.strip() else None


@console.app_template_filter("base64")
def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@console.app_context_processor  # app-wide: the not-found page renders outside the blueprint too
def _page_context() -> dict:
    state = service().model_state
    language = request.cookies.get(LANGUAGE_COOKIE)
    return {
        "csrf_token": csrf_token,
        "signed_in": signed_in(),
        "account": current_account(),
        "language": language if language in LANGUAGES else "both",
        "model_state": state,
        "random_weights": random_weights_in_use(service(), state),
        "emotion_list": [
            {**asdict(e), "image": url_for("static", filename=f"console/emoji/{e.key}.svg")} for e in EMOTIONS
        ],
        "emotion": BY_KEY,
        "password_file": (path := first_password.shown(service().settings)) and path.resolve(),
        "one_day": timedelta(days=1),
        "escalation_states": ESCALATION_STATES,
        "case_states": CASE_STATES,
        "time_zone": service().settings.console.timezone,
    }


def rule_words(thresholds: dict[str, float], keywords: list[str] = (), match: str | None = None) -> str:
    """``angry ≥ 0.50, fearful ≥ 0.60; keywords 退款, refund (match any)``: an escalation rule (or what of it a
    case met) as the console writes it."""
    words = ", ".join(f"{emotion} ≥ {threshold:.2f}" for emotion, threshold in thresholds.items())
    if keywords:
        words += f"{'; ' if words else ''}keywords {', '.join(keywords)}" + (f" (match {match})" if match else "")
    return words


def digest_times(settings: Settings) -> list[tuple[str, str, str]]:
    """Each digest target's name, local time and time zone, for the empty digest page."""
    return [(settings.targets[key].name or key, f"{digest.at:%H:%M}", settings.targets[key].timezone)
            for key, digest in settings.digest.targets.items()]


def random_weights_in_use(service: Service, state: dict) -> bool:
    """Whether the model this process serves has random weights, known before it finishes loading
    when it is a local directory (as ``make demo``'s is)."""
    if state["state"] == "ready":
        return bool(state.get("random_weights"))
    local = Path(service.settings.model.name).expanduser()
    return local.is_dir() and has_random_weights(local)


# --------------------------------------------------------------------------
# Escalations and daily digests
#
# The pages call only the three functions below: escalated_case and
# escalated_cases read the escalated notes and their cases' deliveries from
# bot_bridge.remembering.case_store, digest_preview composes a day's digests with
# bot_bridge.acting.digest without sending or recording anything. Their templates
# render only the data classes here.
# --------------------------------------------------------------------------

ESCALATION_STATES = {"pending": ("待发送", "pending"), "sent": ("已发送", "sent"), "failed": ("失败", "failed")}
#: How the console words each state of a case (bot_bridge.remembering.case_store.CaseState).
CASE_STATES = {"open": ("待处理", "open"), "acknowledged": ("已认领", "acknowledged"),
               "snoozed": ("已推迟", "snoozed"), "resolved": ("已解决", "resolved")}


@dataclass(frozen=True)
class TargetState:
    target: str  # how people name the target: "Slack #support", "WeCom robot 客服群"
    state: str  # a key of ESCALATION_STATES
    at: datetime | None = None  # when it was sent, or last tried
    detail: str | None = None  # why the last try failed, in words for an operator


@dataclass(frozen=True)
class EscalatedCase:
    """A matched note, with the state of its case's message at each target."""

    result_id: str
    emotion: str  # the emotion whose rule matched (key of EMOTIONS)
    score: float  # that emotion's score, 0..1
    rule: str  # the rule in words: "angry ≥ 0.50"
    source: str  # "telegram · Support group · Alice"
    matched_at: datetime
    targets: tuple[TargetState, ...]
    case_id: int
    case_state: str  # a key of case_store.CaseState, as CASE_STATES words it


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
    """The escalation of one result with its case's state per target; ``None``: not escalated."""
    found = _escalated(service, CaseStore(service.store).escalations(result_id=result_id, limit=1))
    return found[0] if found else None


def escalated_cases(service: Service, *, state: str | None = None, limit: int = 200) -> list[EscalatedCase]:
    """The newest escalations first; ``state`` keeps those whose case has a target in that state."""
    states = _DELIVERY_STATES[state] if state else None
    return _escalated(service, CaseStore(service.store).escalations(delivery_states=states, limit=limit))


def digest_preview(service: Service, day: date) -> DigestPreview | None:
    """The digests of ``day`` as each target would receive them; ``None``: none for that day."""
    digests = Digests(service.store, service.settings, _preview_targets(service))
    messages = []
    for target in digests.targets.values():
        preview = digests.preview(target, day) if target.sender is not None else None
        if preview is not None:
            texts, chart = preview  # the chart follows the last text, as when it is sent
            messages += [DigestMessage(target.name, text) for text in texts[:-1]]
            messages.append(DigestMessage(target.name, texts[-1], chart))
    return DigestPreview(day, tuple(messages)) if messages else None


_targets_lock = threading.Lock()


def _preview_targets(service: Service) -> dict[str, Target]:
    """The configured targets, built once per app rather than per page view.

    A preview shows each text as its sender would post it (split to the
    platform's limit, names escaped for its markup), so it needs the senders,
    though it never sends: the chat platforms' are the service's own
    adapters, and the alert-only ones (a WeCom robot) share one HTTP client.
    """
    extensions = current_app.extensions
    with _targets_lock:
        if "bot_bridge_alert_targets" not in extensions:
            extensions["bot_bridge_alert_targets"] = build_targets(service.settings, service.chat.adapters)
        return extensions["bot_bridge_alert_targets"]


# The console's states of a target, and the delivery states (bot_bridge.remembering.case_store) each covers.
_DELIVERY_STATES = {
    "pending": (DeliveryState.PENDING, DeliveryState.SENDING),
    "sent": (DeliveryState.SENT,),
    "failed": (DeliveryState.RETRYING, DeliveryState.GAVE_UP),
}


def _escalated(service: Service, escalations) -> list[EscalatedCase]:
    return [
        EscalatedCase(
            result_id=escalation.result_id,
            emotion=escalation.emotion,
            score=escalation.score,
            rule=rule_words({} if escalation.threshold is None else {escalation.emotion: escalation.threshold},
                            [escalation.keyword] if escalation.keyword else []) + (" ‼️" if escalation.severe else ""),
            source=source_line(note),
            matched_at=escalation.matched_at,
            targets=target_states(service.settings, deliveries),
            case_id=case.id,
            case_state=case.state,
        )
        for escalation, note, case, deliveries in escalations
    ]


def target_states(settings: Settings, deliveries) -> tuple[TargetState, ...]:
    """Each delivery of a case as the console words it, under its target's name."""
    names = {key: target.name or key for key, target in settings.targets.items()}
    return tuple(_target_state(names.get(row.target, row.target), row) for row in deliveries)


def _target_state(name: str, row) -> TargetState:
    state = next(console for console, covered in _DELIVERY_STATES.items() if row.state in covered)
    detail = row.last_error
    if row.state == DeliveryState.RETRYING:
        detail = f"try {row.attempts} failed, tried again at the next sweep: {row.last_error}"
    elif row.state == DeliveryState.GAVE_UP:
        detail = f"gave up after {row.attempts} tries: {row.last_error}"
    elif row.state == DeliveryState.SENT and row.maybe_sent:
        detail = "sent again after a restart while sending: may have arrived twice"
    elif row.state == DeliveryState.SENT and row.last_error:
        detail = f"its latest update failed, tried again at the next sweep: {row.last_error}"
    return TargetState(name, state, row.sent_at or row.updated_at, detail)
