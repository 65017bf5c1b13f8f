"""Hosts behind one Modbus TCP gateway (an RS-485-to-Ethernet converter): one address and
port, a unit id each. The gateway polls them over one connection, one request in flight; a
unit that does not answer is that unit's loss, not the connection's."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.drivers.errors import LinkDown
from alarmgw.drivers.modbus_client import tcp_link
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import ConfigError, load_site
from alarmgw.gateway.wiring import simulator_endpoints
from alarmgw.simulator.runner import Simulator
from tests.conftest import POLL_S, SCENARIO, SITE_HEAD, Harness

HOSTS = """\
  - id: host-1
    model: sim-wh100
    modbus: {{address: 127.0.0.1, port: {port}, unit: 1}}
    devices:
      - {{id: smoke-1, kind: smoke_detector, slot: 1}}
  - id: host-2
    model: sim-wh100
    modbus: {{address: 127.0.0.1, port: {port}, unit: {unit2}}}
    devices:
      - {{id: smoke-2, kind: smoke_detector, slot: 1}}
  - id: host-3
    model: sim-wh100
    modbus: {{address: 127.0.0.1, port: {port}, unit: 3}}
    devices:
      - {{id: pir-3, kind: pir_detector, slot: 1}}
"""

pytestmark = pytest.mark.integration  # real peers: a simulated gateway, sockets, a time-series server

DEVICES = ["host-1", "smoke-1", "host-2", "smoke-2", "host-3", "pir-3"]


def write(folder: Path, unit2: int = 2, extra: str = "", hosts: str = HOSTS) -> Path:
    path = folder / "site.yaml"
    head = SITE_HEAD.format(area="city", db="tickets.db", poll=POLL_S)
    path.write_text(head + hosts.format(port=free_port(), unit2=unit2) + extra)
    return path


@contextlib.asynccontextmanager
async def started(site_file: Path, *, hung: str | None = None, start: datetime | None = None) -> AsyncIterator[Harness]:
    """The simulated Modbus TCP gateway with its units (`hung` hung from the start), and
    alarmgw polling them."""
    site = load_site(site_file)
    clock = ManualClock(start)
    async with Simulator(simulator_endpoints(site), SCENARIO, clock=clock) as sim:
        if hung is not None:
            sim.inject(hung, "offline")
        h = Harness(site, clock, sim)
        try:
            await h.start_gateway()
            yield h
        finally:
            await h.stop_gateway()


def connections(h: Harness) -> int:
    (server,) = h.sim.servers
    return len(server.server.active_connections)


def lost(gw: Gateway) -> set[str]:
    return {d for d, faults in gw.core.active_faults().items() if "comm_loss" in faults}


async def test_hosts_at_one_address_and_port_share_one_connection(tmp_path: Path) -> None:
    async with started(write(tmp_path)) as h:
        await h.cycle(2)
        gw = h.gateway
        (link,) = gw.core.links
        assert link.name == f"127.0.0.1:{h.site.config.hosts[0].modbus.port}"  # type: ignore[union-attr]
        assert connections(h) == 1 and link.reconnects == 1
        assert all(gw.core.latest[d].values["present"] is True for d in DEVICES if not d.startswith("host"))
        assert {gw.core.latest[h_].values["link_lost"] for h_ in ("host-1", "host-2", "host-3")} == {False}
        # One lane: the three hosts' polls run back to back, one wake-up a tick.
        assert len({j.phase_s for j in gw.core.jobs if j.lane is link}) == 1


async def test_a_hung_unit_behind_the_gateway_costs_only_itself(tmp_path: Path) -> None:
    """The gateway answers exception 11 for a unit that does not answer: that unit's
    communication is lost (not a refused slot), and the connection stays up for the rest."""
    async with started(write(tmp_path)) as h:
        await h.cycle(1)
        h.sim.inject("host-3", "offline")
        await h.cycle(4)
        gw = h.gateway
        assert lost(gw) == {"host-3"}
        assert all("slot_refused" not in faults for faults in gw.core.active_faults().values())
        (link,) = gw.core.links
        assert link.reconnects == 1 and connections(h) == 1
        before = gw.core.latest["smoke-2"].at
        await h.cycle(1)
        assert gw.core.latest["smoke-2"].at > before  # still read, on the same connection


async def test_the_gateway_gone_loses_every_unit_behind_it(tmp_path: Path) -> None:
    async with started(write(tmp_path)) as h:
        await h.cycle(1)
        (server,) = h.sim.servers
        await server.stop()
        await h.cycle(4)
        assert lost(h.gateway) == {"host-1", "host-2", "host-3"}


def test_two_hosts_with_one_unit_id_at_one_address_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hosts\[1\]\.modbus\.unit: 127\.0\.0\.1:\d+ already has unit 1 \(host-1\)"):
        load_site(write(tmp_path, unit2=1))


async def test_the_first_unit_hung_from_the_start_does_not_cut_off_the_others(tmp_path: Path) -> None:
    """The first unit polled is hung before the gateway ever spoke to the second: the
    gateway's answers for it are no reason to give up the connection."""
    async with started(write(tmp_path), hung="host-1") as h:
        await h.cycle(12)
        gw = h.gateway
        assert lost(gw) == {"host-1"}
        (link,) = gw.core.links
        assert link.reconnects == 1 and gw.core.latest["host-2"].values["link_lost"] is False


# Two units; host-1 has a device polled every half interval: two jobs of one unit on the connection.
TWO_JOBS = HOSTS[: HOSTS.index("  - id: host-3")].replace(
    "      - {{id: smoke-1, kind: smoke_detector, slot: 1}}",
    f"      - {{{{id: smoke-1, kind: smoke_detector, slot: 1, poll_interval_s: {POLL_S / 2}}}}}",
)


async def test_a_hung_unit_polled_twice_as_often_does_not_cut_off_the_others(tmp_path: Path) -> None:
    async with started(write(tmp_path, hosts=TWO_JOBS)) as h:
        await h.cycle(1)
        h.sim.inject("host-1", "offline")
        await h.cycle(8)
        gw = h.gateway
        assert lost(gw) == {"host-1"}
        (link,) = gw.core.links
        assert link.reconnects == 1


async def modbus_gateway(answering: set[int]) -> tuple[asyncio.Server, int]:
    """A Modbus TCP gateway that answers a read of ten registers (all 7) for the units in
    `answering` and says nothing at all for the others, as some do."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                if unit in answering and pdu[0] == 3:
                    body = bytes([unit, 3, 20]) + struct.pack(">10H", *[7] * 10)
                    writer.write(struct.pack(">HHH", tid, 0, len(body)) + body)
                    await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_units_that_time_out_drop_the_connection_only_when_none_answers() -> None:
    """A gateway that says nothing for a unit that is not there (no exception 11): that
    unit times out and the connection stays; when no unit answers, it is given up."""
    answering = {1}
    server, port = await modbus_gateway(answering)
    link = tcp_link("gw", "127.0.0.1", port, 1, ManualClock(), timeout_s=0.1, retries=0)
    try:
        link.serve(1)
        link.serve(2)
        assert await link.read_registers("holding", 0, 10, unit=1) == [7] * 10
        for _ in range(3):
            with pytest.raises(LinkDown):
                await link.read_registers("holding", 0, 10, unit=2)
        assert link.connected and link.reconnects == 1
        assert await link.read_registers("holding", 0, 10, unit=1) == [7] * 10
        answering.clear()  # now nothing behind the gateway answers
        for unit in (2, 1):
            with pytest.raises(LinkDown):
                await link.read_registers("holding", 0, 10, unit=unit)
        assert not link.connected and link.retry_in_s > 0
    finally:
        await link.close()
        server.close()
        await server.wait_closed()


async def test_each_host_behind_the_gateway_keeps_its_link_counts_in_influxdb(tmp_path: Path) -> None:
    from tests.gateway.test_influx import influx_extra, points, until
    from tests.services import VictoriaMetrics

    vm = VictoriaMetrics(folder=tmp_path / "vm").start()
    try:
        token = tmp_path / "influx.token"
        token.write_text("not-checked-by-this-server\n")
        token.chmod(0o600)
        async with started(write(tmp_path, extra=influx_extra(vm.url)), start=datetime.now(UTC)) as h:
            await h.cycle(3)

            async def every_host() -> bool:
                got = [await points(vm, "host_link_requests", host) for host in ("host-1", "host-2", "host-3")]
                return all(got)

            await until(every_host)
    finally:
        vm.stop()
