"""Engineers act through the desk: a move made at the centre while the site is dark waits in
the relay queue and reaches the real gateway, signed in the engineer's name, when the site
is back, keeping the time it was made (so the response clock is met as the engineer met it).
A real PostgreSQL, a real mosquitto, a real gateway with its remote desk."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alarmgw.centre import db
from alarmgw.centre.relay import Relay, RelayConfig, RelayRefused, load_keys
from alarmgw.clock import SystemClock
from alarmgw.diagnostics.tickets import TicketState
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.gateway.runtime import free_port
from tests.broker import Mosquitto
from tests.conftest import Harness, harness_for, write_site
from tests.gateway.test_remote import site, write_keys  # noqa: F401  (the fixture: a gateway with its remote desk)

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


async def ticket_rows(dsn: str, site_id: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT ticket_id, version, state FROM tickets WHERE site_id = %s ORDER BY ticket_id", (site_id,)
        )
        return await cur.fetchall()


@pytest.fixture
async def named_site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Harness, dict[str, Any]]]:
    """A gateway with its remote desk whose site id is its topic's (`alarmgw/<site id>`, the
    default), as the centre takes a site's tickets only under the site's own name."""
    write_keys(tmp_path)
    root = f"alarmgw/{tmp_path.name}"
    extra = (
        f"uplink:\n  broker: {{host: 127.0.0.1, port: {mosquitto.port}}}\n"
        "  telemetry_interval_s: null\nremote: {users_file: engineers.yaml}\n"
    )
    path = write_site(tmp_path, free_port(), extra=extra)
    path.write_text(path.read_text().replace("id: test-site,", f"id: {tmp_path.name},"))
    async with harness_for(path, start=datetime.now(UTC)) as h:
        gw = await h.start_gateway()
        assert gw.remote is not None
        async with asyncio.timeout(10):
            await gw.remote.subscribed.wait()
        yield h, {"root": root, "port": mosquitto.port, "dir": tmp_path}


async def test_ticket_versions_the_stream_lost_are_filled_in_from_the_site(
    named_site: tuple[Harness, dict[str, Any]], relay_db: str
) -> None:
    """The stream is at least once only while the broker keeps its queues (mosquitto 2.0.11
    drops the end of a resumed session's large backlog): the relay asks every online site for
    its open tickets, and for those the centre holds open that the site no longer lists, and
    keeps what is newer. Here nothing of the stream arrived at all."""
    h, ctx = named_site
    site_id = ctx["root"].split("/", 1)[1]
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    (t,) = h.gateway.store.tickets.all()
    await set_status(relay_db, site_id, "online", h.clock.now())
    pool = db.pool(relay_db, 2)
    await pool.open()
    config = RelayConfig(keys_dir=ctx["dir"], look_s=0.05, reconcile_s=0.1, reconcile_as="view-1")
    # The centre's own clock (the gateway's stands still here; both read today's time).
    keys = load_keys(Path(ctx["dir"]))
    relay = Relay(pool, BrokerSpec("127.0.0.1", ctx["port"]), "alarmgw", keys, SystemClock(), config)

    async def rows_are(want: list[tuple[Any, ...]]) -> None:
        async def check() -> bool:
            return await ticket_rows(relay_db, site_id) == want

        await wait_for(check)

    task = asyncio.create_task(relay.run())
    try:
        assert t.id is not None
        await rows_are([(t.id, t.version, "open")])  # never heard on the stream: filled in
        acked = h.gateway.store.tickets.move(t.id, TicketState.ACKNOWLEDGED, h.clock.now(), actor="eng-1")
        await rows_are([(t.id, acked.version, "acknowledged")])
        # Resolved and closed at the site: it lists it no more, so the centre asks for it by id.
        h.gateway.store.tickets.move(t.id, TicketState.RESOLVED, h.clock.now(), actor="eng-1")
        closed = h.gateway.store.tickets.move(t.id, TicketState.CLOSED, h.clock.now(), actor="eng-1")
        await rows_are([(t.id, closed.version, "closed")])
        assert relay.reconciled == 3
        rounds = relay.reconcile_rounds
        await wait_for(lambda: asyncio.sleep(0, relay.reconcile_rounds > rounds + 2))
        assert relay.reconciled == 3  # nothing newer: nothing written again
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
