"""IP hubs over SIA DC-09, end to end: the gateway's receiver and a simulated hub on real
loopback sockets, on one manual clock. A trouble on the hub is the right ticket with the
right detection time; its restore restores it; a missed periodic report is one comm_loss
ticket on the hub listing its devices."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.wiring import simulator_for
from alarmgw.simulator.runner import Simulator
from alarmgw.tasks import cancel_and_wait

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

SITE = """\
site: {{id: depot, name: Depot, area: city, commissioned_on: 2026-06-01}}
store: {{path: depot.db}}
poll: {{interval_s: 1, timeout_s: 0.5}}
history: {{interval_s: 0}}
sia_receiver: {{bind: 127.0.0.1, port: {port}, tcp: {tcp}, udp: {udp}}}
hosts:
  - id: hub-1
    location: office
    sia: {{account: 1234AB, {key}report_interval_s: 10, report_margin_s: 5}}
    devices:
      - {{id: pir-hall, kind: pir_detector, zone: 1, location: hall}}
      - {{id: smoke-store, kind: smoke_detector, zone: 2, location: store}}
"""


@dataclass
class Site:
    gw: Gateway
    sim: Simulator
    clock: ManualClock

    def tickets(self) -> list[Ticket]:
        return self.gw.store.tickets.all()

    async def until(self, done: Callable[[], bool], most_s: float = 60) -> None:
        """Move the clock a second at a time, letting the sockets carry what is due, until
        `done()` (or `most_s` of the site's time passed)."""
        for _ in range(int(most_s)):
            if done():
                return
            self.clock.advance(1.0)
            for _ in range(40):  # the hub's frame, the receiver's ACK, the judging job
                await asyncio.sleep(0)
        assert done(), f"not within {most_s} s: {self.tickets()}"


@contextlib.asynccontextmanager
async def site_with_hub(tmp_path: Path, *, encrypted: bool, tcp: bool = True) -> AsyncIterator[Site]:
    key = ""
    if encrypted:
        (tmp_path / "hub.key").write_text("0123456789ABCDEF0123456789ABCDEF\n")
        (tmp_path / "hub.key").chmod(0o600)
        key = "key_file: hub.key, "
    path = tmp_path / "site.yaml"
    tcp_text, udp_text = ("true", "false") if tcp else ("false", "true")
    path.write_text(SITE.format(port=free_port(), tcp=tcp_text, udp=udp_text, key=key))
    site = load_site(path)
    clock = ManualClock()
    async with simulator_for(site, clock=clock) as sim:
        gw = await Gateway.open(site, clock=clock)
        task = asyncio.create_task(gw.run())
        try:
            rx = gw.core.polling.sia_receiver
            assert rx is not None
            for _ in range(200):  # listening
                if rx.tcp_port or rx.udp_port:
                    break
                await asyncio.sleep(0.01)
            yield Site(gw, sim, clock)
        finally:
            await cancel_and_wait(task)
            await gw.aclose()


@pytest.mark.parametrize(("encrypted", "tcp"), [(False, True), (True, True), (True, False)])
async def test_a_tamper_on_the_hub_is_a_ticket_stamped_when_it_happened_and_its_restore_restores_it(
    tmp_path: Path, encrypted: bool, tcp: bool
) -> None:
    async with site_with_hub(tmp_path, encrypted=encrypted, tcp=tcp) as s:
        await s.until(lambda: s.gw.core.stats().get("dc09_link_tests", 0) > 0)  # the hub's first report
        injected_at = s.clock.now()
        s.sim.inject("pir-hall", "tamper", duration=20)
        await s.until(lambda: bool(s.tickets()))
        (t,) = s.tickets()
        assert (t.device_id, t.fault, t.contact_id, t.sia) == ("pir-hall", "tamper", 383, ("TA", "TR"))
        # detected when the hub reported it (its next scan), not when the debounce confirmed it
        assert 0 <= (t.opened_at - injected_at).total_seconds() <= 2.0
        await s.until(lambda: not s.tickets()[0].fault_active, most_s=90)
        assert s.gw.core.stats()["dc09_ack"] >= 3


async def test_a_hub_that_misses_its_periodic_report_is_one_ticket_listing_its_devices(tmp_path: Path) -> None:
    async with site_with_hub(tmp_path, encrypted=True) as s:
        await s.until(lambda: s.gw.core.stats().get("dc09_link_tests", 0) > 0)
        s.sim.inject("hub-1", "silent")  # the hub's line is cut: nothing more from it
        await s.until(lambda: bool(s.tickets()), most_s=60)
        for _ in range(10):  # and nothing else follows
            s.clock.advance(1.0)
            await asyncio.sleep(0.02)
        (t,) = s.tickets()
        assert (t.device_id, t.fault) == ("hub-1", "comm_loss")
        assert sorted(t.affected) == ["pir-hall", "smoke-store"]


async def test_a_taken_port_is_a_clear_error_and_the_receiver_listens_once_it_is_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(port=port, tcp="true", udp="false", key=""))
    site = load_site(path)
    clock = ManualClock()
    holder = socket.create_server(("127.0.0.1", port))  # another program on the hubs' port
    gw = await Gateway.open(site, clock=clock)
    task = asyncio.create_task(gw.run())
    try:
        rx = gw.core.polling.sia_receiver
        assert rx is not None
        with caplog.at_level(logging.ERROR):
            for _ in range(100):
                if "DC-09 receiver cannot listen on 127.0.0.1:" in caplog.text:
                    break
                await asyncio.sleep(0.01)
        assert f"DC-09 receiver cannot listen on 127.0.0.1:{port}" in caplog.text
        assert not task.done() and not rx.tcp_port  # the gateway runs on; only the receiver waits
        assert "sia-receiver failed" not in caplog.text  # tried again by itself, not crashed
        holder.close()
        for _ in range(10):  # its backoff: 1 s, then 2 s ...
            if rx.tcp_port:
                break
            clock.advance(1.0)
            for _ in range(10):
                await asyncio.sleep(0.005)
        assert rx.tcp_port == port
    finally:
        holder.close()
        await cancel_and_wait(task)
        await gw.aclose()
