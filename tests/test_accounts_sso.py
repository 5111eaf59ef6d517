"""Single sign-on to the console through OpenID Connect, against a loopback provider built from Authlib's server
parts (tests/oidc_provider.py): discovery, the authorization code flow, the JWKS and RS256 ID tokens, on SQLite
and PostgreSQL. The account is the provider's subject; its role comes from a claim or the default role."""

from __future__ import annotations

import pytest
import requests
from joserfc.jwk import RSAKey

from bot_bridge.config import SsoSettings, load_settings
from bot_bridge.remembering.accounts import Accounts
from bot_bridge.remembering.audit import AuditLog
from bot_bridge.web import create_app
from tests.console_helpers import PASSWORD, page_token
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider

CALLBACK = "http://localhost/login/sso/callback"  # where the test client's console is
CAROL = {"sub": "u-1001", "preferred_username": "carol", "email": "carol@desk.example", "bot_bridge_role": "agent"}


@pytest.fixture
def settings(tmp_path, tiny_model_dir, database_url):
    return load_settings(environ={}, data_dir=str(tmp_path / "data"), database_url=database_url,
                         model__name=str(tiny_model_dir), model__threads=2, console__password=PASSWORD)


@pytest.fixture
def provider():
    with OidcProvider(CALLBACK) as running:
        yield running


@pytest.fixture
def app(settings, service, provider):
    settings.console.sso = SsoSettings(discovery_url=provider.discovery_url, client_id=CLIENT_ID,
                                       client_secret=CLIENT_SECRET, role_claim="bot_bridge_role")
    return create_app(service=service)


def sso_sign_in(browser, next_page: str | None = None):
    """Press "Sign in with single sign-on": to the provider, which sends the browser back; the console's answer."""
    away = browser.get("/login/sso" + (f"?next={next_page}" if next_page else ""))
    assert away.status_code == 302 and away.location.startswith("http://127.0.0.1:"), away.location
    at_provider = requests.get(away.location, allow_redirects=False, timeout=10)
    assert at_provider.status_code == 302, at_provider.text
    assert at_provider.headers["Location"].startswith(CALLBACK)
    return browser.get(at_provider.headers["Location"])


def test_an_sso_sign_in_makes_the_account_with_the_claimed_role_and_signs_it_in(app, provider, service):
    provider.person = CAROL
    browser = app.test_client()
    assert 'id="sso-link"' in browser.get("/login").get_data(as_text=True)
    done = sso_sign_in(browser, next_page="/cases")
    assert done.status_code == 302 and done.location == "/cases"
    assert provider.token_requests == 1, "the code was exchanged at the provider's token endpoint"
    assert browser.get("/cases").status_code == 200
    assert browser.get("/accounts").status_code == 403, "an agent, as the role claim says"
    carol = Accounts(service.store).get("carol")
    assert (carol.role, carol.sso, carol.enabled) == ("agent", True, True)
    [entry] = AuditLog(service.store).entries(action="sign_in", actor="carol")
    assert entry.detail["method"] == "sso" and entry.detail["address"] == "127.0.0.1"

    provider.person = {**CAROL, "bot_bridge_role": ["viewer", "admin"]}  # promoted at the provider
    assert sso_sign_in(app.test_client()).status_code == 302
    assert Accounts(service.store).get("carol").role == "admin"
    assert [account.name for account in Accounts(service.store).all()] == ["admin", "carol"], "the same account"


def test_an_id_token_not_signed_with_the_published_key_is_refused(app, provider, service):
    provider.person = CAROL
    provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": provider.key.kid})
    browser = app.test_client()
    refused = sso_sign_in(browser)
    assert refused.status_code == 401 and "Single sign-on did not succeed" in refused.get_data(as_text=True)
    assert Accounts(service.store).get("carol") is None and browser.get("/").status_code == 302


def test_a_callback_without_its_state_is_refused(app, provider, service):
    provider.person = CAROL
    away = app.test_client().get("/login/sso")
    back = requests.get(away.location, allow_redirects=False, timeout=10).headers["Location"]
    stranger = app.test_client()  # another browser, without the state this sign-in began with
    assert stranger.get(back).status_code == 401
    assert Accounts(service.store).get("carol") is None


def test_sso_refuses_a_disabled_account_and_a_name_taken_by_a_password_account(app, provider, service):
    provider.person = CAROL
    assert sso_sign_in(app.test_client()).status_code == 302
    Accounts(service.store).disable("carol", actor="admin", via="cli")
    assert sso_sign_in(app.test_client()).status_code == 401

    provider.person = {"sub": "u-666", "preferred_username": "admin", "bot_bridge_role": "admin"}
    assert sso_sign_in(app.test_client()).status_code == 401, "nobody at the provider becomes the local admin"
    assert not Accounts(service.store).get("admin").sso
    refused = AuditLog(service.store).entries(action="sign_in.refused")
    assert sorted((entry.actor, entry.detail["method"]) for entry in refused) == [("carol", "sso"), ("unknown", "sso")]


def test_without_a_role_claim_the_default_role_applies_or_nobody_gets_in(app, provider, service, settings):
    provider.person = {"sub": "u-2002", "preferred_username": "dave"}
    settings.console.sso.default_role = None
    assert sso_sign_in(app.test_client()).status_code == 401
    settings.console.sso.default_role = "viewer"
    browser = app.test_client()
    assert sso_sign_in(browser).status_code == 302
    assert Accounts(service.store).get("dave").role == "viewer"
    assert browser.post("/cases/1/act", data={"action": "acknowledge",
                                              "csrf_token": page_token(browser)}).status_code == 403


def test_without_sso_settings_the_routes_do_not_exist(settings, service):
    browser = create_app(service=service).test_client()
    assert browser.get("/login/sso").status_code == 404
    assert 'id="sso-link"' not in browser.get("/login").get_data(as_text=True)
