"""Run a simulated site: every host's server up, the scenario's faults scheduled."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alarmgw.clock import Clock, SystemClock

from .modbus_server import HostEndpoint, ModbusHostServer
from .models import SimSite
from .scenario import FaultName, Injection, Scenario

log = logging.getLogger(__name__)


class Simulator:
    """`async with Simulator(endpoints, scenario) as sim:` serves until the block ends."""

    def __init__(
        self,
        endpoints: Sequence[HostEndpoint],
        scenario: Scenario | None = None,
        *,
        seed: int = 1,
        clock: Clock | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        scenario = scenario or Scenario()
        self.seed = scenario.seed if scenario.seed is not None else seed
        devices = [d for ep in endpoints for d, _ in ep.slots]
        self.site = SimSite(devices, self.seed, scenario.report_interval_s)
        self.t0 = self.clock.monotonic()
        self.started_at = self.clock.now()  # wall time of t0: scenario offsets count from it
        self.site.inject_all(scenario.faults)
        self.servers = [ModbusHostServer(ep, self.site, self.clock, self.t0) for ep in endpoints]

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
            if s.endpoint.host.id == host_id:
                return s
        raise KeyError(host_id)

    async def start(self) -> None:
        started = []
        try:
            for s in self.servers:
                await s.start()
                started.append(s)
        except BaseException:
            for s in started:
                await s.stop()
            raise

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
