"""Never silently unmonitored: whatever stops a device's readings (its host refuses the read,
answers nothing, names a slot the site file got wrong, a bridge goes offline, a Zigbee
device falls silent), every configured device is, at every moment, either heard within its
window or in a fault. Checked over every driver (Modbus TCP, Modbus RTU on RS-485, the
IT-100 on RS-232, Zigbee2MQTT through a real mosquitto) against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock
from alarmgw.diagnostics.engine import COMM_LOSS, CUTTING_FAULTS
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.wiring import simulator_buses, simulator_endpoints, simulator_zigbee
from alarmgw.simulator.runner import Simulator
from alarmgw.simulator.scenario import Scenario
from alarmgw.tasks import cancel_and_wait
from tests.broker import Mosquitto
from tests.conftest import POLL_S, poll_cycles, wait_all

pytestmark = pytest.mark.integration  # real peers: sockets, pseudo-terminals

SITE = """\
site: {{id: watched-site, area: suburb}}
store: {{path: tickets.db}}
poll: {{interval_s: {poll}, timeout_s: 0.3, retries: 0, backoff_initial_s: 1, backoff_max_s: 4}}
supervision_s: {{smoke_detector: 60, pir_detector: 60}}
device_broker: {{host: 127.0.0.1, port: {broker}}}
zigbee2mqtt:
  - id: zb-bridge
    base_topic: watched-{broker}
    devices:
      - {{id: zb-smoke, friendly_name: kitchen smoke, kind: smoke_detector}}
      - {{id: zb-pir, friendly_name: hall pir, kind: pir_detector}}
buses:
  - {{id: rs485-1, port: ttyRS485, protocol: modbus_rtu, baud: 38400, timeout_s: 0.3, retries: 0}}
  - {{id: rs232-1, port: ttyIT100, protocol: it100, baud: 9600, timeout_s: 0.5, retries: 0}}
hosts:
  - id: tcp-host
    model: sim-wh100
    modbus: {{address: 127.0.0.1, port: {port}, unit: 1}}
    devices:
      - {{id: t-smoke, kind: smoke_detector, slot: 1}}
      - {{id: t-pir, kind: pir_detector, slot: 2}}
{ghost}  - id: rtu-host
    model: sim-wh100
    rtu: {{bus: rs485-1, unit: 1}}
    devices:
      - {{id: r-smoke, kind: smoke_detector, slot: 1}}
  - id: panel
    it100: {{bus: rs232-1}}
    devices:
      - {{id: z-door, kind: pir_detector, zone: 1}}
      - {{id: z-smoke, kind: smoke_detector, zone: 2}}
"""
# A slot the site file names but the panel does not have (an enrolment slip).
GHOST = "      - {id: t-ghost, kind: smoke_detector, slot: 4}\n"


class Site:
    def __init__(self, folder: Path, broker: Mosquitto, *, ghost: bool) -> None:
        port = free_port()
        path = folder / "site.yaml"
        text = SITE.format(poll=POLL_S, port=port, broker=broker.port, ghost=GHOST if ghost else "")
        path.write_text(text)
        self.site = load_site(path)
        # The simulated equipment is what is really installed: never the ghost.
        (folder / "installed").mkdir()
        real = folder / "installed" / "site.yaml"
        real.write_text(SITE.format(poll=POLL_S, port=port, broker=broker.port, ghost=""))
        installed = load_site(real)
        self.clock = ManualClock()
        scenario = Scenario(seed=3, report_interval_s={"smoke_detector": 20, "pir_detector": 20})  # type: ignore[dict-item]
        self.sim = Simulator(
            simulator_endpoints(installed),
            scenario,
            clock=self.clock,
            buses=simulator_buses(self.site),
            zigbee=simulator_zigbee(self.site),
        )
        self.gw: Gateway
        self._task: asyncio.Task[None] | None = None

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

    def unwatched(self, slack_s: float) -> list[str]:
        """Devices neither heard within their window (plus `slack_s` for the debounce) nor
        in a fault, themselves or through what they are reached by."""
        core = self.gw.core
        now = self.clock.monotonic()
        active = core.diagnoser.is_active
        out = []
        for d in core.devices.values():
            window = core.watch.window(d.id)
            age = core.watch.age_s(d.id, now)
            if window is None or age is None or age <= window + slack_s:
                continue
            if active(d.id, COMM_LOSS) or any(active(d.id, f) for f in CUTTING_FAULTS):
                continue
            if any(active(a, f) for a in core.diagnoser.topology.ancestors(d.id) for f in CUTTING_FAULTS):
                continue
            out.append(d.id)
        return out

    def open_faults(self) -> list[tuple[str, str]]:
        return sorted((t.device_id, t.fault) for t in self.gw.store.tickets.all() if t.fault_active)

    def ticket(self, device_id: str, fault: str) -> tuple[str, ...]:
        (t,) = [t for t in self.gw.store.tickets.all() if (t.device_id, t.fault) == (device_id, fault)]
        return tuple(sorted(t.affected))


@pytest.fixture
async def watched(tmp_path: Path, mosquitto: Mosquitto, request: pytest.FixtureRequest) -> AsyncIterator[Site]:
    s = Site(tmp_path, mosquitto, ghost=getattr(request, "param", False))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


# (device the simulator breaks, how, the one ticket that must account for it and all behind it)
CASES = [
    ("tcp-host", "refuse", ("tcp-host", "slot_refused")),
    ("tcp-host", "offline", ("tcp-host", "comm_loss")),
    ("rtu-host", "refuse", ("rtu-host", "slot_refused")),
    ("rtu-host", "offline", ("rtu-host", "comm_loss")),
    ("panel", "refuse", ("panel", "unmonitored")),
    ("panel", "offline", ("panel", "comm_loss")),
    ("zb-bridge", "offline", ("zb-bridge", "comm_loss")),
    ("zb-pir", "silent", ("zb-pir", "comm_loss")),
]


@pytest.mark.parametrize(("device", "how", "expected"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
async def test_every_device_is_heard_or_in_a_fault(
    watched: Site, device: str, how: str, expected: tuple[str, str]
) -> None:
    await watched.gw.core.watch_now()
    await poll_cycles(watched.gw, watched.clock, 4)
    assert watched.open_faults() == []
    watched.sim.inject(device, how, duration=16 * POLL_S + 1)  # type: ignore[arg-type]
    for _ in range(16):  # past every window and debounce here
        await poll_cycles(watched.gw, watched.clock, 1)
        assert watched.unwatched(slack_s=3 * POLL_S) == []
    assert watched.open_faults() == [expected]
    behind = {d.id for d in watched.gw.core.devices.values() if d.parent == device}
    assert set(watched.ticket(*expected)) == behind
    await poll_cycles(watched.gw, watched.clock, 8)
    assert watched.open_faults() == []
    assert watched.unwatched(slack_s=0) == []


@pytest.mark.parametrize("watched", [True], indirect=True, ids=["ghost-slot"])
async def test_a_slot_the_host_does_not_have_is_a_fault_of_that_device_only(watched: Site) -> None:
    await poll_cycles(watched.gw, watched.clock, 6)
    assert watched.open_faults() == [("t-ghost", "slot_refused")]
    assert watched.gw.core.latest["t-smoke"].values["slot_refused"] is False  # its neighbours are read
    assert watched.unwatched(slack_s=0) == []
    link = next(k for k in watched.gw.core.links if k.name == "tcp-host")
    assert link.refusals >= 2  # counted in the link metrics (alarmgw_link_refusals)
