"""Console accounts and their sign-in sessions: who may see and do what, and who did it.

A support desk must know which of its people saw or changed what, and must
be able to shut one person out at once. So each person has a named account
with a role (``viewer`` reads; ``agent`` also works cases, labels results and
analyses uploads; ``admin`` also manages accounts and data), passwords are
kept only as argon2 hashes (``argon2-cffi``, the reference implementation's
binding), and a signed-in browser holds only a random session token whose
hash is a row here: signing out everywhere, disabling an account or resetting
its password deletes its rows, and the next request of any of its browsers
finds none. Every change to an account is written to the audit log in the
same transaction.

A generated password (a new account's, a reset one) passes through other
hands on its way to its person, so it is one-time: it signs in, and then
allows nothing but choosing the account's own password, which only its
person knows (``choose_password``; the console enforces it). The first
admin's password, from the settings or the file of earlier versions, is the
operator's own and stays as it was.

Accounts from single sign-on (OpenID Connect) have no password: they are
found by their provider's issuer and subject, never by name, so nobody at
the provider can take over a local account by choosing its name.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .alert_store import insert_new
from .audit import AuditLog
from .store import Base, Store, UTCDateTime

#: The roles, least first: each may do all that the ones before it may.
ROLES = ("viewer", "agent", "admin")
PASSWORD_BYTES = 12  # a generated password: 16 URL-safe characters
MIN_PASSWORD_LENGTH = 12  # of a password its person chooses
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._@-")

_hasher = PasswordHasher()


class AccountError(Exception):
    """An account change that cannot be made; the message says why, for the person who asked."""


class PasswordRefused(AccountError):
    """A chosen password that is not taken: ``reason`` is ``wrong_current``, ``short``, ``name`` or ``same``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"password refused: {reason}")
        self.reason = reason


class AccountRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("sso_issuer", "sso_subject", name="uq_accounts_sso"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(256))  # None: signs in through SSO only
    password_one_time: Mapped[bool] = mapped_column(Boolean, default=False)  # generated: its person chooses another
    sso_issuer: Mapped[str | None] = mapped_column(String(512))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SessionRow(Base):
    """One signed-in browser: the SHA-256 of the token its cookie carries, never the token."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: str
    enabled: bool
    sso: bool  # signs in through single sign-on, without a password
    created_at: datetime
    last_sign_in_at: datetime | None
    password_one_time: bool  # signed in with a generated password: may do nothing but choose its own

    @classmethod
    def of(cls, row: AccountRow) -> Account:
        return cls(row.id, row.name, row.role, row.enabled, row.sso_subject is not None, row.created_at,
                   row.last_sign_in_at, row.password_one_time)

    def may(self, role: str) -> bool:
        """Whether this account's role includes ``role``'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)


class Accounts:
    """The accounts and sessions of ``store``. ``actor``, ``via`` and ``address`` (the client's, from the console)
    say who asks and from where, for the audit log."""

    def __init__(self, store: Store) -> None:
        self.session = store.session
        self.audit = AuditLog(store)

    def add(self, name: str, role: str, *, actor: str, via: str, password: str | None = None,
            address: str | None = None) -> str:
        """Create a password account; its password (``password``, or a generated one-time one, shown only now)."""
        name, role = checked_name(name), checked_role(role)
        one_time = password is None
        password = password or secrets.token_urlsafe(PASSWORD_BYTES)
        with self.session.begin() as session:
            if self._insert(session, name, role, password_hash=_hasher.hash(password),
                            password_one_time=one_time) is None:
                raise AccountError(f"there is already an account named {name!r}")
            self.audit.record(actor, via, "user.add", f"user:{name}", detail=_where(address, role=role),
                              session=session)
        return password

    def add_first_admin(self, name: str, password: str) -> bool:
        """Create the admin account ``name`` with ``password`` if no account is an admin yet; whether it did.

        The upgrade from one shared console password (accounts of other roles may have been added from the
        command line before the first start): several processes may start at once, and exactly one creates it
        (the name is unique)."""
        if self.has_admin():
            return False
        with self.session.begin() as session:
            if self._insert(session, name, "admin", password_hash=_hasher.hash(password)) is None:
                return False
            self.audit.record("bot-bridge", "bot-bridge", "user.add", f"user:{name}",
                              detail={"role": "admin", "from": "the shared console password"}, session=session)
        return True

    def add_sso(self, name: str, role: str, issuer: str, subject: str, *, via: str) -> Account:
        """The account signed in as ``subject`` at ``issuer``, created (with ``role``) on its first sign-in."""
        role = checked_role(role)
        with self.session.begin() as session:
            found = session.scalar(_by_sso(issuer, subject))
            if found is None:
                if self._insert(session, checked_name(name), role, sso_issuer=issuer, sso_subject=subject) is None:
                    raise AccountError(f"the name {name!r} belongs to another account")
                found = session.scalar(_by_sso(issuer, subject))
                self.audit.record(found.name, via, "user.add", f"user:{found.name}", detail={"role": role},
                                  session=session)
            return Account.of(found)

    def set_sso_role(self, account: Account, role: str, *, via: str) -> Account:
        """Give an SSO account the role its provider's claim says, recording a change."""
        if account.role == checked_role(role):
            return account
        self._change(account.name, {"role": role}, actor=account.name, via=via, action="user.role",
                     detail={"from": account.role, "to": role})
        return self.get(account.name)

    def has_admin(self) -> bool:
        with self.session() as session:
            return session.scalar(select(AccountRow.id).where(AccountRow.role == "admin").limit(1)) is not None

    def get(self, name: str) -> Account | None:
        with self.session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name))
            return None if row is None else Account.of(row)

    def all(self) -> list[Account]:
        with self.session() as session:
            return [Account.of(row) for row in session.scalars(select(AccountRow).order_by(AccountRow.name))]

    def check_password(self, name: str, password: str) -> Account | None:
        """The enabled account ``name`` if ``password`` is its password; None otherwise (as slow either way)."""
        with self.session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name))
        stored = row.password_hash if row is not None and row.password_hash else _nobody_hash()
        if not _verified(stored, password) or row is None or not row.password_hash or not row.enabled:
            return None
        if _hasher.check_needs_rehash(stored):  # argon2's parameters grew since this hash was made
            with self.session.begin() as session:
                session.execute(update(AccountRow).where(AccountRow.id == row.id)
                                .values(password_hash=_hasher.hash(password)))
        return Account.of(row)

    def disable(self, name: str, *, actor: str, via: str, address: str | None = None) -> None:
        """Shut the account out: it cannot sign in, and its sessions end (at their next request)."""
        self._change(name, {"enabled": False}, actor=actor, via=via, action="user.disable",
                     detail=_where(address))

    def enable(self, name: str, *, actor: str, via: str, address: str | None = None) -> None:
        self._change(name, {"enabled": True}, actor=actor, via=via, action="user.enable", detail=_where(address))

    def reset(self, name: str, *, actor: str, via: str, address: str | None = None) -> str:
        """A new generated one-time password for a password account (shown only now); its sessions end."""
        account = self.get(name)
        if account is not None and account.sso:
            raise AccountError(f"{name!r} signs in through single sign-on and has no password to reset")
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        self._change(name, {"password_hash": _hasher.hash(password), "password_one_time": True}, actor=actor,
                     via=via, action="user.reset", detail=_where(address))
        return password

    def choose_password(self, name: str, current: str, new: str, *, keep_token: str,
                        address: str | None = None) -> int:
        """Replace ``name``'s password (``current``) with ``new``, chosen by its person, so no longer one-time;
        every session of the account but ``keep_token``'s ends; how many did. PasswordRefused if ``current`` is
        not its password (an SSO account has none) or ``new`` is too easy to guess."""
        with self.session.begin() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name))
            if row is None or not _verified(row.password_hash, current):
                raise PasswordRefused("wrong_current")
            _refuse_easy(name, current, new)
            row.password_hash, row.password_one_time = _hasher.hash(new), False
            ended = session.execute(delete(SessionRow).where(SessionRow.account_id == row.id,
                                                             SessionRow.token_hash != _token_hash(keep_token))).rowcount
            self.audit.record(name, "console", "account.password", f"user:{name}",
                              detail=_where(address, sessions_ended=ended), session=session)
        return ended

    # --- sessions ---

    def open_session(self, account: Account, lifetime: timedelta, address: str | None) -> str:
        """A new session for ``account``: the token its browser keeps (the database keeps only its hash)."""
        token, now = secrets.token_urlsafe(32), datetime.now(timezone.utc)
        with self.session.begin() as session:
            session.add(SessionRow(token_hash=_token_hash(token), account_id=account.id, created_at=now,
                                   expires_at=now + lifetime, address=address))
            session.execute(update(AccountRow).where(AccountRow.id == account.id).values(last_sign_in_at=now))
            session.execute(delete(SessionRow).where(SessionRow.expires_at < now))  # the expired, of anyone
        return token

    def session_account(self, token: str) -> Account | None:
        """The enabled account whose unexpired session ``token`` is; None if there is none."""
        query = (select(AccountRow).join(SessionRow, SessionRow.account_id == AccountRow.id)
                 .where(SessionRow.token_hash == _token_hash(token),
                        SessionRow.expires_at > datetime.now(timezone.utc), AccountRow.enabled.is_(True)))
        with self.session() as session:
            row = session.scalar(query)
            return None if row is None else Account.of(row)

    def end_session(self, token: str) -> None:
        with self.session.begin() as session:
            session.execute(delete(SessionRow).where(SessionRow.token_hash == _token_hash(token)))

    def end_sessions(self, name: str) -> int:
        """Sign ``name`` out everywhere; how many sessions ended."""
        with self.session.begin() as session:
            return _end_sessions(session, name)

    def sessions(self, name: str) -> int:
        """How many unexpired sessions ``name`` has."""
        query = (select(SessionRow.token_hash).join(AccountRow, SessionRow.account_id == AccountRow.id)
                 .where(AccountRow.name == name, SessionRow.expires_at > datetime.now(timezone.utc)))
        with self.session() as session:
            return len(session.scalars(query).all())

    def _insert(self, session, name: str, role: str, **values) -> int | None:
        row = {"name": name, "role": role, "enabled": True, "created_at": datetime.now(timezone.utc), **values}
        return insert_new(session, AccountRow, row, ["name"])

    def _change(self, name: str, values: dict, *, actor: str, via: str, action: str, detail: dict | None = None):
        """Change account ``name``, end its sessions, and record it; AccountError if there is no such account."""
        with self.session.begin() as session:
            changed = session.execute(update(AccountRow).where(AccountRow.name == name).values(**values)).rowcount
            if not changed:
                raise AccountError(f"there is no account named {name!r}")
            ended = _end_sessions(session, name)
            self.audit.record(actor, via, action, f"user:{name}", detail={**(detail or {}), "sessions_ended": ended},
                              session=session)


def checked_name(name: str) -> str:
    """An account name: 1 to 64 of lower-case letters, digits and ``._@-``; AccountError otherwise."""
    name = name.strip().lower()
    if not 0 < len(name) <= 64 or not set(name) <= NAME_CHARACTERS:
        raise AccountError(f"{name!r} is not an account name: use 1 to 64 letters, digits and . _ @ -")
    return name


def checked_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"{role!r} is not a role: one of {', '.join(ROLES)}")
    return role


def _refuse_easy(name: str, current: str, new: str) -> None:
    """PasswordRefused if ``new`` is too short, the account's name, or the password it replaces."""
    if len(new) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused("short")
    if new.strip().lower() == name:
        raise PasswordRefused("name")
    if new == current:
        raise PasswordRefused("same")


def _verified(stored: str | None, password: str) -> bool:
    try:
        return stored is not None and _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _nobody_hash() -> str:
    """Checked against when a name is unknown, so a wrong name takes as long as a wrong password."""
    return _hasher.hash(secrets.token_urlsafe(PASSWORD_BYTES))


def _where(address: str | None, **detail) -> dict:
    return {**detail, "address": address} if address else detail


def _by_sso(issuer: str, subject: str):
    return select(AccountRow).where(AccountRow.sso_issuer == issuer, AccountRow.sso_subject == subject)


def _end_sessions(session, name: str) -> int:
    account_id = select(AccountRow.id).where(AccountRow.name == name).scalar_subquery()
    return session.execute(delete(SessionRow).where(SessionRow.account_id == account_id)).rowcount


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
