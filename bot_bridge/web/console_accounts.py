"""The console's admin pages: the accounts (list, add, disable, enable, reset a password) and the audit log.

They do what ``bot-bridge users`` does (``remembering/accounts.py``), for
an admin at a browser: a new or reset password is one-time and shown once,
on the page that answers the form, never in an address. An admin cannot disable their
own account here, so the console always keeps one way back in. The audit
page lists every entry of ``remembering/audit.py``, newest first, filtered
by actor and action, a page at a time.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from ..remembering.accounts import ROLES, AccountError, Accounts
from ..remembering.audit import AuditLog
from .api import service
from .console import PAGE_SIZE, _is_row_id, add_security_headers, require_sign_in_and_csrf
from .console_access import allow, client_address, current_account

admin = Blueprint("admin", __name__)
admin.before_request(require_sign_in_and_csrf)
admin.after_request(add_security_headers)

#: What the accounts page's buttons do, by the form's ``change``.
CHANGES = ("disable", "enable", "reset")


@admin.get("/accounts")
@allow("admin")
def accounts_page():
    return _accounts_page()


@admin.post("/accounts")
@allow("admin")
def add_account():
    """A new password account; the page shows its generated one-time password once."""
    name, role = request.form.get("name", ""), request.form.get("role", "")
    try:
        password = Accounts(service().store).add(name, role, actor=current_account().name, via="console",
                                                 address=client_address())
    except AccountError as error:
        return _accounts_page(problem=str(error)), 400
    return _accounts_page(shown=(name.strip().lower(), password))


@admin.post("/accounts/<name>")
@allow("admin")
def change_account(name: str):
    change = request.form.get("change")
    accounts, actor = Accounts(service().store), current_account().name
    if change not in CHANGES or (change == "disable" and name == actor):
        return _accounts_page(problem=f"{change!r} cannot be done to {name!r} here"), 400
    try:
        if change == "reset":
            return _accounts_page(shown=(name, accounts.reset(name, actor=actor, via="console",
                                                              address=client_address())))
        getattr(accounts, change)(name, actor=actor, via="console", address=client_address())
    except AccountError as error:
        return _accounts_page(problem=str(error)), 400
    return _accounts_page(done=(change, name))


@admin.get("/audit")
@allow("admin")
def audit_page():
    """The audit log, newest first: ``?actor=`` and ``?action=`` filter it, ``?before=`` pages back."""
    actor = request.args.get("actor", "").strip() or None
    action = request.args.get("action", "").strip() or None
    before = request.args.get("before") or None
    if before is not None and not _is_row_id(before):
        before = None
    entries = AuditLog(service().store).entries(actor=actor, action=action, limit=PAGE_SIZE + 1,
                                                before_id=None if before is None else int(before))
    older_url = None
    if len(entries) > PAGE_SIZE:
        filters = {key: value for key, value in (("actor", actor), ("action", action)) if value}
        older_url = url_for("admin.audit_page", **filters, before=entries[PAGE_SIZE - 1].id)
    return render_template("audit.html", entries=entries[:PAGE_SIZE], selected={"actor": actor, "action": action},
                           older_url=older_url)


def _accounts_page(*, shown: tuple[str, str] | None = None, done: tuple[str, str] | None = None,
                   problem: str | None = None) -> str:
    return render_template("accounts.html", accounts=Accounts(service().store).all(), roles=ROLES, shown=shown,
                           done=done, problem=problem, current_name=current_account().name)
