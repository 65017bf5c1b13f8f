"""Modbus TCP: a link per alarm host (pymodbus asyncio client) and the poller that turns
block reads into `Reading`s through the host's register profile.

The link owns reconnect and retry: one request in flight, a timeout per request, a few
retries, then the connection is dropped and reopened no sooner than the backoff allows.
A host that does not answer costs its own timeout and yields a `link_lost` reading; it
never raises out of a poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from alarmgw.clock import Clock
from alarmgw.model import Device, Reading

from .backoff import Backoff
from .errors import DeviceRefused, DriverError, LinkDown
from .modbus_map import BlockRead, CompiledLayout, Profile, compile_layout, decode_slot, plan_reads

log = logging.getLogger(__name__)


class ModbusTcpLink:
    """One TCP connection to one Modbus server; every request goes through its lock."""

    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        unit: int,
        clock: Clock,
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.unit = unit
        self.timeout_s = timeout_s
        self.retries = retries
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None
        self._retry_at = 0.0
        self.requests = 0
        self.failures = 0
        self.reconnects = 0

    @property
    def retry_in_s(self) -> float:
        """Seconds until the link may try to connect again (0: now)."""
        return max(0.0, self._retry_at - self._clock.monotonic())

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _connect(self) -> AsyncModbusTcpClient:
        now = self._clock.monotonic()
        if now < self._retry_at:
            raise LinkDown(
                f"{self.name}: {self.address}:{self.port} down, next attempt in {self._retry_at - now:.1f} s"
            )
        # reconnect_delay=0: pymodbus must not reconnect behind our back; we own backoff.
        client = AsyncModbusTcpClient(
            self.address, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0, name=self.name
        )
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._schedule_retry()
            raise LinkDown(f"{self.name}: cannot connect to {self.address}:{self.port}")
        self.reconnects += 1
        self._client = client
        return client

    def _schedule_retry(self) -> None:
        self._retry_at = self._clock.monotonic() + self._backoff.next_delay()

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read_registers(self, function: str, address: int, count: int) -> list[int]:
        """Read `count` registers; raises LinkDown (retryable) or DeviceRefused."""
        async with self._lock:
            client = self._client if self.connected else None
            if client is None:
                self._drop()
                client = await self._connect()
            read = client.read_holding_registers if function == "holding" else client.read_input_registers
            last: Exception | None = None
            for _ in range(self.retries + 1):
                self.requests += 1
                try:
                    async with asyncio.timeout(self.timeout_s * 1.5):
                        rr = await read(address, count=count, device_id=self.unit)
                except (TimeoutError, ModbusException, OSError) as exc:
                    last = exc
                    if not client.connected:
                        break
                    continue
                if rr.isError():
                    code = getattr(rr, "exception_code", "?")
                    raise DeviceRefused(f"{self.name}: exception {code} reading {count} registers at {address}")
                if len(rr.registers) < count:
                    raise DeviceRefused(f"{self.name}: {len(rr.registers)} registers returned, {count} asked")
                self._backoff.reset()
                return list(rr.registers[:count])
            self.failures += 1
            self._drop()
            self._schedule_retry()
            raise LinkDown(f"{self.name}: no answer from {self.address}:{self.port} ({type(last).__name__}: {last})")

    async def close(self) -> None:
        async with self._lock:
            self._drop()


@dataclass(frozen=True, slots=True)
class SlotDevice:
    device: Device
    address: int
    layout: CompiledLayout


class HostPoller:
    """Polls groups of a host's device slots with merged block reads."""

    def __init__(
        self, host: Device, link: ModbusTcpLink, profile: Profile, slots: Sequence[tuple[Device, int]], clock: Clock
    ) -> None:
        self.host = host
        self.link = link
        self.profile = profile
        self._clock = clock
        layouts: dict[str, CompiledLayout] = {}
        self.slots: dict[str, SlotDevice] = {}
        for device, slot in slots:
            kind = device.kind.value
            if kind not in layouts:
                layouts[kind] = compile_layout(profile.layout_for(device.kind), profile.slot_registers)
            self.slots[device.id] = SlotDevice(device, profile.slot_address(slot), layouts[kind])
        self.refused = 0

    def plan(self, device_ids: Sequence[str]) -> list[BlockRead]:
        p = self.profile
        return plan_reads(
            ((d, self.slots[d].address) for d in device_ids),
            p.slot_registers,
            p.max_read_registers,
            p.max_gap_registers,
        )

    async def poll(self, plan: Sequence[BlockRead]) -> list[Reading]:
        """Run a plan; never raises a driver error. A dead host gives one link_lost reading."""
        readings: list[Reading] = []
        host_id = self.host.id
        for block in plan:
            try:
                words = await self.link.read_registers(self.profile.function, block.address, block.count)
            except LinkDown as exc:
                log.debug("%s", exc)
                return [Reading(host_id, self._clock.now(), {"link_lost": True})]
            except DriverError as exc:
                self.refused += 1
                log.warning("host %s: %s (devices %s)", host_id, exc, ", ".join(k for k, _ in block.members))
                continue
            at = self._clock.now()
            for device_id, offset in block.members:
                values = decode_slot(self.slots[device_id].layout, words, offset)
                if device_id == host_id:
                    values["link_lost"] = False
                readings.append(Reading(device_id, at, values))
        return readings
