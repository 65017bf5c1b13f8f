"""The gateway against the simulator over pseudo-terminals: Modbus RTU units sharing an
RS-485 bus and an IT-100 panel on RS-232, paced at their baud rates, with and without
line noise; a USB adapter pulled out and plugged back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.tickets import Ticket
from alarmgw.drivers.errors import DeviceRefused
from alarmgw.drivers.it100_link import It100Link
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.wiring import simulator_buses, simulator_endpoints
from alarmgw.simulator.scenario import Scenario
from alarmgw.tasks import cancel_and_wait
from tests.conftest import POLL_S, poll_cycles, wait_all

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

SITE = """\
site: {{id: serial-site, area: suburb}}
store: {{path: tickets.db}}
poll: {{interval_s: {poll}, backoff_initial_s: 1, backoff_max_s: 4}}
buses:
  - {{id: rs485-1, port: ttyRS485, protocol: modbus_rtu, baud: 38400, timeout_s: 0.3, retries: 1}}
  - {{id: rs232-1, port: ttyIT100, protocol: it100, baud: 9600, timeout_s: 0.5, retries: 1}}
hosts:
  - id: wh-a
    model: sim-wh100
    rtu: {{bus: rs485-1, unit: 1}}
    devices:
      - {{id: a-smoke, kind: smoke_detector, slot: 1}}
      - {{id: a-pir, kind: pir_detector, slot: 2}}
  - id: wh-b
    model: sim-wh100
    rtu: {{bus: rs485-1, unit: 2}}
    devices:
      - {{id: b-smoke, kind: smoke_detector, slot: 1}}
  - id: panel
    it100: {{bus: rs232-1}}
    devices:
      - {{id: z-door, kind: pir_detector, zone: 1}}
      - {{id: z-smoke, kind: smoke_detector, zone: 2}}
      - {{id: z-hall, kind: pir_detector, zone: 3}}
"""


class SerialHarness:
    def __init__(self, folder: Path, noise: float) -> None:
        path = folder / "site.yaml"
        path.write_text(SITE.format(poll=POLL_S))
        self.site = load_site(path)
        self.noise = noise
        self.clock = ManualClock()
        scenario = Scenario(
            seed=5,
            report_interval_s={"smoke_detector": 20, "pir_detector": 20},  # type: ignore[dict-item]
            line_noise={"rs485-1": noise, "rs232-1": noise},
        )
        from alarmgw.simulator.runner import Simulator

        self.sim = Simulator(
            simulator_endpoints(self.site), scenario, clock=self.clock, buses=simulator_buses(self.site)
        )
        self.gw: Gateway
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sim.start()
        self.gw = await Gateway.open(self.site, clock=self.clock)
        # Jobs are staggered over the interval: the first runs at once, the rest sleep
        # until their phase, which the first cycle reaches.
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


@pytest.fixture(params=[0.0, 0.01], ids=["clean-line", "1%-noise"])
async def serial(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SerialHarness]:
    h = SerialHarness(tmp_path, request.param)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_noise_alone_opens_no_ticket_and_every_fault_opens_one(serial: SerialHarness) -> None:
    await serial.cycle(40)
    assert serial.tickets() == [], serial.summary()
    corrupted = sum(line.line.frames_corrupted for line in serial.sim.lines.values())
    # The noisy run really was noisy (both ways; a seeded RNG, so this is repeatable).
    assert (corrupted > 0) == (serial.noise > 0), corrupted
    serial.sim.inject("a-smoke", "low_battery")  # RTU unit 1
    serial.sim.inject("b-smoke", "tamper")  # RTU unit 2, same bus
    serial.sim.inject("z-door", "tamper")  # IT-100 zone 1: 603
    serial.sim.inject("z-hall", "low_battery")  # IT-100 zone 3: 821
    serial.sim.inject("panel", "mains_loss")  # IT-100: 802
    await serial.cycle(6)
    assert serial.summary() == [
        ("a-smoke", "low_battery"),
        ("b-smoke", "tamper"),
        ("panel", "mains_loss"),
        ("z-door", "tamper"),
        ("z-hall", "low_battery"),
    ]
    await serial.cycle(10)
    assert len(serial.tickets()) == 5
    panel_ticket = next(t for t in serial.tickets() if t.device_id == "panel")
    assert panel_ticket.contact_id == 301


async def test_unplugged_adapter_is_one_bus_ticket_and_comes_back(serial: SerialHarness) -> None:
    await serial.cycle(2)
    await serial.sim.unplug("rs485-1")
    await serial.cycle(4)
    assert serial.summary() == [("rs485-1", "comm_loss")]
    (t,) = serial.tickets()
    assert set(t.affected) >= {"wh-a", "wh-b"}
    await serial.sim.plug("rs485-1")
    await serial.cycle(6)  # backoff of up to 4 s, then the port opens again
    (t,) = serial.tickets()
    assert not t.fault_active
    assert serial.gw.core.latest["a-smoke"].at == serial.clock.now()


async def test_zone_fault_and_keybus_fault(serial: SerialHarness) -> None:
    serial.sim.inject("z-smoke", "silent")  # not heard for 3 check-ins: 605
    await serial.cycle(16)
    assert serial.summary() == [("z-smoke", "comm_loss")]
    serial.sim.inject("panel", "keybus_fault", duration=20)  # 896, then 897
    await serial.cycle(8)
    assert serial.summary() == [("panel", "comm_loss"), ("z-smoke", "comm_loss")]
    keybus = next(t for t in serial.tickets() if t.device_id == "panel")
    assert not keybus.fault_active  # restored by 897


async def test_rtu_keeps_the_inter_frame_silence(serial: SerialHarness) -> None:
    await serial.cycle(10)
    bus = serial.sim.line("rs485-1")
    assert bus.requests >= 20  # two units, one block read each per poll
    assert bus.gap_violations == 0  # type: ignore[union-attr]


async def test_a_noisy_bus_is_one_bus_errors_ticket_not_one_per_device(serial: SerialHarness) -> None:
    await serial.cycle(4)
    serial.sim.set_noise("rs485-1", 0.3)  # a loose RS-485 termination
    await serial.cycle(20)
    assert serial.summary() == [("rs485-1", "bus_errors")]
    serial.sim.set_noise("rs485-1", 0.0)
    await serial.cycle(60)  # the window of recent transactions fills with good ones
    (t,) = [t for t in serial.tickets() if t.fault == "bus_errors"]
    assert not t.fault_active


async def test_a_dead_unit_costs_its_own_timeout_only(serial: SerialHarness) -> None:
    await serial.cycle(2)
    serial.sim.inject("wh-a", "offline")  # unit 1 hangs; unit 2 shares the bus
    for _ in range(6):
        await serial.cycle(1)
        assert serial.gw.core.latest["b-smoke"].at == serial.clock.now()  # polled every cycle
    assert serial.summary() == [("wh-a", "comm_loss")]
    (t,) = serial.tickets()
    assert set(t.affected) == {"a-smoke", "a-pir"}


async def test_unsupported_command_is_refused_not_retried(serial: SerialHarness) -> None:
    link = next(x for x in serial.gw.core.links if isinstance(x, It100Link))
    before = link.requests
    with pytest.raises(DeviceRefused, match="system error 022"):
        await link.command("074")  # keep-alive: not something this panel supports
    assert link.requests == before + 1
    await serial.cycle(2)
    assert serial.tickets() == []


async def test_unplugged_it100_port_is_one_bus_ticket_and_comes_back(serial: SerialHarness) -> None:
    await serial.cycle(2)
    await serial.sim.unplug("rs232-1")
    await serial.cycle(4)
    assert serial.summary() == [("rs232-1", "comm_loss")]
    (t,) = serial.tickets()
    assert set(t.affected) == {"panel", "z-door", "z-smoke", "z-hall"}
    await serial.sim.plug("rs232-1")
    await serial.cycle(6)
    (t,) = serial.tickets()
    assert not t.fault_active
    serial.sim.inject("z-hall", "tamper")  # and the panel is heard again
    await serial.cycle(1)
    assert serial.summary() == [("rs232-1", "comm_loss"), ("z-hall", "tamper")]
