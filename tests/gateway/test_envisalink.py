"""The gateway against the simulator's Envisalink over TCP on loopback, on a manual clock:
the login, the same IT-100 reports as over the serial line becoming tickets stamped when
they were reported, a wrong password that is one clear error and a few attempts instead
of a storm, and a connection that drops and is made again."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.drivers.it100_link import EnvisalinkLink
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.wiring import simulator_envisalinks
from alarmgw.simulator.envisalink import EnvisalinkServer
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import Scenario
from alarmgw.tasks import cancel_and_wait
from tests.conftest import POLL_S, poll_cycles, wait_all

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "s3cret"
BACKOFF_MAX_S = 30.0

SITE = """\
site: {{id: evl-site, area: city}}
store: {{path: tickets.db}}
poll: {{interval_s: {poll}, timeout_s: 0.5, retries: 1, backoff_initial_s: 1, backoff_max_s: {backoff}}}
hosts:
  - id: panel
    envisalink: {{address: 127.0.0.1, port: {port}, password_file: evl.password}}
    devices:
      - {{id: z-door, kind: pir_detector, zone: 1}}
      - {{id: z-smoke, kind: smoke_detector, zone: 2}}
      - {{id: z-hall, kind: pir_detector, zone: 3}}
"""


class EvlHarness:
    def __init__(self, folder: Path, module_password: str = PASSWORD) -> None:
        (folder / "evl.password").write_text(PASSWORD + "\n")
        (folder / "evl.password").chmod(0o600)
        path = folder / "site.yaml"
        path.write_text(SITE.format(poll=POLL_S, port=free_port(), backoff=BACKOFF_MAX_S))
        self.site = load_site(path)
        self.clock = ManualClock()
        scenario = Scenario(seed=5, report_interval_s={"smoke_detector": 20, "pir_detector": 20})  # type: ignore[dict-item]
        # The module's own password: the site's, unless a test gives it another.
        endpoints = [dataclasses.replace(ep, password=module_password) for ep in simulator_envisalinks(self.site)]
        self.sim = Simulator([], scenario, clock=self.clock, envisalinks=endpoints)
        self.gw: Gateway
        self._task: asyncio.Task[None] | None = None

    @property
    def module(self) -> EnvisalinkServer:
        return self.sim.envisalink("panel")

    @property
    def link(self) -> EnvisalinkLink:
        (link,) = self.gw.core.links
        assert isinstance(link, EnvisalinkLink)
        return link

    async def start(self) -> None:
        await self.sim.start()
        self.gw = await Gateway.open(self.site, clock=self.clock)
        first = self.gw.core.jobs[0].done
        self._task = asyncio.create_task(self.gw.run())
        await wait_all([first])

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.gw.aclose()
        await self.sim.stop()

    async def cycle(self, n: int = 1) -> None:
        await poll_cycles(self.gw, self.clock, n)

    def tickets(self) -> list[Ticket]:
        return self.gw.store.tickets.all()

    def summary(self) -> list[tuple[str, str]]:
        return sorted((t.device_id, t.fault) for t in self.tickets())


@pytest.fixture
async def evl(tmp_path: Path) -> AsyncIterator[EvlHarness]:
    h = EvlHarness(tmp_path)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_it_logs_in_and_a_quiet_site_opens_no_ticket(evl: EvlHarness) -> None:
    await evl.cycle(10)
    assert evl.tickets() == []
    assert (evl.module.logins, evl.module.refused_logins, evl.link.opens, evl.link.logins) == (1, 0, 1, 1)
    assert evl.link.connected and evl.link.failures == 0
    assert evl.module.model.commands >= 11  # a poll per cycle, and the status request after the login
    assert evl.gw.core.latest["z-hall"].at == evl.clock.now()


async def test_zone_tamper_and_mains_loss_become_tickets_stamped_when_reported(evl: EvlHarness) -> None:
    await evl.cycle(2)
    evl.sim.inject("z-door", "tamper")  # 603 1001
    evl.sim.inject("panel", "mains_loss")  # 802, and 849 with bit 1
    evl.sim.inject("z-hall", "low_battery")  # 821 003
    first_seen = evl.clock.now() + timedelta(seconds=POLL_S)  # reported unasked at the next scan
    await evl.cycle(4)
    assert evl.summary() == [("panel", "mains_loss"), ("z-door", "tamper"), ("z-hall", "low_battery")]
    for t in evl.tickets():
        assert t.opened_at == first_seen, (t.device_id, t.opened_at, first_seen)
    panel = next(t for t in evl.tickets() if t.device_id == "panel")
    assert panel.contact_id == 301
    door = next(t for t in evl.tickets() if t.device_id == "z-door")
    assert door.contact_id == 383 and door.location == "" and door.device_kind == "pir_detector"


async def test_keybus_fault_and_a_silent_zone(evl: EvlHarness) -> None:
    evl.sim.inject("z-smoke", "silent")  # not heard for 3 check-ins: 605
    await evl.cycle(16)
    assert evl.summary() == [("z-smoke", "comm_loss")]
    evl.sim.inject("panel", "keybus_fault", duration=20)  # 896, then 897
    await evl.cycle(8)
    assert evl.summary() == [("panel", "comm_loss"), ("z-smoke", "comm_loss")]
    keybus = next(t for t in evl.tickets() if t.device_id == "panel")
    assert not keybus.fault_active  # restored by 897
    assert evl.link.opens == 1  # the module kept the session all along


async def test_a_dropped_connection_is_made_again_and_what_happened_meanwhile_is_read(evl: EvlHarness) -> None:
    await evl.cycle(2)
    assert evl.module.drop() == 1  # the module restarts
    async with asyncio.timeout(5):
        while evl.link.connected:  # noqa: ASYNC110 - the link learns it from its socket; nothing to wait on
            await asyncio.sleep(0.01)
    evl.sim.inject("z-hall", "tamper")  # while nobody is connected: its 603 goes nowhere
    await evl.cycle(1)  # the backoff after a drop is 1 s: the next poll connects, logs in, asks for status
    assert (evl.link.opens, evl.module.logins) == (2, 2) and evl.link.connected
    await evl.cycle(1)
    assert evl.summary() == [("z-hall", "tamper")]  # no comm_loss: the poll found it up again
    assert evl.gw.core.latest["z-door"].at == evl.clock.now()


async def test_a_module_that_stops_answering_is_connected_to_again(evl: EvlHarness) -> None:
    await evl.cycle(2)
    evl.sim.inject("panel", "offline", duration=12)  # hung: no answers, no password request
    # 5 s: no acknowledge, the connection is given up; 10 s: a new one gets no login.
    await evl.cycle(2)
    assert evl.summary() == [("panel", "comm_loss")]
    assert evl.link.failures == 1 and evl.link.down_reason == "no login" and not evl.link.connected
    await evl.cycle(3)
    (t,) = evl.tickets()
    assert not t.fault_active and evl.link.connected
    assert evl.module.logins == 2 and evl.link.opens == 2


async def test_a_wrong_password_is_one_clear_error_and_few_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alarmgw")
    h = EvlHarness(tmp_path, module_password="changed")
    await h.start()
    try:
        await h.cycle(12)  # a minute
        module, link = h.module, h.link
        # A first attempt, then one per longest backoff: 0 s, ~30 s, ~60 s.
        assert 2 <= module.connections <= 3 and module.refused_logins == module.connections
        assert module.logins == 0 and link.refused_logins == module.connections
        assert link.down_reason == "wrong password" and not link.connected
        assert h.summary() == [("panel", "comm_loss")]  # its zones are listed on it
        (t,) = h.tickets()
        assert set(t.affected) == {"z-door", "z-smoke", "z-hall"}
        said = [r for r in caplog.records if "wrong password" in r.getMessage() and r.levelno >= logging.WARNING]
        assert [r.levelname for r in said][:1] == ["ERROR"] and len(said) == module.connections
        assert sum(r.levelno == logging.ERROR for r in said) == 1
        assert "envisalink.password_file" in said[0].getMessage()
        assert PASSWORD not in caplog.text and "changed" not in caplog.text
        # The module's password is set back: within one longest backoff it is monitored again.
        module.endpoint = dataclasses.replace(module.endpoint, password=PASSWORD)
        await h.cycle(int(BACKOFF_MAX_S / POLL_S) + 2)
        assert link.connected and module.logins == 1 and link.down_reason == ""
        (t,) = h.tickets()
        assert not t.fault_active
        assert h._task is not None and not h._task.done()  # the gateway ran on throughout
    finally:
        await h.stop()


def test_check_config_takes_the_example_envisalink_host_and_names_a_wrong_key(tmp_path: Path) -> None:
    """config/example-site.yaml shows an Envisalink host commented out (its password file is
    the site's own); written out, `alarmgw check-config` accepts it."""
    lines, block = [], False
    for line in (ROOT / "config" / "example-site.yaml").read_text().splitlines():
        block = line.startswith("#  - id: yard-panel") or (block and line.startswith("#    "))
        lines.append(line[1:] if block else line)
    text = "\n".join(lines).replace("/etc/alarmgw/yard-envisalink.password", "yard.password")
    text = text.replace("/var/lib/alarmgw/tickets.db", "tickets.db")
    assert "envisalink:" in text and "  - id: yard-panel" in text
    (tmp_path / "site.yaml").write_text(text + "\n")
    (tmp_path / "yard.password").write_text("user\n")

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alarmgw.gateway.cli", "check-config", str(tmp_path / "site.yaml")],
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = check()
    assert ok.returncode == 0 and "4 host(s)" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "site.yaml").write_text(text.replace("      port: 4025", "      prot: 4025") + "\n")
    wrong = check()
    assert wrong.returncode == 2 and "hosts[3].envisalink.prot: unknown key" in wrong.stderr + wrong.stdout
    assert "Traceback" not in wrong.stderr
