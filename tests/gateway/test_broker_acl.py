"""The service centre's broker shared by every site, run as docs/security.md ships it
(deploy/mosquitto-acl.conf, passwords, no anonymous clients): a site works end to end with
its own credentials, and a box holding site A's credentials can neither read site B's
topics, nor publish on B's `cmd`, nor forge B's tickets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from alarmgw.drivers.mqtt_link import BrokerSpec, payload_bytes
from alarmgw.gateway.runtime import free_port
from tests.broker import Mosquitto
from tests.conftest import harness_for, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"site-a": "site-a-password", "site-b": "site-b-password", "eng-1": "eng-password", "centre-ingest": "c-pw"}


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto(users=PASSWORDS, acl_file=ROOT / "deploy" / "mosquitto-acl.conf").start()
    yield b
    b.stop()


@contextlib.asynccontextmanager
async def client(broker: Mosquitto, user: str) -> AsyncIterator[aiomqtt.Client]:
    spec = BrokerSpec("127.0.0.1", broker.port, username=user, password=PASSWORDS[user], client_id=f"{user}-test")
    async with spec.client() as c:
        yield c


class Inbox:
    """What one client receives, with a way to wait for a marker message."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    async def run(self, c: aiomqtt.Client) -> None:
        async for m in c.messages:
            self.seen.append((m.topic.value, payload_bytes(m)))
            self.changed.set()

    async def until(self, topic: str, payload: bytes) -> None:
        async with asyncio.timeout(10):
            while (topic, payload) not in self.seen:
                self.changed.clear()
                await self.changed.wait()


async def test_a_site_reaches_its_own_tree_and_nothing_else(tmp_path: Path, broker: Mosquitto) -> None:
    extra = (
        f"uplink:\n  broker: {{host: 127.0.0.1, port: {broker.port}, username: site-a, password: site-a-password}}\n"
        "  topic_root: alarmgw/site-a\n  telemetry_interval_s: null\n"
    )
    async with (
        client(broker, "centre-ingest") as centre,
        client(broker, "site-b") as site_b,
        client(broker, "site-a") as thief,
        asyncio.TaskGroup() as tg,
    ):
        centre_inbox, b_inbox, thief_inbox = Inbox(), Inbox(), Inbox()
        await centre.subscribe("alarmgw/#", qos=1)
        await site_b.subscribe("alarmgw/site-b/cmd", qos=1)
        # mosquitto grants a wildcard subscription and checks read access per message at delivery.
        await thief.subscribe("alarmgw/site-b/#", qos=1)
        await thief.subscribe("alarmgw/site-a/#", qos=1)
        tasks = [tg.create_task(i.run(c)) for i, c in ((centre_inbox, centre), (b_inbox, site_b), (thief_inbox, thief))]

        # Site A's gateway, with site A's credentials, end to end: its ticket reaches the centre.
        async with harness_for(write_site(tmp_path, free_port(), extra=extra)) as h:
            gw = await h.start_gateway()
            assert gw.uplink is not None
            async with asyncio.timeout(10):
                await gw.uplink.connected.wait()
            h.sim.inject("pir-2", "tamper")
            await h.cycle(1)
            async with asyncio.timeout(10):
                while not any(t.startswith("alarmgw/site-a/tickets/") for t, _ in centre_inbox.seen):
                    centre_inbox.changed.clear()
                    await centre_inbox.changed.wait()

        # Holding site A's credentials: a command on B's cmd topic and a forged ticket of B's.
        forged = json.dumps({"site": "site-b", "action": "closed", "ticket": {"id": 1}}).encode()
        await thief.publish("alarmgw/site-b/cmd", b'{"command": "close"}', qos=1)
        await thief.publish("alarmgw/site-b/tickets/1", forged, qos=1)
        # Then what may pass: an engineer's command to B, and B's own ticket event.
        async with client(broker, "eng-1") as engineer:
            await engineer.publish("alarmgw/site-b/cmd", b"from the engineer", qos=1)
        await site_b.publish("alarmgw/site-b/tickets/1", b"site b's own", qos=1)
        await thief.publish("alarmgw/site-a/marker", b"after", qos=1)  # A's own tree: allowed

        await b_inbox.until("alarmgw/site-b/cmd", b"from the engineer")
        await centre_inbox.until("alarmgw/site-b/tickets/1", b"site b's own")
        await thief_inbox.until("alarmgw/site-a/marker", b"after")
        assert [p for t, p in b_inbox.seen] == [b"from the engineer"]  # the forged command never arrived
        assert [p for t, p in centre_inbox.seen if t == "alarmgw/site-b/tickets/1"] == [b"site b's own"]
        assert [t for t, _ in thief_inbox.seen if t.startswith("alarmgw/site-b/")] == []  # B's tree unreadable
        for task in tasks:
            task.cancel()


async def test_nobody_gets_in_without_credentials(broker: Mosquitto) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5):
            pass
