"""Nothing is lost when a worker dies at any moment, or when PostgreSQL restarts under load:
messages are acknowledged only after their batch commits, and the broker keeps what it
queued for a worker's persistent session until the worker comes back with the same id."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from alarmgw.centre import db
from tests.broker import Mosquitto
from tests.centre.private_pg import PrivatePostgres
from tests.centre.uplink import fault_message
from tests.centre.workers import fresh_root, publish, rows_until, scalar, until, worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT_DIR = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def roomy_broker() -> Iterator[Mosquitto]:
    """A broker set as the centre's should be: no cap on what it queues for a session (the
    default, 1,000 messages, would drop the rest of a dead worker's share)."""
    broker = Mosquitto()
    broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 0\n")
    broker.start()
    yield broker
    broker.stop()


def stream(root: str, n: int, start: int = 0) -> list[object]:
    return [fault_message(f"site-{i % 5}", f"dev-{i}", n=i, prefix=root) for i in range(start, start + n)]


async def test_a_worker_that_stops_gets_what_was_queued_for_it_when_it_comes_back(
    migrated: str, roomy_broker: Mosquitto
) -> None:
    root = fresh_root()
    client_id = f"w-{root}"
    async with worker(migrated, roomy_broker.port, root, client_id) as w:
        await publish(roomy_broker.port, stream(root, 100))  # type: ignore[arg-type]
        await until([w], lambda: w.counters.handled() == 100)
    await publish(roomy_broker.port, stream(root, 400, 100))  # type: ignore[arg-type]  # nobody listening
    async with worker(migrated, roomy_broker.port, root, client_id) as w:
        await until([w], lambda: w.counters.handled() == 400)
    assert await scalar(migrated, "SELECT count(*) FROM events") == 500


@pytest.mark.parametrize("max_waiting_bytes", [1024 * 1024, 64 * 1024 * 1024], ids=["1 MiB", "64 MiB"])
async def test_a_long_queue_replayed_past_the_receive_maximum_is_all_taken(
    migrated: str, roomy_broker: Mosquitto, max_waiting_bytes: int
) -> None:
    """mosquitto 2.0 replays a resumed session's queue past the Receive Maximum once
    acknowledgements flow; what the worker may not hold (`max_waiting_bytes`) it leaves
    unacknowledged and has sent again (how that bound is kept: tests/centre/test_inbox.py)."""
    root = fresh_root()
    client_id = f"w-{root}"
    kw = {"batch_max": 50, "max_waiting_bytes": max_waiting_bytes}  # Receive Maximum 100
    async with worker(migrated, roomy_broker.port, root, client_id, **kw):
        pass  # the session exists from here on
    n = 12_000  # 1 MiB holds about 450 of these (payload and overhead), 64 MiB all of them
    await publish(roomy_broker.port, stream(root, n))  # type: ignore[arg-type]
    async with worker(migrated, roomy_broker.port, root, client_id, **kw) as w:
        await until([w], lambda: w.counters.stored == n, timeout_s=60)
    assert await scalar(migrated, "SELECT count(*) FROM events") == n
    assert w.counters.dead == 0


def centre_file(tmp_path: Path, dsn: str, port: int, root: str) -> Path:
    p = tmp_path / "centre.yaml"
    p.write_text(
        f"database: {{dsn: '{dsn}'}}\n"
        f"broker: {{host: 127.0.0.1, port: {port}}}\n"
        f"ingest: {{topic_root: {root}, client_id: c-{root}, batch_max: 100, batch_wait_s: 0.05}}\n"
    )
    return p


def spawn(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The process, and how many times the log said `subscribed` before it started."""
    seen = log.read_text().count("subscribed") if log.exists() else 0
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "alarmgw.gateway.cli", "centre", "ingest", "-c", str(config), "--worker", "1"],
            cwd=ROOT_DIR,
            stdout=subprocess.DEVNULL,
            stderr=err,
        ), seen


async def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """`centre ingest` in a process of its own, once it has subscribed (its log says so)."""
    proc, seen = await asyncio.to_thread(spawn, config, log)
    async with asyncio.timeout(20):
        while (text := await asyncio.to_thread(log.read_text)).count("subscribed") == seen:
            assert proc.poll() is None, text
            await asyncio.sleep(0.05)
    return proc


async def test_a_worker_killed_mid_stream_and_restarted_loses_nothing(
    migrated: str, roomy_broker: Mosquitto, tmp_path: Path
) -> None:
    root = fresh_root()
    config = centre_file(tmp_path, migrated, roomy_broker.port, root)
    n = 3000
    log = tmp_path / "worker.log"
    proc = await start_worker(config, log)
    try:
        sending = asyncio.create_task(publish(roomy_broker.port, stream(root, n)))  # type: ignore[arg-type]
        got = 0
        async with asyncio.timeout(30):
            while got < 300:  # mid-stream: some committed, more in flight and queued
                got = int(str(await scalar(migrated, "SELECT count(*) FROM events")))
                await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await sending
        proc = await start_worker(config, log)
        assert await rows_until(migrated, "SELECT count(*) FROM events", n, timeout_s=60) == n
        assert await scalar(migrated, "SELECT count(*) FROM dead_letters") == 0
    finally:
        proc.terminate()
        proc.wait(10)


@pytest_asyncio.fixture
async def restartable_pg() -> AsyncIterator[PrivatePostgres]:
    pg = PrivatePostgres()
    if not pg.available:
        pytest.skip("no PostgreSQL binaries to run a cluster of this test's own (scripts/postgres installs them)")
    await asyncio.to_thread(pg.init)
    try:
        async with await db.connect(pg.dsn) as conn:
            await db.migrate(conn)
        yield pg
    finally:
        await asyncio.to_thread(pg.remove)


async def test_postgresql_restarted_under_load_the_worker_waits_and_loses_nothing(
    restartable_pg: PrivatePostgres, roomy_broker: Mosquitto
) -> None:
    root = fresh_root()
    n = 3000
    async with worker(restartable_pg.dsn, roomy_broker.port, root, batch_max=100) as w:
        sending = asyncio.create_task(publish(roomy_broker.port, stream(root, n)))  # type: ignore[arg-type]
        await until([w], lambda: w.counters.handled() >= 300)
        await asyncio.to_thread(restartable_pg.stop, "immediate")  # a crash, in the middle of batches
        await sending  # the broker holds the stream meanwhile
        await asyncio.sleep(1.0)  # the worker finds the database gone and waits
        assert w.counters.handled() < n
        await asyncio.to_thread(restartable_pg.start)
        await until([w], lambda: w.counters.handled() >= n, timeout_s=60)
        assert w.pool.get_stats().get("connections_errors", 0) >= 1  # it really was away
    assert await scalar(restartable_pg.dsn, "SELECT count(DISTINCT event_id) FROM events") == n
    assert w.counters.stored + w.counters.duplicates == n and w.counters.dead == 0
