"""Engineers act through the desk: a move made at the centre while the site is dark waits in
the relay queue and reaches the real gateway, signed in the engineer's name, when the site
is back, keeping the time it was made (so the response clock is met as the engineer met it).
A real PostgreSQL, a real mosquitto, a real gateway with its remote desk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alarmgw.centre import db
from alarmgw.centre.relay import Relay, RelayConfig, RelayRefused, load_keys
from alarmgw.drivers.mqtt_link import BrokerSpec
from tests.conftest import Harness
from tests.gateway.test_remote import site  # noqa: F401  (the fixture: a gateway with its remote desk)

pytestmark = pytest.mark.integration


@pytest.fixture
async def relay_db(pg: str) -> AsyncIterator[str]:
    async with await db.connect(pg) as conn:
        await db.migrate(conn)
        await conn.execute("TRUNCATE sites, relay_queue RESTART IDENTITY CASCADE")
    yield pg


async def set_status(dsn: str, site_id: str, status: str, clock_now: Any) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO sites (id, topic_root, status, status_at, first_heard_at) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, status_at = excluded.status_at",
            (site_id, f"alarmgw/{site_id}", status, clock_now, clock_now),
        )


async def queue_rows(dsn: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT state, attempts, answer FROM relay_queue ORDER BY id")
        return await cur.fetchall()


async def wait_for(check: Any, timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - rows in a database, nothing to wait on
            await asyncio.sleep(0.05)


async def test_a_move_made_while_the_site_is_dark_is_delivered_with_its_time(
    site: tuple[Harness, dict[str, Any]],  # noqa: F811
    relay_db: str,
) -> None:
    h, ctx = site
    site_id = ctx["root"].split("/", 1)[1]
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    (t,) = h.gateway.store.tickets.all()
    await set_status(relay_db, site_id, "offline", h.clock.now())
    keys = load_keys(Path(ctx["dir"]))
    assert set(keys) == {"eng-1", "view-1"}
    pool = db.pool(relay_db, 2)
    await pool.open()
    relay = Relay(
        pool,
        BrokerSpec("127.0.0.1", ctx["port"]),
        "alarmgw",
        keys,
        h.clock,
        RelayConfig(keys_dir=ctx["dir"], look_s=0.1),
    )
    task = asyncio.create_task(relay.run())
    try:
        made = t.opened_at + timedelta(minutes=20)
        with pytest.raises(RelayRefused, match="no key at the centre"):
            await relay.move(site_id, t.id or 0, "ack", "nobody", made_at=made)
        await relay.move(site_id, t.id or 0, "ack", "eng-1", note="called the customer", made_at=made)
        await asyncio.sleep(0.5)
        assert [r[:2] for r in await queue_rows(relay_db)] == [("pending", 0)]  # the site is dark: it waits
        h.clock.advance(2 * 3600)  # two hours later the site is back
        await set_status(relay_db, site_id, "online", h.clock.now())

        async def settled() -> bool:
            return (await queue_rows(relay_db))[0][0] != "pending"

        await wait_for(settled)
        ((state, attempts, answer),) = await queue_rows(relay_db)
        assert (state, attempts) == ("done", 1), answer
        stored = h.gateway.store.tickets.get(t.id or 0)
        assert stored.acknowledged_at == made  # the time it was made, not the time it arrived
        assert answer["result"]["clocks"]["response"]["state"] == "met"
        log = h.gateway.store.tickets.log(t.id or 0)[-1]
        assert (log["actor"], log["note"]) == ("eng-1", "called the customer")
        # A move the ticket cannot take any more is settled as refused, with the gateway's reason.
        await relay.move(site_id, t.id or 0, "ack", "eng-1", made_at=made + timedelta(minutes=1))

        async def second_settled() -> bool:
            rows = await queue_rows(relay_db)
            return len(rows) == 2 and rows[1][0] != "pending"

        await wait_for(second_settled)
        assert (await queue_rows(relay_db))[1][0] == "refused"
        assert relay.delivered == 1 and relay.refused == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
