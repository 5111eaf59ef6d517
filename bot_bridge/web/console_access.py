"""Who is signed in to the console, and what their role lets them open: checked on the server for every route.

Each console view says the least role it needs with ``@allow(role)``
(``EVERYONE`` for the sign-in pages). The console's guard
(``console.require_sign_in_and_csrf``, run before every request of every
console blueprint) reads that mark and refuses a role below it; a view
without a mark is refused to everyone, so a route added without thinking
about roles is closed, not open, and tests/test_accounts.py names it.
An account signed in with a one-time password (``remembering/accounts.py``)
is sent to choose its own from every view but those marked
``allow(role, one_time_password=True)``: that page, and signing out.

The browser's signed cookie carries a random session token; the account
behind it is looked up in the database (``remembering/accounts.py``) once
per request, so a session ended elsewhere (signed out everywhere, account
disabled or reset) is refused at its next request.
"""

from __future__ import annotations

from flask import current_app, g, request, session

from ..remembering.accounts import Account, Accounts
from ..remembering.audit import AuditLog
from .api import service

EVERYONE = "everyone"  # the role mark of the pages for signing in
ROLE_MARK = "console_role"
ONE_TIME_MARK = "console_one_time_password"
TOKEN_KEY = "token"


def allow(role: str, *, one_time_password: bool = False):
    """Mark a console view as open to ``role`` and the roles above it (``EVERYONE``: open to all); with
    ``one_time_password``, also before the signed-in account has replaced its one-time password."""

    def mark(view):
        setattr(view, ROLE_MARK, role)
        setattr(view, ONE_TIME_MARK, one_time_password)
        return view

    return mark


def required_role(endpoint: str | None) -> str | None:
    """The role ``endpoint``'s view is marked with; None if it has no mark (refused to all)."""
    return getattr(_view(endpoint), ROLE_MARK, None)


def open_to_one_time_password(endpoint: str | None) -> bool:
    """Whether ``endpoint``'s view is open to an account that has still to choose its own password."""
    return getattr(_view(endpoint), ONE_TIME_MARK, False)


def _view(endpoint: str | None):
    return current_app.view_functions.get(endpoint) if endpoint else None


def current_account() -> Account | None:
    """The account signed in with this request's session, looked up once per request; None if signed out."""
    if "console_account" not in g:
        token = session.get(TOKEN_KEY)
        g.console_account = Accounts(service().store).session_account(token) if isinstance(token, str) else None
    return g.console_account


def start_session(account: Account, lifetime) -> None:
    """Sign ``account`` in on this browser: a fresh cookie (and CSRF token) with a new session's token."""
    session.clear()
    session.permanent = True
    session[TOKEN_KEY] = Accounts(service().store).open_session(account, lifetime, client_address())
    g.console_account = account


def end_session() -> None:
    token = session.get(TOKEN_KEY)
    if isinstance(token, str):
        Accounts(service().store).end_session(token)
    session.clear()


def record(action: str, subject: str | None = None, **detail) -> None:
    """An audit entry for a console action of the signed-in account, with the client's address."""
    AuditLog(service().store).record(current_account().name, "console", action, subject,
                                     detail={"address": client_address(), **detail})


def record_refused_sign_in(name: str | None, method: str) -> None:
    """An audit entry for a refused sign-in, with the client's address. The actor is the account named, if
    one by that name exists; never other text typed as a name, which may be a password typed in the wrong box."""
    known = name is not None and Accounts(service().store).get(name) is not None
    AuditLog(service().store).record(name if known else "unknown", "console", "sign_in.refused",
                                     f"user:{name}" if known else None,
                                     detail={"address": client_address(), "method": method})


def client_address() -> str:
    return request.remote_addr or "unknown"  # the client's own, where ProxyFix believes the proxies
