"""Modbus over TCP or RTU (pymodbus asyncio clients): a link per connection or serial bus,
and the poller that turns block reads into `Reading`s through a host's register profile.

The link owns reconnect and retry: one request in flight, a timeout per request, a few
retries. On TCP a host that stops answering has its connection dropped and reopened no
sooner than the backoff allows; when several units share the connection (a Modbus TCP
gateway in front of an RS-485 line), only when none of them answers, and a unit the gateway
reports unreachable (exception 10 or 11) is that unit's silence, not a refusal. On a
serial bus a silent unit costs only its own timeout;
the port is reopened (with backoff) only when the port itself fails, e.g. a USB adapter
pulled out. A host that does not answer yields a `link_lost` reading; it never raises out
of a poll. On RTU the link keeps the 3.5-character silence between frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.model import Device, Reading

from .bus_health import ErrorWindow
from .errors import DeviceRefused, DriverError, LinkDown
from .modbus_map import BlockRead, CompiledLayout, Profile, compile_layout, decode_slot, plan_reads
from .modbus_rtu import silence_s
from .retry import RetryGate

log = logging.getLogger(__name__)


Client = AsyncModbusTcpClient | AsyncModbusSerialClient
# pymodbus's packet hook: (sending, bytes) -> the bytes to use. The link uses it to hear
# whether anything came back during a try that failed.
Trace = Callable[[bool, bytes], bytes]
# Exceptions a Modbus gateway answers for a unit behind it that did not answer: the unit is
# silent, as if the request had timed out (Modbus application protocol, section 7).
GATEWAY_SILENT = frozenset({10, 11})


class _UnitSilent(Exception):
    """A gateway answered for a unit that did not."""


class ModbusLink:
    """One Modbus connection (a TCP socket or a serial port); every request goes through
    its lock, so there is one request in flight and waiting pollers are served in turn."""

    def __init__(
        self,
        name: str,
        where: str,
        make_client: Callable[[Trace], Client],
        clock: Clock,
        *,
        unit: int = 1,
        timeout_s: float = 1.0,
        retries: int = 1,
        backoff: Backoff | None = None,
        serial_baud: int | None = None,
    ) -> None:
        self.name = name
        self.where = where
        self._make_client = make_client
        self.unit = unit
        self.serial = serial_baud is not None
        # Inter-frame silence the master keeps on a serial line (RTU §2.5.1.1).
        self.silence_s = silence_s(serial_baud) if serial_baud else 0.0
        self._quiet_at = 0.0
        self.errors = ErrorWindow(max_unproven=retries + 1)  # one poll's worth of tries
        self.timeout_s = timeout_s
        self.retries = retries
        self._clock = clock
        self._gate = RetryGate(clock, backoff)
        self._lock = asyncio.Lock()
        self._client: Client | None = None
        self._heard = False  # bytes came back during the try in flight
        self._units: set[int] = set()  # the units this link serves
        self._silent: set[int] = set()  # units that went unanswered since anything last answered
        self.requests = 0
        self.failures = 0
        self.refusals = 0  # requests the peer answered with a Modbus exception
        self.reconnects = 0

    def serve(self, unit: int) -> None:
        """A unit behind this link (its poller says so at the start): a TCP connection is
        given up only when every unit it serves is silent, never for one of them."""
        self._units.add(unit)

    @property
    def retry_in_s(self) -> float:
        """Seconds until the link may try to connect again (0: now)."""
        return self._gate.retry_in_s

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def error_rate(self) -> float | None:
        """Share of the recent transactions that failed, once there are enough of them."""
        return self.errors.rate()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._heard = True
        return data

    async def _client_now(self) -> Client:
        """The open client, opening one (if the backoff allows) when there is none."""
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        self._gate.check(self.name, self.where)
        client = self._make_client(self._trace)
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if not ok:
            client.close()
            self._gate.failed()
            raise LinkDown(f"{self.name}: cannot open {self.where}")
        self.reconnects += 1
        self._silent.clear()
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _quiet(self) -> None:
        """Wait out the inter-frame silence, on the system's fine clock: an event loop's own
        may count whole milliseconds (uvloop), longer than the silence at 19,200 baud."""
        if not self.silence_s:
            return  # TCP: no silence to keep, no clock to read
        # A coarse loop may wake early; the rest (under a millisecond) is slept again.
        while (wait := self._quiet_at - time.monotonic()) > 0:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep(wait)

    def _spoke(self) -> None:
        """A frame went by: the line must now stay quiet for the inter-frame silence."""
        if self.silence_s:
            self._quiet_at = time.monotonic() + self.silence_s

    async def read_registers(self, function: str, address: int, count: int, unit: int | None = None) -> list[int]:
        """Read `count` registers from `unit`; raises LinkDown (retryable) or DeviceRefused."""
        unit = self.unit if unit is None else unit
        async with self._lock:
            client = await self._client_now()
            read = client.read_holding_registers if function == "holding" else client.read_input_registers
            last: Exception | None = None
            for _ in range(self.retries + 1):
                self.requests += 1
                await self._quiet()
                self._heard = False
                try:
                    async with asyncio.timeout(self.timeout_s * 1.5):
                        rr = await read(address, count=count, device_id=unit)
                    if rr.isError() and getattr(rr, "exception_code", None) in GATEWAY_SILENT:
                        self._heard = False  # the gateway's answer, not the unit's
                        raise _UnitSilent(f"the gateway reports exception {rr.exception_code}")
                except (TimeoutError, ModbusException, OSError, _UnitSilent) as exc:
                    last = exc
                    if isinstance(exc, _UnitSilent):
                        self._silent.clear()  # the gateway answered: the connection is alive
                    else:
                        self._silent.add(unit)
                    # Bytes that came back but did not decode are the line's fault, at once;
                    # silence may be the unit's own, and counts once it answers again.
                    if self._heard:
                        self.errors.garbled(unit)
                    else:
                        self.errors.unanswered(unit)
                    self._spoke()
                    if not client.connected:
                        break
                    continue
                self._spoke()
                self._silent.clear()
                self.errors.answered(unit)
                if rr.isError():
                    self.refusals += 1
                    code = getattr(rr, "exception_code", "?")
                    raise DeviceRefused(
                        f"{self.name}: unit {unit}: exception {code} reading {count} registers at {address}"
                    )
                if len(rr.registers) < count:
                    self.refusals += 1
                    raise DeviceRefused(
                        f"{self.name}: unit {unit}: {len(rr.registers)} registers returned, {count} asked"
                    )
                self._gate.succeeded()
                return list(rr.registers[:count])
            self.failures += 1
            if not client.connected or (not self.serial and self._silent and self._silent >= self._units):
                # TCP: the peer is gone or wedged (no unit behind it answers), start afresh.
                # Serial: only if the port failed.
                self._drop()
                self._gate.failed()
            raise LinkDown(f"{self.name}: unit {unit}: no answer on {self.where} ({type(last).__name__}: {last})")

    async def write_register(self, address: int, value: int, unit: int | None = None) -> None:
        """One register write (function 6), no retry: a command is not repeated blindly.
        Raises LinkDown or DeviceRefused."""
        unit = self.unit if unit is None else unit
        async with self._lock:
            client = await self._client_now()
            await self._quiet()
            try:
                async with asyncio.timeout(self.timeout_s * 1.5):
                    rr = await client.write_register(address, value, device_id=unit)
            except (TimeoutError, ModbusException, OSError) as exc:
                raise LinkDown(f"{self.name}: unit {unit}: write at {address} not answered ({exc})") from exc
            finally:
                self._spoke()
            if rr.isError():
                raise DeviceRefused(f"{self.name}: unit {unit}: write of {value} at {address} refused")

    async def close(self) -> None:
        async with self._lock:
            self._drop()


def tcp_link(
    name: str,
    address: str,
    port: int,
    unit: int,
    clock: Clock,
    *,
    timeout_s: float = 1.0,
    retries: int = 1,
    backoff: Backoff | None = None,
) -> ModbusLink:
    """A link to one Modbus TCP server."""

    def make(trace: Trace) -> Client:
        # reconnect_delay=0: pymodbus must not reconnect behind our back; we own backoff.
        return AsyncModbusTcpClient(
            address, port=port, timeout=timeout_s, retries=0, reconnect_delay=0, name=name, trace_packet=trace
        )

    return ModbusLink(
        name, f"{address}:{port}", make, clock, unit=unit, timeout_s=timeout_s, retries=retries, backoff=backoff
    )


def rtu_link(
    name: str,
    port: str,
    baud: int,
    clock: Clock,
    *,
    timeout_s: float = 0.5,
    retries: int = 1,
    backoff: Backoff | None = None,
) -> ModbusLink:
    """A link to a Modbus RTU bus (8N1) shared by several units."""

    def make(trace: Trace) -> Client:
        return AsyncModbusSerialClient(
            port,
            baudrate=baud,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            name=name,
            trace_packet=trace,
        )

    return ModbusLink(name, port, make, clock, timeout_s=timeout_s, retries=retries, backoff=backoff, serial_baud=baud)


@dataclass(frozen=True, slots=True)
class SlotDevice:
    device: Device
    address: int
    layout: CompiledLayout


class HostPoller:
    """Polls groups of a host's device slots with merged block reads.

    When the host refuses a merged block (a Modbus exception, e.g. illegal data address
    because the site file names a slot the panel does not have), the block is read again
    slot by slot, and stays split from then on: the slots the host serves keep their
    readings, and each slot it refuses is a `slot_refused` reading of its own device, so the
    device ends in a fault instead of going unmonitored. A host that refuses every slot,
    its own first, is one `slot_refused` reading of the host.
    """

    def __init__(
        self,
        host: Device,
        link: ModbusLink,
        profile: Profile,
        slots: Sequence[tuple[Device, int]],
        clock: Clock,
        unit: int | None = None,
    ) -> None:
        self.host = host
        self.link = link
        self.unit = unit
        self.profile = profile
        self._clock = clock
        layouts: dict[str, CompiledLayout] = {}
        self.slots: dict[str, SlotDevice] = {}
        for device, slot in slots:
            kind = device.kind.value
            if kind not in layouts:
                layouts[kind] = compile_layout(profile.layout_for(device.kind), profile.slot_registers)
            self.slots[device.id] = SlotDevice(device, profile.slot_address(slot), layouts[kind])
        link.serve(link.unit if unit is None else unit)
        self.refused = 0  # block and slot reads the host refused
        self._split: dict[BlockRead, tuple[BlockRead, ...]] = {}  # refused blocks, as single slots
        self._refusing: set[str] = set()  # devices whose slot the host refused last time

    async def command(self, device_id: str, name: str) -> None:
        """Send a device command the profile defines (e.g. self_test); DeviceRefused if none."""
        slot = self.slots[device_id]
        cmd = self.profile.layout_for(slot.device.kind).commands.get(name)
        if cmd is None:
            raise DeviceRefused(f"{self.profile.name} has no {name} command for a {slot.device.kind.value}")
        await self.link.write_register(slot.address + cmd.offset, cmd.value, self.unit)

    def plan(self, device_ids: Sequence[str]) -> list[BlockRead]:
        p = self.profile
        return plan_reads(
            ((d, self.slots[d].address) for d in device_ids),
            p.slot_registers,
            p.max_read_registers,
            p.max_gap_registers,
        )

    def _single(self, block: BlockRead) -> tuple[BlockRead, ...]:
        size = self.profile.slot_registers
        return tuple(BlockRead(block.address + off, size, ((key, 0),)) for key, off in block.members)

    async def poll(self, plan: Sequence[BlockRead]) -> list[Reading]:
        """Run a plan; never raises a driver error. A dead host gives one link_lost reading."""
        readings: list[Reading] = []
        host_id = self.host.id
        queue = [b for block in plan for b in self._split.get(block, (block,))]
        while queue:
            block = queue.pop(0)
            try:
                words = await self.link.read_registers(self.profile.function, block.address, block.count, self.unit)
            except LinkDown as exc:
                log.debug("%s", exc)
                return [Reading(host_id, self._clock.now(), {"link_lost": True})]
            except DriverError as exc:
                self.refused += 1
                if len(block.members) > 1:
                    log.warning("host %s: %s; reading its slots one by one", host_id, exc)
                    parts = self._split[block] = self._single(block)
                    queue[:0] = parts
                    continue
                (device_id, _), at = block.members[0], self._clock.now()
                if device_id not in self._refusing:
                    log.warning("host %s: %s (device %s)", host_id, exc, device_id)
                    self._refusing.add(device_id)
                readings.append(Reading(device_id, at, {"slot_refused": True}))
                continue
            at = self._clock.now()
            for device_id, offset in block.members:
                values = decode_slot(self.slots[device_id].layout, words, offset)
                if device_id == host_id:
                    values["link_lost"] = False
                values["slot_refused"] = False
                self._refusing.discard(device_id)
                readings.append(Reading(device_id, at, values))
        if readings and all(r.values.get("slot_refused") for r in readings) and readings[0].device_id == host_id:
            # It refuses the host's own slot and every other: not an enrolment slip but a
            # profile that does not fit the panel. One fault of the host, not one per device.
            return readings[:1]
        return readings
