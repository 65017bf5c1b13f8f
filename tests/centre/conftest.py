"""The centre's fixtures: a fresh PostgreSQL database per test module on the machine's
server (`ALARMGW_TEST_PG`, default the local one, trust auth), dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import db

ADMIN_DSN = os.environ.get("ALARMGW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def dsn_for(name: str) -> str:
    parts = urlsplit(ADMIN_DSN)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    """The DSN of an empty database of this module's own, dropped at the end."""
    name = f"alarmgw_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"no PostgreSQL at {ADMIN_DSN} (start one: scripts/postgres): {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield dsn_for(name)
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(loop_scope="function")
async def migrated(pg: str) -> AsyncIterator[str]:
    """The module's database with the centre's schema, emptied of rows before each test."""
    async with await db.connect(pg) as conn:
        await db.migrate(conn)
        await conn.execute(
            "TRUNCATE sites, events, tickets, telemetry_latest, dead_letters, centre_tickets, centre_escalations,"
            " complaints, site_assets, telemetry_daily, visit_escalations RESTART IDENTITY"
        )
    yield pg


@pytest_asyncio.fixture
async def pool(migrated: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool of two connections on the migrated database, open before the test starts."""
    p = db.pool(migrated, 2)
    await p.open(wait=True)
    try:
        yield p
    finally:
        await p.close()
