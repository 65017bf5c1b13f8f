"""The centre's PostgreSQL: a connection pool, and its schema as numbered SQL files.

Migrations are `migrations/NNNN_name.sql`, applied in order, each in its own transaction and
recorded in `schema_migrations`; applying is idempotent. Every worker migrates at start, so
two starting at once must not both apply a file: a session advisory lock makes them take
turns, and the second finds the work done.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# pg_advisory_lock keys: any two bigints the centre owns ("AGWC" + what it guards).
MIGRATE_LOCK = 0x41475743_0001
LIVENESS_LOCK = 0x41475743_0002
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
CONNECT_TIMEOUT_S = 10.0


class DatabaseError(Exception):
    """The centre's database cannot be reached or set up; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The shipped migrations in order; a gap or a repeated number is a packaging bug."""
    found = []
    for f in resources.files("alarmgw.centre.migrations").iterdir():
        m = _NAME.match(f.name)
        if m:
            found.append(Migration(int(m.group(1)), f.name, f.read_text(encoding="utf-8")))
    found.sort(key=lambda x: x.version)
    if [x.version for x in found] != list(range(1, len(found) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, 3 ...: {[x.name for x in found]}")
    return found


async def connect(dsn: str, password: str | None = None) -> psycopg.AsyncConnection[tuple[object, ...]]:
    """One connection, for migrations and tools; `DatabaseError` if it cannot be made."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, password=password, connect_timeout=int(CONNECT_TIMEOUT_S), autocommit=True
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the centre's database: {_first_line(exc)}") from None


def pool(dsn: str, size: int, password: str | None = None) -> AsyncConnectionPool:
    """A pool that is not open yet (`async with` or `await p.open()`). It reconnects by
    itself: a connection that broke is checked and replaced when next handed out."""
    kwargs: dict[str, object] = {"connect_timeout": int(CONNECT_TIMEOUT_S)}
    if password is not None:
        kwargs["password"] = password
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=size,
        kwargs=kwargs,
        open=False,
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=365 * 86_400.0,  # keep trying; the worker waits for the database
        name="centre",
    )


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[str]:
    """Apply what is not applied yet, in order; returns the names applied now."""
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {int(str(r[0])) for r in await cur.fetchall()}
        for m in migrations():
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql.encode())  # several statements: no parameters, simple protocol
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
            log.info("centre database: applied %s", m.name)
            applied_now.append(m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied_now


async def schema_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """The highest migration applied, 0 on an empty database."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    row = await cur.fetchone()
    return int(str(row[0])) if row else 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
