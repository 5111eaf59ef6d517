"""Each person's own console password, on SQLite and PostgreSQL: a generated password (``bot-bridge users add``,
``reset``, the Accounts page) is one-time, and signing in with it leads only to choosing one's own; any password
account changes its password with the current one, refused when too easy or wrong (throttled), ending its other
sessions and leaving an audit entry; SSO accounts have none; the upgrade's first admin is not one-time, and when
admin chooses its own the generated password's file goes."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from bot_bridge.cli import cli
from bot_bridge.remembering import first_password
from bot_bridge.remembering.accounts import Accounts
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.store import Store, migrate
from bot_bridge.web import console as console_module
from bot_bridge.web import console_password, create_app
from bot_bridge.web.console_access import TOKEN_KEY
from tests.console_helpers import csrf_from, page_token, sign_in
from tests.test_accounts import app, settings  # noqa: F401 - the accounts tests' fixtures: both databases

PAGE = "/account/password"
OWN = "a password of my own"
AGENT_PASSWORD = "agent password 123"


@pytest.fixture(autouse=True)
def fresh_throttles(monkeypatch):
    """This module's wrong passwords count towards no other test's throttle."""
    monkeypatch.setattr(console_module, "_throttle", console_module.LoginThrottle())
    monkeypatch.setattr(console_password, "_throttle", console_module.LoginThrottle())


def users(settings, tmp_path, *arguments):
    """``bot-bridge users ...`` on this test's database; its output."""
    config = tmp_path / "none.yaml"
    config.write_text("{}\n")
    env = {"BOT_BRIDGE_DATA_DIR": str(settings.data_dir), "BOT_BRIDGE_DATABASE_URL": settings.resolved_database_url}
    answer = CliRunner().invoke(cli, ["--config", str(config), "users", *arguments], env=env)
    assert answer.exit_code == 0, answer.output
    return answer.output


def choose(client, current: str, new: str, again: str | None = None, next_page: str | None = None):
    """The password page's form, sent as the page sends it."""
    token = csrf_from(client.get(PAGE).get_data(as_text=True))
    form = {"current_password": current, "new_password": new, "new_password_again": new if again is None else again,
            "csrf_token": token, **({"next": next_page} if next_page else {})}
    return client.post(PAGE, data=form)


def agent(app, service, password: str = AGENT_PASSWORD):
    """A signed-in agent whose password is its own (given, not generated)."""
    Accounts(service.store).add("agent", "agent", actor="test", via="cli", password=password)
    client = app.test_client()
    assert sign_in(client, password, name="agent").status_code == 302
    return client


# --- a generated password is one-time ---


def test_a_users_add_account_may_only_choose_its_password_then_goes_on(settings, app, service, tmp_path):
    added = users(settings, tmp_path, "add", "alice", "--role", "agent")
    assert "one-time password" in added
    one_time = added.split()[-1]
    browser = app.test_client()
    assert sign_in(browser, one_time, name="alice").status_code == 302

    for page in ("/", "/voice-notes?platform=slack", "/cases", "/digest"):
        sent = browser.get(page)
        assert sent.status_code == 302 and sent.location.startswith(f"{PAGE}?next="), page
    choose_page = browser.get(browser.get("/voice-notes?platform=slack").location).get_data(as_text=True)
    assert "Choose your password" in choose_page and "选择您的密码" in choose_page
    assert 'class="main-nav"' not in choose_page, "nothing to go to before choosing"
    token = csrf_from(choose_page)
    for refused in (browser.get("/results/0123456789abcdef/similar"),
                    browser.post("/analyse", data={"origin": "console"}, headers={"X-CSRF-Token": token})):
        assert refused.status_code == 403
        assert refused.get_json()["code"] == "password_not_chosen" and refused.get_json()["message_zh"]
    acted = browser.post("/cases/1/act", data={"action": "acknowledge", "csrf_token": token})
    assert acted.status_code == 302 and acted.location == PAGE
    assert Accounts(service.store).get("alice").password_one_time

    chosen = choose(browser, one_time, OWN, next_page="/voice-notes?platform=slack")
    assert chosen.status_code == 302 and chosen.location == "/voice-notes?platform=slack"
    page = browser.get("/voice-notes?platform=slack")
    assert page.status_code == 200 and 'class="main-nav"' in page.get_data(as_text=True)
    assert browser.get("/results/0123456789abcdef/similar").status_code == 404

    assert sign_in(app.test_client(), one_time, name="alice").status_code == 401, "the one-time password is spent"
    later = app.test_client()
    assert sign_in(later, OWN, name="alice").status_code == 302 and later.get("/").status_code == 200


def test_a_reset_or_console_made_password_is_one_time_and_sign_out_stays_open(settings, app, service, tmp_path):
    agent(app, service)
    reset = users(settings, tmp_path, "reset", "agent")
    assert "one-time password" in reset
    browser = app.test_client()
    assert sign_in(browser, reset.split()[-1], name="agent").status_code == 302
    assert browser.get("/").location.startswith(PAGE)
    signed_out = browser.post("/logout", data={"csrf_token": csrf_from(browser.get(PAGE).get_data(as_text=True))})
    assert signed_out.status_code == 302 and signed_out.location.startswith("/login")

    admin = app.test_client()
    sign_in(admin)
    added = admin.post("/accounts", data={"name": "eve", "role": "viewer", "csrf_token": page_token(admin)})
    html = added.get_data(as_text=True)
    assert "one-time password" in html
    shown = re.search(r'id="one-time-password">.*?<code>([^<]+)</code>', html, re.S).group(1)
    eve = app.test_client()
    assert sign_in(eve, shown, name="eve").status_code == 302 and eve.get("/").location.startswith(PAGE)


def test_the_first_admin_of_the_upgrade_is_not_one_time(settings, app, service):
    """The shared password's account, and every account from before this version, sign in and go on as before."""
    browser = app.test_client()
    assert sign_in(browser).status_code == 302 and browser.get("/").status_code == 200
    assert not Accounts(service.store).get("admin").password_one_time


def test_accounts_from_before_one_time_passwords_keep_theirs(database_url, tmp_path):
    engine = create_engine(database_url)
    migrate(engine, "0014")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO accounts (name, role, password_hash, enabled, created_at) "
                                "VALUES ('bob', 'agent', 'h', true, '2026-01-01 00:00:00')"))
    migrate(engine, "head")
    engine.dispose()
    store = Store(database_url, tmp_path / "outputs")
    assert not Accounts(store).get("bob").password_one_time
    store.close()


# --- changing one's own password ---


def test_changing_the_password_ends_the_accounts_other_sessions_only(app, service):
    laptop, phone = agent(app, service), app.test_client()
    sign_in(phone, AGENT_PASSWORD, name="agent")
    viewer = app.test_client()
    sign_in(viewer)
    assert 'id="password-link"' in laptop.get("/").get_data(as_text=True)

    changed = choose(laptop, AGENT_PASSWORD, OWN)
    assert changed.status_code == 302 and changed.location == f"{PAGE}?changed=1"
    assert "Your password has been changed" in laptop.get(changed.location).get_data(as_text=True)
    assert laptop.get("/").status_code == 200, "this browser stays signed in"
    assert phone.get("/").location.startswith("/login"), "the account's other sessions end"
    assert viewer.get("/").status_code == 200, "other accounts' sessions go on"
    assert Accounts(service.store).sessions("agent") == 1

    assert sign_in(app.test_client(), AGENT_PASSWORD, name="agent").status_code == 401
    assert sign_in(app.test_client(), OWN, name="agent").status_code == 302
    [entry] = AuditLog(service.store).entries(action="account.password")
    assert (entry.actor, entry.via, entry.subject) == ("agent", "console", "user:agent")
    assert entry.detail == {"address": "127.0.0.1", "sessions_ended": 1}
    assert OWN not in repr(entry) and AGENT_PASSWORD not in repr(entry)


@pytest.mark.parametrize(("new", "again", "said"), [
    ("eleven char", None, "at least 12 characters"),
    ("agent.longname", None, "cannot be the account name"),
    ("Agent.Longname", None, "cannot be the account name"),
    (AGENT_PASSWORD, None, "must differ from the current one"),
    (OWN, OWN + "!", "The two new passwords differ"),
])
def test_an_easy_or_mistyped_new_password_is_refused(app, service, new, again, said):
    Accounts(service.store).add("agent.longname", "agent", actor="test", via="cli", password=AGENT_PASSWORD)
    browser = app.test_client()
    sign_in(browser, AGENT_PASSWORD, name="agent.longname")
    refused = choose(browser, AGENT_PASSWORD, new, again)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and said in html and 'id="password-problem"' in html
    assert re.search(r'id="password-problem"><span class="zh" lang="zh-CN">[^<]+</span>', html), "in both languages"
    assert sign_in(app.test_client(), AGENT_PASSWORD, name="agent.longname").status_code == 302, "unchanged"
    assert AuditLog(service.store).entries(action="account.password") == []


def test_a_forged_password_change_is_refused_before_anything_changes(app, service):
    """A form posted from another site carries no token of this session (or another session's): nothing changes."""
    browser, other = agent(app, service), app.test_client()
    sign_in(other, AGENT_PASSWORD, name="agent")
    form = {"current_password": AGENT_PASSWORD, "new_password": OWN, "new_password_again": OWN}
    for token in (None, "forged", page_token(other)):
        forged = browser.post(PAGE, data={**form, **({"csrf_token": token} if token else {})})
        assert forged.status_code == 400, token
    assert sign_in(app.test_client(), AGENT_PASSWORD, name="agent").status_code == 302, "unchanged"
    assert Accounts(service.store).sessions("agent") == 3
    assert AuditLog(service.store).entries(action="account.password") == []


def test_a_wrong_current_password_is_refused_and_throttled(app, service):
    browser = agent(app, service)
    for _ in range(console_module.LOGIN_ATTEMPTS):
        wrong = choose(browser, "not my password", OWN)
        assert wrong.status_code == 400 and "current password is not right" in wrong.get_data(as_text=True)
    throttled = choose(browser, AGENT_PASSWORD, OWN)  # even the right one, until the window passes
    assert throttled.status_code == 429 and "Too many failed attempts" in throttled.get_data(as_text=True)
    assert sign_in(app.test_client(), AGENT_PASSWORD, name="agent").status_code == 302, "unchanged"
    assert browser.get("/").status_code == 200


def test_an_sso_account_has_no_password_to_change(app, service):
    accounts = Accounts(service.store)
    carol = accounts.add_sso("carol", "viewer", "https://id.example.com", "sub-carol", via="sso")
    browser = app.test_client()
    with browser.session_transaction() as cookie:
        cookie[TOKEN_KEY] = accounts.open_session(carol, console_module.SESSION_LIFETIME, None)
    home = browser.get("/").get_data(as_text=True)
    assert 'id="signed-in-as"' in home and 'id="password-link"' not in home
    page = browser.get(PAGE).get_data(as_text=True)
    assert 'id="sso-no-password"' in page and 'id="password-form"' not in page
    assert choose(browser, "", OWN).status_code == 403
    assert AuditLog(service.store).entries(action="account.password") == []


# --- the first admin's generated password ---


def test_admin_choosing_its_own_password_deletes_the_generated_password_file(settings, service):
    from demo.__main__ import _banner

    settings.console.password = None
    app = create_app(service=service)
    password_file = settings.data_dir / first_password.FILE
    generated = password_file.read_text().strip()
    assert str(password_file.resolve()) in app.test_client().get("/login").get_data(as_text=True)
    browser = app.test_client()
    assert sign_in(browser, generated).status_code == 302 and browser.get("/").status_code == 200

    assert choose(browser, generated, OWN).status_code == 302
    assert not password_file.exists()
    hint = app.test_client().get("/login").get_data(as_text=True)
    assert str(password_file.resolve()) not in hint and "users reset admin</code> gives it a one-time one" in hint
    assert generated not in _banner(settings, "http://127.0.0.1:1", 4, None, True)
    assert sign_in(app.test_client(), generated).status_code == 401
    assert sign_in(app.test_client(), OWN).status_code == 302
    create_app(service=service)  # a restart makes no new file: admin exists
    assert not password_file.exists()
