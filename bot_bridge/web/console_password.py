"""Each person's own console password: chosen at the first sign-in with a one-time one, changed at will.

A password from ``bot-bridge users add`` or ``reset`` (or the Accounts page)
was generated and handed over, so someone else has seen it: the console
lets an account signed in with it do nothing but choose its own here (the
guard in ``console.py``), then go on to the page it asked for. Any password
account may come back to change its password; SSO accounts have none here.

The current password is asked for, so a browser left signed in is not
enough to take the account over, and wrong ones are throttled per address
as sign-ins are. A change ends every other session of the account (the
password may have been changed because it leaked), keeps this one, and is
in the audit log. When ``admin`` chooses its own, the generated first
password's file goes: the login page and ``make demo`` name it only while
it still signs in.
"""

from __future__ import annotations

import logging

from flask import Blueprint, redirect, render_template, request, session, url_for

from ..remembering.accounts import MIN_PASSWORD_LENGTH, Accounts, PasswordRefused
from .api import service
from ..remembering import first_password
from .console import FIRST_ADMIN, LoginThrottle, add_security_headers, require_sign_in_and_csrf
from .console import safe_next
from .console_access import TOKEN_KEY, allow, client_address, current_account

log = logging.getLogger(__name__)

password = Blueprint("password", __name__)
password.before_request(require_sign_in_and_csrf)
password.after_request(add_security_headers)

_throttle = LoginThrottle()  # wrong current passwords, counted like wrong sign-ins

#: Why a new password was not taken, in the words the page shows.
REFUSED = {
    "mismatch": ("两次输入的新密码不一致。", "The two new passwords differ."),
    "short": (f"新密码至少需要 {MIN_PASSWORD_LENGTH} 个字符。",
              f"The new password needs at least {MIN_PASSWORD_LENGTH} characters."),
    "name": ("新密码不能是账户名。", "The new password cannot be the account name."),
    "same": ("新密码不能与当前密码相同。", "The new password must differ from the current one."),
    "wrong_current": ("当前密码不对，请再试一次。", "The current password is not right; please try again."),
    "throttled": ("失败次数过多，请 10 分钟后再试。", "Too many failed attempts; please try again in 10 minutes."),
}


@password.get("/account/password")
@allow("viewer", one_time_password=True)
def password_page():
    return _page()


@password.post("/account/password")
@allow("viewer", one_time_password=True)
def change_password():
    """Replace the signed-in account's password, then go on to the page it asked for (or say it is done)."""
    account, address, form = current_account(), client_address(), request.form
    if account.sso:
        return _page(), 403
    if _throttle.blocked(address):
        return _page("throttled"), 429
    if form.get("new_password", "") != form.get("new_password_again", ""):
        return _page("mismatch"), 400
    try:
        Accounts(service().store).choose_password(account.name, form.get("current_password", ""),
                                                  form.get("new_password", ""), keep_token=session[TOKEN_KEY],
                                                  address=address)
    except PasswordRefused as refused:
        if refused.reason == "wrong_current":
            _throttle.failed(address)
        return _page(refused.reason), 400
    if account.name == FIRST_ADMIN and first_password.retire(service().settings):
        log.info("console: admin chose its own password; deleted %s, which held the one it replaced",
                 first_password.path(service().settings))
    return redirect(safe_next() or url_for("password.password_page", changed=1))


def _page(problem: str | None = None) -> str:
    return render_template("password.html", problem=REFUSED.get(problem), min_length=MIN_PASSWORD_LENGTH,
                           next=safe_next())
