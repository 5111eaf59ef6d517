"""Signing in to the console through the desk's own identity provider (OpenID Connect), when one is set.

A desk that already has people in Keycloak, Entra ID, Okta or Authing
should not hand out a second password per person. With
``console.sso.discovery_url`` (and the client id and secret the provider
issued), the login page offers "Sign in with single sign-on": Authlib's
Flask client (a maintained library) reads the provider's discovery
document, sends the browser there with the authorization code flow (state
and nonce kept in the session cookie), exchanges the code on the server, and
checks the ID token's RS256 signature against the provider's JWKS, its
issuer, audience, expiry and nonce.

The account is the provider's issuer and subject (``remembering/accounts.py``),
named by ``name_claim``, made at its first sign-in with ``default_role`` or,
when ``role_claim`` is set, the role that claim holds (read again at every
sign-in, so the provider stays the place where roles change). An admin can
disable an SSO account like any other; a name already taken by a password
account is refused rather than joined to it.
"""

from __future__ import annotations

import logging

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, abort, current_app, redirect, render_template, session, url_for
from joserfc.errors import JoseError
from requests import RequestException

from ..config import Settings
from ..remembering.accounts import ROLES, AccountError, Accounts
from .api import service
from .console import SESSION_LIFETIME, add_security_headers, require_sign_in_and_csrf, safe_next
from .console_access import EVERYONE, allow, record, record_refused_sign_in, start_session

log = logging.getLogger(__name__)

sso = Blueprint("sso", __name__)
sso.before_request(require_sign_in_and_csrf)
sso.after_request(add_security_headers)

PROVIDER = "provider"  # the name the one provider is registered under with Authlib
NEXT_KEY = "sso_next"
SCOPE = "openid profile email"


def init_sso(app: Flask, settings: Settings) -> None:
    """Register the single sign-on routes; they answer 404 unless ``console.sso.discovery_url`` is set."""
    sso_settings = settings.console.sso
    if sso_settings.discovery_url:
        oauth = OAuth(app)
        oauth.register(PROVIDER, client_id=sso_settings.client_id, client_secret=sso_settings.client_secret,
                       server_metadata_url=sso_settings.discovery_url, client_kwargs={"scope": SCOPE})
    app.register_blueprint(sso)


@sso.app_context_processor
def _sso_context() -> dict:
    return {"sso_enabled": _client() is not None}


@sso.get("/login/sso")
@allow(EVERYONE)
def sign_in():
    """Off to the provider; it sends the browser back to ``callback``."""
    client = _client()
    if client is None:
        abort(404)
    next_page = safe_next()
    response = client.authorize_redirect(_callback_url())
    if next_page:
        session[NEXT_KEY] = next_page
    return response


@sso.get("/login/sso/callback")
@allow(EVERYONE)
def callback():
    """Back from the provider: exchange the code, check the ID token, and sign its account in."""
    client = _client()
    if client is None:
        abort(404)
    next_page = session.pop(NEXT_KEY, None)
    try:
        token = client.authorize_access_token()
    except (OAuthError, JoseError, ValueError, RequestException) as error:  # refused, forged state, bad ID token,
        # or the provider out of reach
        log.warning("console single sign-on failed: %s", error)
        return _refused()
    claims = token.get("userinfo")
    if not claims:
        log.warning("console single sign-on failed: the provider's answer has no ID token")
        return _refused()
    account = _account(claims)
    if account is None:
        return _refused()
    if not account.enabled:
        log.info("console single sign-on refused %s: the account is disabled", account.name)
        return _refused(account.name)
    start_session(account, SESSION_LIFETIME)
    record("sign_in", f"user:{account.name}", method="sso")
    return redirect(next_page or url_for("console.analyse_page"))


def _account(claims: dict):
    """The account of the ID token's issuer and subject, made or updated to its role; None if refused."""
    settings = service().settings.console.sso
    role = _claimed_role(claims.get(settings.role_claim)) if settings.role_claim else None
    role = role or settings.default_role
    if role is None:
        log.warning("console single sign-on refused subject %s: no role in its %r claim and no default_role",
                    claims["sub"], settings.role_claim)
        return None
    name = claims.get(settings.name_claim) or claims.get("email") or claims["sub"]
    accounts = Accounts(service().store)
    try:
        account = accounts.add_sso(str(name), role, claims["iss"], claims["sub"], via="sso")
        if settings.role_claim:
            account = accounts.set_sso_role(account, role, via="sso")
    except AccountError as error:
        log.warning("console single sign-on refused subject %s: %s", claims["sub"], error)
        return None
    return account


def _claimed_role(value) -> str | None:
    """The role a claim holds: a role's name, or the highest of a list of them (a provider's groups)."""
    named = [value] if isinstance(value, str) else list(value or [])
    held = [role for role in ROLES if role in named]
    return held[-1] if held else None


def _client():
    oauth = current_app.extensions.get("authlib.integrations.flask_client")
    return None if oauth is None else oauth.create_client(PROVIDER)


def _callback_url() -> str:
    public_url = service().settings.public_url
    return f"{public_url}{url_for('sso.callback')}" if public_url else url_for("sso.callback", _external=True)


def _refused(name: str | None = None):
    """The sign-in page saying single sign-on failed, and an audit entry naming ``name``'s account if known."""
    record_refused_sign_in(name, "sso")
    return render_template("login.html", problem="sso_failed", next=None), 401
