"""``bot-bridge users``: the console's accounts from a terminal, for the operator who runs the deployment.

The first admin exists from the first start (the shared password of earlier
versions, ``web/console.py``); these commands add people with their own
accounts and roles, list them, disable them and reset their passwords. A new
or reset password is printed once and kept only as its argon2 hash, so it is
for handing to its person; it is one-time: at the first sign-in with it the
console asks for a password of their own. Each change is in the audit log, by
the operating-system user who ran the command, via ``cli``.
"""

from __future__ import annotations

import contextlib
import getpass

import click

from .remembering import first_password
from .remembering.accounts import MIN_PASSWORD_LENGTH, ROLES, AccountError, Accounts
from .remembering.store import Store



@click.group()
def users() -> None:
    """Console accounts: add, list, disable, enable, reset."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="viewer reads; agent also works cases and analyses uploads; admin also manages accounts and data")
@click.pass_obj
def add(settings, name: str, role: str) -> None:
    """Add the account NAME and print its one-time password (shown only now)."""
    with _accounts(settings) as accounts:
        password = accounts.add(name, role, actor=_operator(), via="cli")
    _print_password(settings, name.strip().lower(), password)


@users.command("list")
@click.pass_obj
def list_accounts(settings) -> None:
    """Every account: name, role, enabled or not, how it signs in, last sign-in, sessions open now."""
    with _accounts(settings) as accounts:
        found = [(account, accounts.sessions(account.name)) for account in accounts.all()]
    for account, sessions in found:
        state = "enabled" if account.enabled else "DISABLED"
        last = f"{account.last_sign_in_at:%Y-%m-%d %H:%M} UTC" if account.last_sign_in_at else "never signed in"
        click.echo(f"{account.name:<24} {account.role:<7} {state:<9} {'sso' if account.sso else 'password':<9} "
                   f"{last:<20}  {sessions} session(s)")
    if not found:
        click.echo("no accounts yet: the console makes the admin account at its first start")


@users.command("disable")
@click.argument("name")
@click.pass_obj
def disable(settings, name: str) -> None:
    """Shut NAME out: no sign-in, and its open sessions end at their next request."""
    with _accounts(settings) as accounts:
        accounts.disable(name, actor=_operator(), via="cli")
    click.echo(f"disabled {name}; its sessions have ended")


@users.command("enable")
@click.argument("name")
@click.pass_obj
def enable(settings, name: str) -> None:
    """Let a disabled NAME sign in again."""
    with _accounts(settings) as accounts:
        accounts.enable(name, actor=_operator(), via="cli")
    click.echo(f"enabled {name}")


@users.command("reset")
@click.argument("name")
@click.pass_obj
def reset(settings, name: str) -> None:
    """Give NAME a new one-time password (printed once); its sessions end."""
    with _accounts(settings) as accounts:
        password = accounts.reset(name, actor=_operator(), via="cli")
    if name == "admin":  # the file the login page and `make demo` name stays right
        first_password.replace(settings, password)
    _print_password(settings, name, password)


@contextlib.contextmanager
def _accounts(settings):
    """The accounts of the configured database, for one command; an AccountError becomes the command's error."""
    with contextlib.closing(Store(settings.resolved_database_url, settings.outputs_dir)) as store:
        try:
            yield Accounts(store)
        except AccountError as error:
            raise click.ClickException(str(error)) from None


def _print_password(settings, name: str, password: str) -> None:
    where = f"{settings.public_url}/login" if settings.public_url else "the console's /login"
    click.echo(f"account {name}: sign in at {where} with this one-time password (shown only now); the console "
               f"then asks for a password of their own, at least {MIN_PASSWORD_LENGTH} characters\n  {password}")


def _operator() -> str:
    """Who ran the command, as the audit log names them: ``cli:<operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except OSError:  # no user name in this environment (a container without one)
        return "cli:unknown"
