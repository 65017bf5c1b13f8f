"""The IT-100 over a serial port: the link (one command in flight, acknowledge or resend,
reopen with backoff) and the poller that keeps each zone's state and turns it into
`Reading`s, both on a schedule (poll, 000) and as the panel reports changes unasked.

The panel's reports are edges (tamper, tamper restore); fault rules count readings. So the
poller latches every state and re-reads the latch on each poll; after the port reopens it
clears the latch and asks for a status dump (001), which lists what is active now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

import serial
import serial_asyncio_fast

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.model import Device, Reading

from .bus_health import ErrorWindow
from .errors import DeviceRefused, LinkDown
from .framing import Deframer, FrameError
from .it100 import ACK, COMMAND_ERROR, MAX_FRAME, POLL, STATUS_REQUEST, SYSTEM_ERROR, Message, Scope, decode
from .retry import RetryGate

log = logging.getLogger(__name__)


class It100Link(asyncio.Protocol):
    """One serial port to one IT-100."""

    def __init__(
        self,
        name: str,
        port: str,
        baud: int,
        clock: Clock,
        *,
        timeout_s: float = 0.5,
        retries: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.baud = baud
        self.timeout_s = timeout_s
        self.retries = retries
        self._clock = clock
        self._gate = RetryGate(clock, backoff)
        self._lock = asyncio.Lock()
        self._transport: asyncio.BaseTransport | None = None
        self._deframer = Deframer(decode, MAX_FRAME)
        self._pending: tuple[str, asyncio.Future[str]] | None = None
        self.on_message: Callable[[Message], None] = lambda m: None
        self.errors = ErrorWindow(max_unproven=retries + 1)  # one poll's worth of tries
        self.opens = 0
        self.requests = 0
        self.failures = 0
        self.refusals = 0  # requests the panel answered with a system error

    @property
    def bad_frames(self) -> int:
        """Garbled frames received since the link was made; any of them may have been a report."""
        return self._deframer.bad_frames

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def error_rate(self) -> float | None:
        return self.errors.rate()

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        for msg in self._deframer.feed(data):
            if isinstance(msg, FrameError):
                self.errors.garbled()
                log.debug("%s: dropped bad frame: %s", self.name, msg)
                continue
            pending = self._pending
            if pending is not None and not pending[1].done():
                if msg.command == ACK and msg.data == pending[0]:
                    pending[1].set_result(ACK)
                    continue
                if msg.command == COMMAND_ERROR:
                    pending[1].set_result(COMMAND_ERROR)
                    continue
                if msg.command == SYSTEM_ERROR:
                    pending[1].set_result(f"{SYSTEM_ERROR} {msg.data}")
                    continue
            self.on_message(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        log.warning("%s: port %s lost (%s)", self.name, self.port, exc or "closed")
        self._transport = None
        self._deframer.clear()
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(LinkDown(f"{self.name}: port {self.port} lost"))
        self._gate.failed()

    # --- commands -------------------------------------------------------------------------

    async def _open(self) -> None:
        self._gate.check(self.name, f"port {self.port}")
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(), lambda: self, url=self.port, baudrate=self.baud
            )
        except (serial.SerialException, OSError) as exc:
            self._gate.failed()
            raise LinkDown(f"{self.name}: cannot open {self.port}: {exc}") from exc
        # connection_made() runs on the next loop turn; the port is ours already.
        self._transport = transport
        self.opens += 1
        self._gate.succeeded()

    async def command(self, command: str, data: str = "") -> None:
        """Send a command and wait for its acknowledge; resend on a command error (501).
        Raises LinkDown when the port is gone or no acknowledge comes, DeviceRefused on a
        system error (502): the panel understood and said no, so sending again won't help."""
        async with self._lock:
            if self._transport is None:
                await self._open()
            frame = Message(command, data).encode()
            loop = asyncio.get_running_loop()
            for _ in range(self.retries + 1):
                transport = self._transport
                if transport is None:
                    break
                fut: asyncio.Future[str] = loop.create_future()
                self._pending = (command, fut)
                self.requests += 1
                transport.write(frame)  # type: ignore[attr-defined]
                try:
                    async with asyncio.timeout(self.timeout_s):
                        answer = await fut
                    self.errors.answered()
                    if answer == ACK:
                        return
                    if answer.startswith(SYSTEM_ERROR):
                        self.refusals += 1
                        raise DeviceRefused(f"{self.name}: {command} refused with system error {answer[4:]}")
                except TimeoutError:
                    self.errors.unanswered()
                finally:
                    self._pending = None
            self.failures += 1
            raise LinkDown(f"{self.name}: no acknowledge of {command} on {self.port}")

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


_PANEL_FIELDS = ("mains_fail", "battery_low", "tamper", "fire_trouble")
_ZONE_FIELDS = ("tamper", "battery_low", "link_lost")


class It100Poller:
    """Keeps the state of one IT-100 panel and its zones as Readings."""

    def __init__(
        self,
        host: Device,
        zones: Mapping[int, Device],
        link: It100Link,
        clock: Clock,
        on_readings: Callable[[Sequence[Reading]], None],
    ) -> None:
        self.host = host
        self.zones = dict(zones)
        self.link = link
        self._clock = clock
        self._on_readings = on_readings
        self._seen_opens = 0
        self._seen_bad = 0
        self.unknown_zones = 0
        self.refusing = False  # the panel refused the last poll
        self.latched: dict[str, dict[str, bool]] = {}
        self.quiet = False
        self._reset()
        link.on_message = self.on_message

    def _reset(self, quiet: bool = False) -> None:
        self.quiet = quiet  # while rebuilding, reports only latch; the poll reads them out
        self.latched = {self.host.id: dict.fromkeys((*_PANEL_FIELDS, "link_lost"), False)}
        for dev in self.zones.values():
            self.latched[dev.id] = dict.fromkeys(_ZONE_FIELDS, False)

    def on_message(self, msg: Message) -> None:
        """A report from the panel, asked for or not."""
        bits = msg.trouble_bits
        if bits is not None:
            self._set(self.host.id, "mains_fail", bool(bits & 0b10))
            return
        ev = msg.event
        if ev is None:
            return
        field, active, scope = ev
        if field == "alarm":
            return  # zone open/alarm is status, not trouble
        if scope is Scope.PANEL:
            self._set(self.host.id, field, active)
            return
        dev = self.zones.get(msg.zone or -1)
        if dev is None:
            self.unknown_zones += 1
            log.warning("%s: report for zone %s, which the site file does not name", self.host.id, msg.data)
            return
        self._set(dev.id, field, active)

    def _set(self, device_id: str, field: str, active: bool) -> None:
        self.latched[device_id][field] = active
        if self.quiet:
            return
        self._on_readings([Reading(device_id, self._clock.now(), {field: active})])

    async def poll(self) -> list[Reading]:
        """Poll the panel. After the port (re)opens, or after a garbled frame that may have
        been a report, the latch is rebuilt from a status dump."""
        try:
            await self.link.command(POLL)
            if self.link.opens != self._seen_opens or self.link.bad_frames != self._seen_bad:
                self._seen_opens, self._seen_bad = self.link.opens, self.link.bad_frames
                self._reset(quiet=True)
                await self.link.command(STATUS_REQUEST)
                # The dump follows the acknowledge; a poll's acknowledge follows the dump.
                await self.link.command(POLL)
        except LinkDown as exc:
            log.debug("%s", exc)
            return [Reading(self.host.id, self._clock.now(), {"link_lost": True})]
        except DeviceRefused as exc:
            # The panel answers, but refuses to be polled: nothing is known of its zones.
            # No reading, so the gateway's watch raises `unmonitored` once the window is out.
            if not self.refusing:
                log.warning("%s: %s; its zones cannot be read", self.host.id, exc)
            self.refusing = True
            return []
        self.refusing = False
        self.quiet = False
        now = self._clock.now()
        return [Reading(dev, now, dict(state)) for dev, state in self.latched.items()]
