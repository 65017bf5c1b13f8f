"""Each simulated alarm host served as a Modbus TCP server (pymodbus), through the same
register profile the gateway reads with: the simulator encodes, the gateway decodes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from alarmgw.clock import Clock
from alarmgw.model import Device
from drivers.modbus_map import CompiledLayout, Profile, compile_layout, encode_slot

from .models import SimSite

log = logging.getLogger(__name__)


class SimulatorError(Exception):
    """The simulator cannot do what its site file asks (e.g. a port is taken)."""


_READ_FUNCTIONS = {3: "holding", 4: "input"}


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    """Where and how one simulated host is served."""

    host: Device
    address: str
    port: int
    unit: int
    profile: Profile
    slots: Sequence[tuple[Device, int]]  # the host itself in slot 0


class ModbusHostServer:
    """A pymodbus server whose registers are rendered from the models at read time."""

    def __init__(self, endpoint: HostEndpoint, site: SimSite, clock: Clock, t0: float) -> None:
        self.endpoint = endpoint
        self.site = site
        self.clock = clock
        self.t0 = t0
        p = endpoint.profile
        layouts: dict[str, CompiledLayout] = {}
        self._by_slot: dict[int, tuple[str, CompiledLayout]] = {}
        for device, slot in endpoint.slots:
            k = device.kind.value
            if k not in layouts:
                layouts[k] = compile_layout(p.layout_for(device.kind), p.slot_registers)
            self._by_slot[slot] = (device.id, layouts[k])
        top = max(self._by_slot) + 1
        self.size = p.slot_address(top)
        sim_device = SimDevice(
            id=endpoint.unit,
            simdata=SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS),
            action=self._render,
        )
        self.server = ModbusTcpServer(sim_device, address=(endpoint.address, endpoint.port))
        self.requests = 0

    async def _render(
        self, function_code: int, start: int, address: int, count: int, registers: list[int], values: object
    ) -> ExcCodes | None:
        self.requests += 1
        if _READ_FUNCTIONS.get(function_code) != self.endpoint.profile.function or values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        t = self.clock.monotonic() - self.t0
        host_id = self.endpoint.host.id
        if self.site.offline(host_id, t):
            # A hung host: the request is never answered while the fault lasts.
            end = min(
                i.window()[1] for i in self.site.devices[host_id].injections if i.fault == "offline" and i.active(t)
            )
            await self.clock.sleep_until(self.t0 + end)
        p = self.endpoint.profile
        first = (address - p.slot_base) // p.slot_registers
        last = (address + count - 1 - p.slot_base) // p.slot_registers
        for slot in range(max(first, 0), last + 1):
            entry = self._by_slot.get(slot)
            base = p.slot_address(slot) - start
            if entry is None:
                registers[base : base + p.slot_registers] = [0] * p.slot_registers
                continue
            device_id, layout = entry
            registers[base : base + p.slot_registers] = encode_slot(layout, self.site.values(device_id, t))
        return None

    async def start(self) -> None:
        """Start listening; raises SimulatorError naming the host and address if it cannot."""
        try:
            await self.server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            ep = self.endpoint
            raise SimulatorError(f"host {ep.host.id}: cannot listen on {ep.address}:{ep.port} ({exc})") from exc

    async def stop(self) -> None:
        await self.server.shutdown()  # type: ignore[no-untyped-call]
