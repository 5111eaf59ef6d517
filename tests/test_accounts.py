"""Console accounts and roles, on SQLite and PostgreSQL: each role is allowed and refused the right pages and
actions on the server, every console route has a role rule, sessions end when signed out everywhere or when
the account is disabled, the shared password of earlier versions becomes the admin account, ``bot-bridge
users`` manages accounts, and each of these lands in the audit log with who and from where."""

from __future__ import annotations

import logging
import re

import pytest
from click.testing import CliRunner
from flask import Blueprint
from sqlalchemy import create_engine, select

from bot_bridge.cli import cli
from bot_bridge.config import load_settings
from bot_bridge.remembering import first_password
from bot_bridge.remembering.accounts import ROLES, AccountRow, Accounts
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.remembering.store import migrate
from bot_bridge.web import console as console_module
from bot_bridge.web import create_app
from bot_bridge.web.console import persistent_secret, require_sign_in_and_csrf
from bot_bridge.web.console_access import EVERYONE
from tests.console_helpers import PASSWORD, csrf_from, page_token, required_role, sign_in, start_analysis, wav
from tests.test_console_feedback import escalated_note, label_form

#: Blueprints of the app that are not the console: the API (bearer token), webhooks (signatures), health.
NOT_CONSOLE = ("api.", "webhooks.", "health.")
ROLE_PASSWORD = {role: f"{role} password 123" for role in ROLES}


@pytest.fixture
def settings(tmp_path, tiny_model_dir, database_url):
    """This module's settings: the parametrised database (SQLite, PostgreSQL), the shared password set."""
    return load_settings(environ={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                         model__name=str(tiny_model_dir), model__threads=2, console__password=PASSWORD)


@pytest.fixture
def app(settings, service):
    return create_app(service=service)


@pytest.fixture
def people(app, service):
    """A signed-in test client per role (``admin`` is the shared password's account; the others added)."""
    accounts, clients = Accounts(service.store), {}
    for role in ROLES:
        if role != "admin":
            accounts.add(role, role, actor="test", via="cli", password=ROLE_PASSWORD[role])
        client = app.test_client()
        answer = sign_in(client, PASSWORD if role == "admin" else ROLE_PASSWORD[role], name=role)
        assert answer.status_code == 302, role
        clients[role] = client
    return clients


# --- every route has a role rule, checked on the server ---


def test_every_console_route_has_a_role_rule(app):
    """Walks every URL rule of the app: each console view is marked with the least role it needs, and only the
    sign-in pages are open to everyone."""
    console_rules = [rule for rule in app.url_map.iter_rules()
                     if not rule.endpoint.startswith(NOT_CONSOLE) and rule.endpoint != "static"]
    marks = {rule.endpoint: required_role(app, rule.endpoint) for rule in console_rules}
    assert len(marks) > 20
    assert [endpoint for endpoint, role in marks.items() if role not in (*ROLES, EVERYONE)] == []
    assert {endpoint for endpoint, role in marks.items() if role == EVERYONE} == {
        "console.login", "sso.sign_in", "sso.callback"}
    assert {endpoint for endpoint, role in marks.items() if role == "admin"} >= {
        "admin.accounts_page", "admin.add_account", "admin.change_account", "admin.audit_page"}


def test_a_console_route_without_a_role_rule_is_refused_to_everyone(settings, service):
    """A view added without ``allow`` is closed, not open: even the admin is refused it."""
    app = create_app(service=service)
    unmarked = Blueprint("unmarked", __name__)
    unmarked.before_request(require_sign_in_and_csrf)
    unmarked.add_url_rule("/unmarked", "page", lambda: "secret")
    app.register_blueprint(unmarked)
    admin = app.test_client()
    sign_in(admin)
    assert app.test_client().get("/unmarked").status_code == 302
    refused = admin.get("/unmarked")
    assert refused.status_code == 403 and "secret" not in refused.get_data(as_text=True)


def test_each_role_is_allowed_and_refused_the_right_pages_and_actions(people, service):
    result_id = escalated_note(service.store)
    reading = ["/", "/voice-notes", "/search", "/cases", "/cases/1", "/escalations", "/digest", "/calibration",
               f"/results/{result_id}", f"/results/{result_id}/result.json", f"/results/{result_id}/similar"]
    for role, client in people.items():
        for page in reading:
            assert client.get(page).status_code == 200, (role, page)
        admin_pages = {page: client.get(page).status_code for page in ("/accounts", "/audit", "/data")}
        assert admin_pages == dict.fromkeys(admin_pages, 200 if role == "admin" else 403), role
    seen = {(entry.actor, entry.action, entry.subject, entry.detail["address"])
            for entry in AuditLog(service.store).entries(limit=100) if entry.action.startswith("result.")}
    assert seen == {(role, action, f"result:{result_id}", "127.0.0.1") for role in people
                    for action in ("result.view", "result.download")}, "who saw a person's words is on record"

    viewer, agent, admin = people["viewer"], people["agent"], people["admin"]
    assert 'id="viewer-note"' in viewer.get("/").get_data(as_text=True)
    assert 'id="viewer-note"' not in agent.get("/").get_data(as_text=True)
    for page, buttons in ((f"/results/{result_id}", 'id="label-right"'), ("/cases/1", 'id="case-actions"')):
        viewed, worked = viewer.get(page).get_data(as_text=True), agent.get(page).get_data(as_text=True)
        assert buttons not in viewed and 'id="read-only-note"' in viewed, page
        assert buttons in worked and 'id="read-only-note"' not in worked, page
    # A viewer posting the agent's form anyway (its own CSRF token) is refused on the server.
    form = {**label_form(agent.get(f"/results/{result_id}").get_data(as_text=True), result_id),
            "csrf_token": page_token(viewer)}
    acknowledge = {"action": "acknowledge", "csrf_token": page_token(viewer)}
    refused = [viewer.post(form["action"], data={**form, "verdict": "confirmed"}),
               viewer.post("/cases/1/act", data=acknowledge),
               start_analysis(viewer, wav(1.0)),
               viewer.post("/accounts", data={"name": "eve", "role": "admin", "csrf_token": page_token(viewer)}),
               agent.post("/accounts", data={"name": "eve", "role": "admin", "csrf_token": page_token(agent)}),
               agent.post("/accounts/viewer", data={"change": "disable", "csrf_token": page_token(agent)}),
               agent.post("/data/delete", data={"what": "result", "key": result_id, "csrf_token": page_token(agent)})]
    assert [answer.status_code for answer in refused] == [403] * 7
    assert refused[2].get_json()["code"] == "role_refused"
    assert "role does not allow" in refused[0].get_data(as_text=True)
    assert Accounts(service.store).get("eve") is None and Accounts(service.store).get("viewer").enabled

    form = label_form(agent.get(f"/results/{result_id}").get_data(as_text=True), result_id)
    labelled = agent.post(form["action"], data={**form, "verdict": "confirmed"})
    acted = agent.post("/cases/1/act", data={"action": "acknowledge", "csrf_token": page_token(agent)})
    started = start_analysis(agent, wav(1.0))
    added = admin.post("/accounts", data={"name": "Eve", "role": "viewer", "csrf_token": page_token(admin)})
    assert (labelled.status_code, acted.status_code, started.status_code, added.status_code) == (303, 302, 202, 200)
    shown = re.search(r'id="one-time-password">.*?<code>([^<]+)</code>', added.get_data(as_text=True), re.S).group(1)
    assert sign_in(people["viewer"].application.test_client(), shown, name="eve").status_code == 302

    audit = AuditLog(service.store)
    assert [entry.action for entry in audit.entries(actor="agent") if not entry.action.startswith("result.")] == [
        "upload.analyse", "case.acknowledge", "label.confirm", "sign_in"]
    assert audit.entries(actor="agent")[0].subject == f"job:{started.get_json()['id']}"
    assert "acknowledged by agent (console)" in agent.get("/cases/1").get_data(as_text=True)
    [added_entry] = audit.entries(action="user.add", actor="admin")
    assert (added_entry.subject, added_entry.via, added_entry.detail["role"]) == ("user:eve", "console", "viewer")
    assert audit.entries(actor="eve")[0].detail["address"] == "127.0.0.1"


def test_passwords_are_kept_as_argon2_hashes_only(people, service):
    with service.store.session() as session:
        hashes = dict(session.execute(select(AccountRow.name, AccountRow.password_hash)).all())
    assert all(stored.startswith("$argon2id$") for stored in hashes.values())
    assert not any(password in stored for stored in hashes.values() for password in (PASSWORD, *ROLE_PASSWORD.values()))


# --- sessions end on the server ---


def test_a_disabled_accounts_session_is_refused_at_its_next_request(people, service):
    agent, admin = people["agent"], people["admin"]
    assert agent.get("/voice-notes").status_code == 200
    disabled = admin.post("/accounts/agent", data={"change": "disable", "csrf_token": page_token(admin)})
    assert disabled.status_code == 200 and Accounts(service.store).sessions("agent") == 0

    page, data = agent.get("/voice-notes"), agent.get("/results/0123456789abcdef/similar")
    assert page.status_code == 302 and page.location.startswith("/login")
    assert data.status_code == 401 and data.get_json()["code"] == "signed_out"
    assert sign_in(agent.application.test_client(), ROLE_PASSWORD["agent"], name="agent").status_code == 401
    assert admin.post("/accounts/admin", data={"change": "disable", "csrf_token": page_token(admin)}).status_code == 400
    [entry] = AuditLog(service.store).entries(action="user.disable")
    assert (entry.actor, entry.subject, entry.detail["sessions_ended"]) == ("admin", "user:agent", 1)
    assert entry.detail["address"] == "127.0.0.1"

    admin.post("/accounts/agent", data={"change": "enable", "csrf_token": page_token(admin)})
    assert sign_in(agent, ROLE_PASSWORD["agent"], name="agent").status_code == 302


def test_refused_sign_ins_are_audited_naming_only_accounts_that_exist(app, service, monkeypatch):
    """A wrong password for agent names agent; a disabled account too; text typed as a name that is no account
    (here a password in the wrong box) is kept nowhere."""
    monkeypatch.setattr(console_module, "_throttle", console_module.LoginThrottle())
    accounts = Accounts(service.store)
    accounts.add("agent", "agent", actor="test", via="cli", password=ROLE_PASSWORD["agent"])
    assert sign_in(app.test_client(), "not agent's password", name="agent").status_code == 401
    assert sign_in(app.test_client(), "whatever", name="hunter2-correct-horse").status_code == 401
    accounts.disable("agent", actor="test", via="cli")
    assert sign_in(app.test_client(), ROLE_PASSWORD["agent"], name="agent").status_code == 401

    refused = AuditLog(service.store).entries(action="sign_in.refused")
    assert sorted((entry.actor, entry.subject, entry.detail["method"], entry.detail["address"])
                  for entry in refused) == [("agent", "user:agent", "password", "127.0.0.1")] * 2 + [
        ("unknown", None, "password", "127.0.0.1")]
    assert "hunter2" not in repr(AuditLog(service.store).entries(limit=100))


def test_signing_out_everywhere_ends_every_session_of_the_account_only(people, app, service):
    laptop, phone = people["agent"], app.test_client()
    sign_in(phone, ROLE_PASSWORD["agent"], name="agent")
    assert Accounts(service.store).sessions("agent") == 2
    answer = phone.post("/logout/everywhere", data={"csrf_token": page_token(phone)})
    assert answer.status_code == 302 and answer.location.startswith("/login")
    assert laptop.get("/").status_code == 302 and phone.get("/").status_code == 302
    assert people["viewer"].get("/").status_code == 200, "other accounts stay signed in"
    [entry] = AuditLog(service.store).entries(action="sign_out.everywhere")
    assert (entry.actor, entry.detail["sessions_ended"]) == ("agent", 2)


# --- the upgrade from one shared password ---


def test_the_shared_password_of_an_earlier_version_becomes_the_admin_account(settings, tmp_path, caplog):
    """A deployment of the version before accounts: a generated console password in its file and a database at
    migration 0011. Its first start after the upgrade makes the admin account with that password, says so, and
    the password keeps working, with the name ``admin`` or none; later starts change nothing."""
    from bot_bridge.service import Service

    settings.console.password = None
    shared, _ = persistent_secret(settings.data_dir / first_password.FILE, lambda: "the old shared one")
    engine = create_engine(settings.resolved_database_url)
    migrate(engine, "0011")
    engine.dispose()

    caplog.set_level(logging.INFO, logger="bot_bridge.web.console")
    service = Service(settings)
    try:
        app = create_app(service=service)
        said = [record.getMessage() for record in caplog.records if "admin account" in record.getMessage()]
        assert len(said) == 1 and str(settings.data_dir / first_password.FILE) in said[0]
        assert shared not in said[0], "an existing password is not written to the log again"
        assert sign_in(app.test_client(), shared).status_code == 302
        assert sign_in(app.test_client(), shared, name="admin").status_code == 302
        [admin] = Accounts(service.store).all()
        assert (admin.name, admin.role, admin.enabled) == ("admin", "admin", True)

        caplog.clear()
        create_app(service=service)  # the next start, or another process
        assert not [record for record in caplog.records if "admin account" in record.getMessage()]
        assert len(Accounts(service.store).all()) == 1
        [entry] = AuditLog(service.store).entries(action="user.add")
        assert (entry.actor, entry.subject) == ("bot-bridge", "user:admin")
    finally:
        service.close()


# --- bot-bridge users ---


def test_the_users_command_adds_lists_disables_and_resets(settings, app, service, tmp_path):
    env = {"BOT_BRIDGE_DATA_DIR": str(settings.data_dir), "BOT_BRIDGE_DATABASE_URL": settings.resolved_database_url}
    config = tmp_path / "none.yaml"
    config.write_text("{}\n")

    def users(*arguments):
        return CliRunner().invoke(cli, ["--config", str(config), "users", *arguments], env=env)

    added = users("add", "Alice", "--role", "agent")
    assert added.exit_code == 0, added.output
    password = added.output.split()[-1]
    again, wrong_role = users("add", "alice", "--role", "agent"), users("add", "bob", "--role", "owner")
    assert again.exit_code == 1 and "already an account named 'alice'" in again.output
    assert wrong_role.exit_code == 2 and "owner" in wrong_role.output

    browser = app.test_client()
    assert sign_in(browser, password, name="alice").status_code == 302
    listed = users("list").output.splitlines()
    assert [line.split()[:3] for line in listed] == [["admin", "admin", "enabled"], ["alice", "agent", "enabled"]]
    assert listed[1].endswith("1 session(s)") and "never signed in" in listed[0]

    reset = users("reset", "alice")
    new_password = reset.output.split()[-1]
    assert reset.exit_code == 0 and new_password != password
    assert browser.get("/").status_code == 302, "a reset ends the account's sessions"
    assert sign_in(app.test_client(), password, name="alice").status_code == 401
    assert sign_in(app.test_client(), new_password, name="alice").status_code == 302

    assert users("disable", "alice").exit_code == 0
    assert "DISABLED" in users("list").output
    assert sign_in(app.test_client(), new_password, name="alice").status_code == 401
    missing = users("disable", "nobody")
    assert missing.exit_code == 1 and "no account named 'nobody'" in missing.output

    actions = [(entry.action, entry.via) for entry in AuditLog(service.store).entries(subject="user:alice")]
    assert actions == [("sign_in.refused", "console"), ("user.disable", "cli"), ("sign_in", "console"),
                       ("sign_in.refused", "console"), ("user.reset", "cli"), ("sign_in", "console"), ("user.add", "cli")]
    assert AuditLog(service.store).entries(action="user.reset")[0].actor.startswith("cli:")


def test_resetting_admin_keeps_the_generated_password_file_right(settings, service, tmp_path):
    """The login page and ``make demo`` name ``console-password``: after ``users reset admin`` it holds the new one."""
    settings.console.password = None
    app = create_app(service=service)
    password_file = settings.data_dir / first_password.FILE
    generated = password_file.read_text().strip()
    config = tmp_path / "none.yaml"
    config.write_text("{}\n")
    reset = CliRunner().invoke(cli, ["--config", str(config), "users", "reset", "admin"],
                               env={"BOT_BRIDGE_DATA_DIR": str(settings.data_dir),
                                    "BOT_BRIDGE_DATABASE_URL": settings.resolved_database_url})
    assert reset.exit_code == 0, reset.output
    assert password_file.read_text().strip() == reset.output.split()[-1] != generated
    assert sign_in(app.test_client(), generated).status_code == 401
    assert sign_in(app.test_client(), password_file.read_text().strip()).status_code == 302
    assert str(password_file.resolve()) in app.test_client().get("/login").get_data(as_text=True)


def test_a_forged_or_foreign_form_changes_no_account(people, service):
    admin = people["admin"]
    forged = admin.post("/accounts", data={"name": "mallory", "role": "admin", "csrf_token": "forged"})
    unknown = admin.post("/accounts/nobody", data={"change": "reset", "csrf_token": page_token(admin)})
    nonsense = admin.post("/accounts/viewer", data={"change": "promote", "csrf_token": page_token(admin)})
    bad_name = admin.post("/accounts", data={"name": "a b", "role": "viewer", "csrf_token": csrf_from(
        admin.get("/accounts").get_data(as_text=True))})
    assert [answer.status_code for answer in (forged, unknown, nonsense, bad_name)] == [400] * 4
    assert "no account named" in unknown.get_data(as_text=True)
    assert [account.name for account in Accounts(service.store).all()] == ["admin", "agent", "viewer"]


def test_the_audit_page_filters_by_actor_and_action_and_pages_back(people, service):
    audit = AuditLog(service.store)
    for number in range(console_module.PAGE_SIZE + 5):
        audit.record("slack:U42", "slack", "case.acknowledge", f"case:{number}", detail={"name": "Bob"})
    admin = people["admin"]
    first = admin.get("/audit?actor=slack:U42&action=case").get_data(as_text=True)
    assert first.count("case.acknowledge") == console_module.PAGE_SIZE and "<strong>sign_in" not in first
    older = re.search(r'<a class="button" href="([^"]+)">', first[first.index('class="pager"'):]).group(1)
    second = admin.get(older.replace("&amp;", "&")).get_data(as_text=True)
    assert second.count("case.acknowledge") == 5 and 'class="pager"' not in second
    signed_in = admin.get("/audit?action=sign_in").get_data(as_text=True)
    assert signed_in.count("<strong>sign_in</strong>") == 3 and "127.0.0.1" in signed_in
