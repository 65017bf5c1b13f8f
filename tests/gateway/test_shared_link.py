"""Hosts behind one Modbus TCP gateway (an RS-485-to-Ethernet converter): one address and
port, a unit id each. The gateway polls them over one connection, one request in flight; a
unit that does not answer is that unit's loss, not the connection's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
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

DEVICES = ["host-1", "smoke-1", "host-2", "smoke-2", "host-3", "pir-3"]


def write(folder: Path, unit2: int = 2) -> Path:
    path = folder / "site.yaml"
    head = SITE_HEAD.format(area="city", db="tickets.db", poll=POLL_S)
    path.write_text(head + HOSTS.format(port=free_port(), unit2=unit2))
    return path


@contextlib.asynccontextmanager
async def started(site_file: Path) -> AsyncIterator[Harness]:
    """The simulated Modbus TCP gateway with its units, and alarmgw polling them."""
    site = load_site(site_file)
    clock = ManualClock()
    async with Simulator(simulator_endpoints(site), SCENARIO, clock=clock) as sim:
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
