"""Who may use the desk: users with a role, passwords hashed with argon2id, bearer tokens
that expire, and the audit trail of what each did.

A login gives a bearer token rather than a session cookie: the browser never sends it by
itself, so no other page can make the desk act (no cross-site request forgery to guard
against), and scripts use the same header as the dashboard. The token is 32 random bytes;
only its SHA-256 is stored (the token is too random to guess, so a slow hash buys nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Conn = psycopg.AsyncConnection[tuple[object, ...]]


class Pool(Protocol):
    """What the desk asks of a connection pool (`psycopg_pool.AsyncConnectionPool` is one)."""

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Conn]: ...


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 takes any length; a bound keeps a login's cost known
_HASHER = PasswordHasher()
# Verified when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class Role(StrEnum):
    VIEWER = "viewer"  # reads
    ENGINEER = "engineer"  # reads, moves tickets
    DISPATCHER = "dispatcher"  # reads, moves tickets, assigns engineers, reads the audit


class Permission(StrEnum):
    READ = "read"
    MOVE = "move"
    ASSIGN = "assign"
    AUDIT = "audit"


# The whole policy: role -> what it may do.
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.ENGINEER: frozenset({Permission.READ, Permission.MOVE}),
    Role.DISPATCHER: frozenset(Permission),
}


class UserError(ValueError):
    """A user that cannot be added: a bad name, role or password, or a name taken."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


@dataclass(frozen=True, slots=True)
class Login:
    user: User
    token: str  # shown once; only its hash is kept
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_user(pool: Pool, name: str, role: str, password: str, now: datetime | None = None) -> User:
    """Add a desk user; `UserError` for a bad name, role or password, or a name taken."""
    now = now or datetime.now(UTC)
    if not NAME.match(name):
        raise UserError(
            f"{name[:70]!r}: a user name is 1 to 64 letters, digits, _ . @ -, starting with one of the first two"
        )
    try:
        r = Role(role)
    except ValueError:
        raise UserError(f"{role[:40]!r}: a role is one of {', '.join(Role)}") from None
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password of {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    hashed = await asyncio.to_thread(_HASHER.hash, password)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO desk_users (name, role, password_hash, created_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO NOTHING",
            (name, r.value, hashed, now),
        )
        if cur.rowcount != 1:
            raise UserError(f"a user named {name!r} exists already")
    return User(name, r)


async def make_token(conn: Conn, user: User, now: datetime, lifetime_s: float) -> Login:
    """A new bearer token for `user`, valid `lifetime_s` from `now`."""
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=lifetime_s)
    await conn.execute(
        "INSERT INTO desk_tokens (token_sha256, user_name, created_at, expires_at) VALUES (%s, %s, %s, %s)",
        (token_hash(token), user.name, now, expires),
    )
    return Login(user, token, expires)


async def login(pool: Pool, name: str, password: str, now: datetime, lifetime_s: float) -> Login | None:
    """A token for the right name and password, None otherwise; audited either way. Expired
    tokens are swept here, where logins are rare enough to pay for it."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT role, password_hash FROM desk_users WHERE name = %s", (name,))
        row = await cur.fetchone()
    stored = str(row[1]) if row else _DUMMY_HASH
    ok = len(password) <= MAX_PASSWORD and await asyncio.to_thread(_verify, stored, password)
    async with pool.connection() as conn, conn.transaction():
        if row is None or not ok:
            await audit(conn, now, name[:64], "login", "", "refused: wrong name or password")
            return None
        user = User(name, Role(str(row[0])))
        await conn.execute("DELETE FROM desk_tokens WHERE expires_at <= %s", (now,))
        made = await make_token(conn, user, now, lifetime_s)
        await audit(conn, now, name, "login", "", "ok", {"expires_at": made.expires_at.isoformat()})
        return made


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def holder(pool: Pool, token: str, now: datetime) -> User | None:
    """The user a bearer token belongs to, None if it is unknown or expired."""
    if not 20 <= len(token) <= 100:
        return None
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT u.name, u.role FROM desk_tokens t JOIN desk_users u ON u.name = t.user_name"
            " WHERE t.token_sha256 = %s AND t.expires_at > %s",
            (token_hash(token), now),
        )
        row = await cur.fetchone()
    return User(str(row[0]), Role(str(row[1]))) if row else None


async def logout(pool: Pool, token: str, user: User, now: datetime) -> None:
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM desk_tokens WHERE token_sha256 = %s", (token_hash(token),))
        await audit(conn, now, user.name, "logout", "", "ok")


async def audit(
    conn: Conn, at: datetime, user: str, action: str, target: str, result: str, detail: dict[str, object] | None = None
) -> None:
    """One line of the audit trail, in the caller's transaction."""
    await conn.execute(
        "INSERT INTO desk_audit (at, user_name, action, target, result, detail) VALUES (%s, %s, %s, %s, %s, %s)",
        (at, user, action, target, result[:500], json.dumps(detail or {})),
    )
