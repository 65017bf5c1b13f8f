"""Run a simulated site: every host's server up, the scenario's faults scheduled."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alarmgw.clock import Clock, SystemClock
from alarmgw.drivers.modbus_map import Profile
from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.model import Device

from .envisalink import EnvisalinkEndpoint, EnvisalinkServer
from .it100_panel import It100Panel
from .modbus_server import HostEndpoint, HostRegisters, ModbusHostServer
from .models import SimSite
from .rtu_bus import RtuSlaveBus
from .scenario import FaultName, Injection, Scenario
from .sia_hub import SiaHub, SiaHubSpec
from .zigbee2mqtt import Zigbee2MqttBridge

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RtuUnit:
    host: Device
    unit: int
    profile: Profile
    slots: Sequence[tuple[Device, int]]


@dataclass(frozen=True, slots=True)
class SerialBusEndpoint:
    """A serial line: Modbus RTU units on it, or one IT-100 panel with its zones."""

    id: str
    path: Path
    baud: int
    rtu_units: Sequence[RtuUnit] = ()
    panel: Device | None = None
    zones: Mapping[int, Device] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Z2mEndpoint:
    """A Zigbee2MQTT bridge to play: its broker, base topic and devices by friendly name."""

    broker: BrokerSpec
    base_topic: str
    bridge: Device
    devices: Mapping[str, Device]


Part = ModbusHostServer | RtuSlaveBus | It100Panel | EnvisalinkServer | Zigbee2MqttBridge | SiaHub


class Simulator:
    """`async with Simulator(endpoints, scenario) as sim:` serves until the block ends."""

    def __init__(
        self,
        endpoints: Sequence[HostEndpoint],
        scenario: Scenario | None = None,
        *,
        seed: int = 1,
        clock: Clock | None = None,
        buses: Sequence[SerialBusEndpoint] = (),
        zigbee: Sequence[Z2mEndpoint] = (),
        envisalinks: Sequence[EnvisalinkEndpoint] = (),
        sia_hubs: Sequence[SiaHubSpec] = (),
    ) -> None:
        self.clock = clock or SystemClock()
        scenario = scenario or Scenario()
        self.seed = scenario.seed if scenario.seed is not None else seed
        devices = [d for ep in endpoints for d, _ in ep.slots]
        for z in zigbee:
            devices += [z.bridge, *z.devices.values()]
        for bus in buses:
            devices += [d for u in bus.rtu_units for d, _ in u.slots]
            if bus.panel is not None:
                devices += [bus.panel, *bus.zones.values()]
        for ev in envisalinks:
            devices += [ev.host, *ev.zones.values()]
        for hs in sia_hubs:
            devices += [hs.hub, *hs.zones.values()]
        self.site = SimSite(devices, self.seed, scenario.report_interval_s)
        self.t0 = self.clock.monotonic()
        self.started_at = self.clock.now()  # wall time of t0: scenario offsets count from it
        self.site.inject_all(scenario.faults)
        at: dict[tuple[str, int], list[HostEndpoint]] = {}
        for ep in endpoints:  # hosts at one address and port are units behind one server
            at.setdefault((ep.address.lower(), ep.port), []).append(ep)
        self.servers = [ModbusHostServer(eps, self.site, self.clock, self.t0) for eps in at.values()]
        self.envisalinks = [EnvisalinkServer(ev, self.site, self.clock, self.t0) for ev in envisalinks]
        self.sia_hubs = [
            SiaHub(
                hs.hub,
                hs.zones,
                hs.table,
                self.clock,
                account=hs.account,
                address=hs.address,
                key=hs.key,
                protocol=hs.protocol,
                report_interval_s=hs.report_interval_s,
                site=self.site,
                t0=self.t0,
            )
            for hs in sia_hubs
        ]
        self.bridges = [
            Zigbee2MqttBridge(z.broker, z.base_topic, z.bridge, z.devices, self.site, self.clock, self.t0)
            for z in zigbee
        ]
        self.lines: dict[str, RtuSlaveBus | It100Panel] = {}
        for bus in buses:
            noise = scenario.line_noise.get(bus.id, 0.0)
            if bus.panel is not None:
                self.lines[bus.id] = It100Panel(
                    bus.path,
                    bus.baud,
                    bus.panel,
                    bus.zones,
                    self.site,
                    self.clock,
                    self.t0,
                    noise=noise,
                    seed=self.seed,
                )
            else:
                units = {u.unit: HostRegisters(u.host, u.profile, u.slots, self.site) for u in bus.rtu_units}
                self.lines[bus.id] = RtuSlaveBus(
                    bus.path, bus.baud, units, self.clock, self.t0, noise=noise, seed=self.seed
                )

    @property
    def elapsed_s(self) -> float:
        return self.clock.monotonic() - self.t0

    def inject(
        self, device: str, fault: FaultName, duration: float | None = None, flap: float | None = None
    ) -> Injection:
        """Inject a fault now; raises KeyError for an unknown device."""
        injection = Injection(at=self.elapsed_s, device=device, fault=fault, duration=duration, flap=flap)
        self.site.inject(injection, self.elapsed_s)
        log.info("injected %s on %s at %.1f s", fault, device, injection.at)
        return injection

    def server_for(self, host_id: str) -> ModbusHostServer:
        for s in self.servers:
            if any(ep.host.id == host_id for ep in s.endpoints):
                return s
        raise KeyError(host_id)

    def envisalink(self, host_id: str) -> EnvisalinkServer:
        """A simulated Envisalink; raises KeyError naming an unknown host."""
        for s in self.envisalinks:
            if s.endpoint.host.id == host_id:
                return s
        raise KeyError(f"no simulated Envisalink {host_id!r}")

    def line(self, bus_id: str) -> RtuSlaveBus | It100Panel:
        """A simulated serial line; raises KeyError naming an unknown bus."""
        try:
            return self.lines[bus_id]
        except KeyError:
            raise KeyError(f"no simulated bus {bus_id!r}") from None

    async def unplug(self, bus_id: str) -> None:
        """The USB adapter is pulled out: the port disappears."""
        await self.line(bus_id).line.stop()

    async def plug(self, bus_id: str) -> None:
        await self.line(bus_id).line.start()

    def set_noise(self, bus_id: str, rate: float) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"noise {rate} is not a share between 0 and 1")
        self.line(bus_id).line.noise = rate

    async def start(self) -> None:
        parts: list[Part] = [*self.servers, *self.envisalinks, *self.lines.values(), *self.bridges, *self.sia_hubs]
        started: list[Part] = []
        try:
            for s in parts:
                await s.start()
                started.append(s)
        except BaseException:
            for s in started:
                await s.stop()
            raise

    async def stop(self) -> None:
        for s in [*self.servers, *self.envisalinks, *self.lines.values(), *self.bridges, *self.sia_hubs]:
            await s.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
