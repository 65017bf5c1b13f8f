"""The Modbus TCP link and poller against the simulator's real server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarmgw.backoff import Backoff
from alarmgw.clock import ManualClock
from alarmgw.drivers.errors import DeviceRefused, LinkDown
from alarmgw.drivers.modbus_client import HostPoller, tcp_link
from alarmgw.drivers.modbus_map import BlockRead, load_profile
from alarmgw.gateway.runtime import free_port
from alarmgw.model import Device, DeviceKind
from alarmgw.simulator.modbus_server import HostEndpoint
from alarmgw.simulator.runner import Simulator

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

PROFILE = load_profile(Path(__file__).parents[2] / "config/profiles/sim-wh100.yaml")
HOST = Device("h1", DeviceKind.HOST, "h1", None)
SMOKE = Device("s1", DeviceKind.SMOKE_DETECTOR, "h1", "h1")
PIR = Device("p1", DeviceKind.PIR_DETECTOR, "h1", "h1")
SLOTS = [(HOST, 0), (SMOKE, 1), (PIR, 3)]


@pytest.fixture
async def served() -> AsyncIterator[tuple[Simulator, int, ManualClock]]:
    clock = ManualClock()
    port = free_port()
    async with Simulator([HostEndpoint(HOST, "127.0.0.1", port, 1, PROFILE, SLOTS)], clock=clock) as sim:
        yield sim, port, clock


async def test_merged_read_decodes_every_device(served: tuple[Simulator, int, ManualClock]) -> None:
    sim, port, clock = served
    link = tcp_link("h1", "127.0.0.1", port, 1, clock, timeout_s=0.5)
    poller = HostPoller(HOST, link, PROFILE, SLOTS, clock)
    plan = poller.plan(["h1", "s1", "p1"])
    assert [(b.address, b.count) for b in plan] == [(0, 32)]  # the empty slot 2 is read across
    sim.inject("s1", "tamper")
    readings = {r.device_id: r.values for r in await poller.poll(plan)}
    assert readings["h1"]["link_lost"] is False
    assert readings["s1"]["tamper"] is True and readings["p1"]["tamper"] is False
    assert 2.9 < float(readings["s1"]["battery_v"]) < 3.2
    assert link.requests == 1
    await link.close()


async def test_protocol_exception_is_refused_not_a_lost_link(served: tuple[Simulator, int, ManualClock]) -> None:
    _, port, clock = served
    link = tcp_link("h1", "127.0.0.1", port, 1, clock, timeout_s=0.5)
    with pytest.raises(DeviceRefused, match="exception"):
        await link.read_registers("holding", 1000, 8)  # past the end of the host's map
    assert link.refusals == 1 and link.failures == 0
    poller = HostPoller(HOST, link, PROFILE, SLOTS, clock)
    bad_then_good = [BlockRead(1000, 8, (("s1", 0),)), BlockRead(24, 8, (("p1", 0),))]
    readings = await poller.poll(bad_then_good)
    # One bad block costs itself only, and the device it was for is told so.
    assert [(r.device_id, r.values.get("slot_refused")) for r in readings] == [("s1", True), ("p1", False)]
    assert poller.refused == 1
    await link.close()


async def test_a_refused_merged_read_is_split_and_only_the_missing_slot_is_refused(
    served: tuple[Simulator, int, ManualClock],
) -> None:
    """The site file names slot 4, which the host does not have: the merged read of slots
    0-4 is refused as a whole. Every device in it must still be read, and the one in the
    missing slot must say so, instead of five devices going unmonitored without a word."""
    _, port, clock = served
    ghost = Device("g1", DeviceKind.SMOKE_DETECTOR, "h1", "h1")
    link = tcp_link("h1", "127.0.0.1", port, 1, clock, timeout_s=0.5)
    poller = HostPoller(HOST, link, PROFILE, [*SLOTS, (ghost, 4)], clock)
    plan = poller.plan(["h1", "s1", "p1", "g1"])
    assert [(b.address, b.count) for b in plan] == [(0, 40)]
    for _ in range(2):
        readings = {r.device_id: r.values for r in await poller.poll(plan)}
        assert readings["g1"] == {"slot_refused": True}
        assert readings["h1"]["link_lost"] is False and readings["h1"]["slot_refused"] is False
        assert "battery_v" in readings["s1"] and "tamper" in readings["p1"]
    # The split is remembered: the second poll sent no merged read that would be refused.
    # The merged read once, then g1's own slot in each poll.
    assert (link.requests, link.refusals) == (1 + 4 + 4, 1 + 1 + 1)
    await link.close()


async def test_dead_port_is_a_link_lost_reading_and_backs_off() -> None:
    clock = ManualClock()
    link = tcp_link("h9", "127.0.0.1", free_port(), 1, clock, timeout_s=0.3, backoff=Backoff(1.0, 8.0, jitter=0))
    poller = HostPoller(Device("h9", DeviceKind.HOST, "h9", None), link, PROFILE, [], clock)
    plan = [BlockRead(0, 8, (("h9", 0),))]
    assert [r.values for r in await poller.poll(plan)] == [{"link_lost": True}]
    # Within the backoff the link does not even try: no time is spent on a known-dead peer.
    with pytest.raises(LinkDown, match=r"next attempt in 1\.0 s"):
        await link.read_registers("holding", 0, 8)
    delays = []
    for _ in range(5):
        clock.advance(60)
        with pytest.raises(LinkDown):
            await link.read_registers("holding", 0, 8)
        delays.append(round(link.retry_in_s, 3))
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.mark.parametrize("reply", [b"\x07\x07 line noise \xff", b""], ids=["garbled", "silent"])
async def test_a_garbled_reply_counts_against_the_line_and_silence_does_not(reply: bytes) -> None:
    """Bytes that come back and do not decode are the line's trouble at once; a peer that
    says nothing may be dead, which is its own comm loss and no sign of a noisy line."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(256):
            writer.write(reply)

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = ManualClock()
    link = tcp_link("h1", "127.0.0.1", port, 1, clock, timeout_s=0.1, retries=1)
    try:
        for _ in range(4):
            with pytest.raises(LinkDown):
                await link.read_registers("holding", 0, 8)
            clock.advance(60)  # past the reconnect backoff
        assert link.requests == 8
        assert link.error_rate() == (1.0 if reply else None)
    finally:
        await link.close()
        server.close()
        await server.wait_closed()
