"""Running ingest workers in a test: a real broker, a real PostgreSQL, a worker task."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence

import aiomqtt
import psycopg

from alarmgw.centre import db
from alarmgw.centre.config import IngestConfig, SitesConfig
from alarmgw.centre.ingest import IngestWorker
from alarmgw.clock import Clock, SystemClock
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.gateway.messages import OutboxMessage
from alarmgw.tasks import cancel_and_wait

WAIT_S = 20.0


def fresh_root() -> str:
    """A topic root of the test's own, so tests on one broker never see each other's."""
    return f"t{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def worker(
    dsn: str,
    port: int,
    root: str,
    client_id: str | None = None,
    *,
    clock: Clock | None = None,
    sites: SitesConfig | None = None,
    group: str = "centre",
    batch_max: int = 500,
    batch_wait_s: float = 0.05,
    max_waiting_bytes: int = 64 * 1024 * 1024,
) -> AsyncIterator[IngestWorker]:
    cfg = IngestConfig(
        group=group,
        topic_root=root,
        client_id=client_id or f"w-{root}",
        batch_max=batch_max,
        batch_wait_s=batch_wait_s,
        max_waiting_bytes=max_waiting_bytes,
    )
    async with db.pool(dsn, 4) as pool:
        w = IngestWorker(
            BrokerSpec("127.0.0.1", port), cfg.client_id, cfg, sites or SitesConfig(), pool, clock or SystemClock()
        )
        task = asyncio.create_task(w.run())
        try:
            await asyncio.wait_for(w.subscribed.wait(), WAIT_S)
            yield w
        finally:
            await cancel_and_wait(task)


async def publish(port: int, messages: Sequence[OutboxMessage | tuple[str, bytes]], *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        for m in messages:
            topic, payload = (m.topic, m.payload) if isinstance(m, OutboxMessage) else m
            await c.publish(topic, payload, qos=1, retain=retain)


async def until(workers: Sequence[IngestWorker], check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait, with a bound, until `check()` holds; it is looked at after each batch."""
    async with asyncio.timeout(timeout_s):
        while not check():
            waits = [asyncio.ensure_future(w.batch_done.wait()) for w in workers]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for f in waits:
                    f.cancel()


async def rows_until(dsn: str, query: str, want: object, timeout_s: float = WAIT_S) -> object:
    """Poll a query until it gives `want` (the database is written by another task)."""
    got: object = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while True:
                got = await scalar(dsn, query)
                if got == want:
                    return got
                await asyncio.sleep(0.05)
    return got


async def scalar(dsn: str, query: str) -> object:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query.encode())
        row = await cur.fetchone()
        return None if row is None else row[0]
