"""The uplink to the service centre through a real mosquitto, checked by a separate
subscriber: contents, a broker outage while faults happen, and a gateway killed with
SIGKILL while its outbox is full."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alarmgw.diagnostics.tickets import TicketState
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.uplink import RECHECK_S
from tests.broker import Mosquitto
from tests.conftest import Harness, harness_for, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

UPLINK = """\
uplink:
  broker: {{host: 127.0.0.1, port: {port}}}
  topic_root: centre/{root}
  telemetry_interval_s: {telemetry}
"""


class Listener:
    """The service centre: a subscriber on the site's topic root that survives outages."""

    def __init__(self, port: int, root: str) -> None:
        self.port = port
        self.root = root
        self.messages: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port) as client:
                    await client.subscribe(f"{self.root}/#", qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        raw = bytes(m.payload) if isinstance(m.payload, bytes | bytearray) else str(m.payload).encode()
                        try:
                            doc: Any = json.loads(raw)
                        except ValueError:
                            doc = raw.decode()
                        self.messages.append((m.topic.value, doc))
                        self.changed.set()
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.1)  # the broker is down: try again soon

    def tickets(self) -> list[dict[str, Any]]:
        seen, out = set(), []
        for topic, doc in self.messages:
            if "/tickets/" in topic and doc["event_id"] not in seen:  # at least once: de-duplicate
                seen.add(doc["event_id"])
                out.append(doc)
        return out

    async def wait_for(self, check: Any, timeout_s: float = 20) -> None:
        async with asyncio.timeout(timeout_s):
            while not check():
                self.changed.clear()
                await self.changed.wait()


async def drained(gw: Any) -> None:
    """Wait until the outbox is empty: the broker acknowledged everything (the subscriber
    may see the last message before the gateway has processed its PUBACK)."""
    async with asyncio.timeout(10):
        while gw.store.outbox.depth():
            await gw.uplink.published_event.wait()


@contextlib.asynccontextmanager
async def listening(port: int, root: str) -> AsyncIterator[Listener]:
    listener = Listener(port, root)
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(10):
            await listener.subscribed.wait()
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def uplinked(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Harness, Listener]]:
    root = tmp_path.name
    site = write_site(tmp_path, free_port(), extra=UPLINK.format(port=mosquitto.port, root=root, telemetry=5))
    async with listening(mosquitto.port, f"centre/{root}") as listener, harness_for(site) as h:
        await h.start_gateway()
        yield h, listener


async def test_uplink_carries_availability_faults_and_every_ticket_change(uplinked: tuple[Harness, Listener]) -> None:
    h, listener = uplinked
    root = listener.root
    await listener.wait_for(lambda: (f"{root}/status", "online") in listener.messages)
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    await listener.wait_for(lambda: len(listener.tickets()) == 1)
    (opened,) = listener.tickets()
    assert opened["event_id"] == f"test-site:ticket:{opened['ticket']['id']}:1"
    assert (opened["action"], opened["ticket"]["device"], opened["ticket"]["fault"]) == ("opened", "pir-2", "tamper")
    assert opened["ticket"]["clocks"]["response"]["due"].endswith("Z")
    faults = [doc for topic, doc in listener.messages if topic == f"{root}/faults/pir-2"]
    assert faults and faults[0]["state"] == "raised" and faults[0]["contact_id"] == 383
    h.gateway.core.move(opened["ticket"]["id"], TicketState.ACKNOWLEDGED, actor="eng-1")
    await listener.wait_for(lambda: len(listener.tickets()) == 2)
    assert listener.tickets()[1]["action"] == "acknowledged"
    assert listener.tickets()[1]["ticket"]["version"] == 2
    await h.cycle(1)  # telemetry goes out at its interval too, QoS 0
    await listener.wait_for(lambda: any(t == f"{root}/telemetry/smoke-1" for t, _ in listener.messages))
    (tele, *_) = [doc for t, doc in listener.messages if t == f"{root}/telemetry/smoke-1"]
    assert tele["schema"] == "alarmgw/telemetry/1" and 2.5 < tele["values"]["battery_v"] < 3.3
    # the asset register and the maintenance plan, for the centre's plans across sites
    (assets,) = [doc for t, doc in listener.messages if t == f"{root}/assets"]
    assert (assets["schema"], assets["site"]) == ("alarmgw/assets/1", "test-site")
    assert assets["warranty_until"] == "2026-12-31"
    assert [v["kind"] for v in assets["visits"]][:3] == ["monthly"] * 3
    assert {d["device"] for d in assets["devices"]} >= {"host-1", "smoke-1", "pir-2"}


async def test_broker_outage_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    broker = Mosquitto().start()
    try:
        root = tmp_path.name
        site = write_site(tmp_path, free_port(), extra=UPLINK.format(port=broker.port, root=root, telemetry="null"))
        async with listening(broker.port, f"centre/{root}") as listener, harness_for(site) as h:
            gw = await h.start_gateway()
            assert gw.uplink is not None
            async with asyncio.timeout(10):
                await gw.uplink.connected.wait()
            # Connected, and nothing in flight: the empty outbox has been reported replayed.
            await listener.wait_for(lambda: f"centre/{root}/replayed" in [t for t, _ in listener.messages])
            broker.stop()  # the service centre's broker goes away for six 5-s polls of the gateway's clock
            h.sim.inject("pir-2", "tamper")
            h.sim.inject("smoke-1", "low_battery")
            await h.cycle(4)
            for t in gw.store.tickets.all():
                gw.core.move(t.id or 0, TicketState.ACKNOWLEDGED, actor="eng-1")
            h.sim.inject("pir-3", "tamper", duration=10)
            await h.cycle(2)
            depth = gw.store.outbox.depth()
            assert depth >= 7
            broker.start()  # same port
            async with asyncio.timeout(10):
                await listener.subscribed.wait()
            for _ in range(30):  # poll on until the uplink's backoff (up to ~16 s by now) runs out
                await h.cycle(1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gw.uplink.connected.wait(), 0.2)
                    break
            assert gw.uplink.connected.is_set()
            await listener.wait_for(lambda: len(listener.tickets()) >= 5)
            await drained(gw)

            # ... and then says the outbox is replayed, after everything it held.
            def replayed_after_the_tickets() -> bool:
                topics = [t for t, _ in listener.messages]
                last_ticket = max(i for i, t in enumerate(topics) if "/tickets/" in t)
                return f"centre/{root}/replayed" in topics[last_ticket:]

            await listener.wait_for(replayed_after_the_tickets)
        by_ticket: dict[int, list[int]] = {}
        for ev in listener.tickets():
            by_ticket.setdefault(ev["ticket"]["id"], []).append(ev["ticket"]["version"])
        assert len(by_ticket) == 3
        for versions in by_ticket.values():
            assert versions == list(range(1, len(versions) + 1))  # in order, none missing
        assert sorted(len(v) for v in by_ticket.values()) == [1, 2, 2]
    finally:
        broker.stop()


def test_gateway_killed_with_a_full_outbox_delivers_after_restart(tmp_path: Path) -> None:
    broker_port = free_port()  # nothing listens here yet: the centre is unreachable
    root = tmp_path.name
    site = write_site(
        tmp_path, free_port(), poll=0.3, extra=UPLINK.format(port=broker_port, root=root, telemetry="null")
    )
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        "faults:\n  - {at: 0.2, device: pir-2, fault: tamper}\n  - {at: 0.2, device: pir-3, fault: tamper}\n"
    )
    run = [sys.executable, "-m", "alarmgw.gateway.cli"]
    sim = subprocess.Popen(
        [*run, "simulate", "-c", str(site), "--scenario", str(scenario)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    gw: subprocess.Popen[bytes] | None = None
    broker = Mosquitto(broker_port)
    try:
        assert sim.stdout is not None and json.loads(sim.stdout.readline())["event"] == "ready"
        gw = subprocess.Popen([*run, "run", "-c", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        db = tmp_path / "tickets.db"

        def outbox() -> int:
            if not db.exists():
                return 0
            with contextlib.closing(sqlite3.connect(db)) as c:
                try:
                    return int(c.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'ticket'").fetchone()[0])
                except sqlite3.OperationalError:
                    return 0

        from tests.gateway.test_cli import wait_for

        wait_for("two ticket events in the outbox", lambda: outbox() >= 2)
        os.kill(gw.pid, signal.SIGKILL)
        gw.wait(10)
        assert outbox() >= 2  # nothing was sent, nothing was lost
        broker.start()

        async def centre() -> list[dict[str, Any]]:
            async with listening(broker_port, f"centre/{root}") as listener:
                restarted = await asyncio.to_thread(
                    subprocess.Popen,
                    [*run, "run", "-c", str(site)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    await listener.wait_for(lambda: len(listener.tickets()) >= 2)
                    # The centre may see a message before the gateway has its PUBACK; the
                    # row goes only then. An outside process: look until it is gone.
                    async with asyncio.timeout(10):
                        while outbox():  # noqa: ASYNC110 - another process's file: there is no event
                            await asyncio.sleep(0.05)
                finally:
                    restarted.terminate()
                    restarted.wait(10)
                return listener.tickets()

        events = asyncio.run(centre())
        assert sorted(e["ticket"]["device"] for e in events) == ["pir-2", "pir-3"]
        assert all(e["action"] == "opened" for e in events)
        assert outbox() == 0
    finally:
        if gw is not None and gw.poll() is None:
            gw.kill()
        sim.terminate()
        sim.wait(10)
        broker.stop()


async def test_tls_uplink_verifies_the_broker_and_never_falls_back(tmp_path: Path) -> None:
    from tests.broker import make_ca_and_server_cert

    ca, cert, key = make_ca_and_server_cert(tmp_path, "centre")
    other_ca, _, _ = make_ca_and_server_cert(tmp_path, "stranger")
    broker = Mosquitto(tls=(ca, cert, key)).start()
    try:
        for trusted, expect_connect in ((other_ca, False), (ca, True)):
            folder = tmp_path / trusted.stem
            folder.mkdir()
            extra = (
                f"uplink:\n  broker: {{host: 127.0.0.1, port: {broker.port}, tls: {{ca_file: {trusted}}}}}\n"
                "  telemetry_interval_s: null\n"
            )
            site = write_site(folder, free_port(), extra=extra)
            async with harness_for(site) as h:
                gw = await h.start_gateway()
                assert gw.uplink is not None
                h.sim.inject("pir-2", "tamper")
                await h.cycle(1)
                if expect_connect:
                    async with asyncio.timeout(10):
                        await gw.uplink.connected.wait()
                    async with asyncio.timeout(10):
                        while gw.store.outbox.depth():
                            await gw.uplink.published_event.wait()
                else:
                    await h.cycle(3)  # several attempts, each refused by certificate checks
                    assert not gw.uplink.connected.is_set()
                    assert gw.uplink.published == 0 and gw.store.outbox.depth() > 0  # kept, not sent in clear
    finally:
        broker.stop()


async def test_a_ticket_moved_from_the_command_line_reaches_the_centre(uplinked: tuple[Harness, Listener]) -> None:
    h, listener = uplinked
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    await listener.wait_for(lambda: len(listener.tickets()) == 1)
    ticket_id = str(listener.tickets()[0]["ticket"]["id"])
    for move in ("ack", "dispatch"):
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alarmgw.gateway.cli", "tickets", move, ticket_id,
            "--db", str(h.site.store_path), "--by", "tech-7",
        )  # fmt: skip
        assert await cli.wait() == 0
    h.clock.advance(RECHECK_S)  # nothing in this process woke the uplink: it looks at the outbox by itself
    await listener.wait_for(lambda: len(listener.tickets()) == 3)
    moves = [(t["action"], t["ticket"]["version"], t["ticket"]["state"]) for t in listener.tickets()]
    assert moves == [("opened", 1, "open"), ("acknowledged", 2, "acknowledged"), ("dispatched", 3, "dispatched")]
