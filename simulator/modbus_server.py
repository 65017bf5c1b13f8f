"""Each simulated alarm host served as a Modbus TCP server (pymodbus), through the same
register profile the gateway reads with: the simulator encodes, the gateway decodes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from alarmgw.clock import Clock
from alarmgw.drivers.modbus_map import CompiledLayout, Profile, compile_layout, encode_slot
from alarmgw.model import Device

from .errors import SimulatorError
from .models import SimSite

log = logging.getLogger(__name__)


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


class HostRegisters:
    """A host's register map, rendered from the device models for the instant asked."""

    def __init__(self, host: Device, profile: Profile, slots: Sequence[tuple[Device, int]], site: SimSite) -> None:
        self.host = host
        self.profile = profile
        self.site = site
        layouts: dict[str, CompiledLayout] = {}
        self._by_slot: dict[int, tuple[str, CompiledLayout]] = {}
        for device, slot in slots:
            k = device.kind.value
            if k not in layouts:
                layouts[k] = compile_layout(profile.layout_for(device.kind), profile.slot_registers)
            self._by_slot[slot] = (device.id, layouts[k])
        self.size = profile.slot_address(max(self._by_slot) + 1)

    def offline_until(self, t: float) -> float | None:
        """While the host is hung, when it comes back (inf: not within the scenario)."""
        if not self.site.offline(self.host.id, t):
            return None
        return min(
            i.window()[1] for i in self.site.devices[self.host.id].injections if i.fault == "offline" and i.active(t)
        )

    def render_into(self, registers: list[int], start: int, address: int, count: int, t: float) -> None:
        """Fill `registers` (whose first word is register `start`) for a read of `count` at `address`."""
        p = self.profile
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

    def write(self, address: int, value: int, t: float) -> bool:
        """A register write: a device command if the profile has one at that place."""
        p = self.profile
        slot, offset = divmod(address - p.slot_base, p.slot_registers)
        entry = self._by_slot.get(slot)
        if entry is None:
            return False
        device_id, _ = entry
        kind = self.site.devices[device_id].device.kind
        for name, cmd in p.layout_for(kind).commands.items():
            if cmd.offset == offset and cmd.value == value and name == "self_test":
                self.site.self_test(device_id, t)
                return True
        return False

    def read(self, address: int, count: int, t: float) -> list[int] | None:
        """`count` registers from `address`, or None when the range lies outside the map."""
        if address < 0 or address + count > self.size:
            return None
        p = self.profile
        first = p.slot_address((address - p.slot_base) // p.slot_registers)
        span = p.slot_address((address + count - 1 - p.slot_base) // p.slot_registers + 1) - first
        words = [0] * span
        self.render_into(words, first, address, count, t)
        return words[address - first : address - first + count]


class ModbusHostServer:
    """A pymodbus server at one address and port, for the host or hosts the site file puts
    there (units behind one Modbus TCP gateway share it), whose registers are rendered
    from the models at read time."""

    def __init__(self, endpoints: Sequence[HostEndpoint], site: SimSite, clock: Clock, t0: float) -> None:
        if not endpoints or len({(e.address.lower(), e.port) for e in endpoints}) != 1:
            raise ValueError("one server serves the hosts of one address and port")
        self.endpoints = tuple(endpoints)
        self.endpoint = endpoints[0]
        self.site = site
        self.clock = clock
        self.t0 = t0
        self.requests = 0
        sim_devices = []
        for ep in self.endpoints:
            registers = HostRegisters(ep.host, ep.profile, ep.slots, site)
            sim_devices.append(
                SimDevice(
                    id=ep.unit,
                    simdata=SimData(0, count=registers.size, values=0, datatype=DataType.REGISTERS),
                    action=functools.partial(self._render, ep, registers),
                )
            )
        self.server = ModbusTcpServer(sim_devices, address=(self.endpoint.address, self.endpoint.port))

    async def _render(
        self,
        ep: HostEndpoint,
        host: HostRegisters,
        function_code: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        t = self.clock.monotonic() - self.t0
        if function_code == 6:
            if values is None:
                return None  # pymodbus reads the written register back for the response
            ok = host.write(address, int(values[0]), t)
            return None if ok else ExcCodes.ILLEGAL_ADDRESS
        if _READ_FUNCTIONS.get(function_code) != ep.profile.function or values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        if self.site.refusing(ep.host.id, t):
            return ExcCodes.ILLEGAL_ADDRESS
        back = host.offline_until(t)
        if back is not None:
            if len(self.endpoints) > 1:
                # Behind a gateway, a hung unit is the gateway's exception 11; the others answer on.
                return ExcCodes.GATEWAY_NO_RESPONSE
            # A hung host on its own connection: the request is never answered while the fault lasts.
            await self.clock.sleep_until(self.t0 + back)
        host.render_into(registers, start, address, count, t)
        return None

    async def start(self) -> None:
        """Start listening; raises SimulatorError naming the host and address if it cannot."""
        try:
            await self.server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            ep = self.endpoint
            hosts = ", ".join(e.host.id for e in self.endpoints)
            raise SimulatorError(f"host {hosts}: cannot listen on {ep.address}:{ep.port} ({exc})") from exc

    async def stop(self) -> None:
        await self.server.shutdown()  # type: ignore[no-untyped-call]
