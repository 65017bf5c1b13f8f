"""The IT-100 command set over a byte stream, and the poller that keeps each zone's state
and turns it into `Reading`s, both on a schedule (poll, 000) and as the panel reports changes
unasked.

One link per stream: one command in flight, acknowledge or resend, open again with backoff.
`It100Connection` is that protocol; how the stream is made is its subclasses': a serial
port to an IT-100 module (`It100Link`), or TCP to an Envisalink with its login
(`EnvisalinkLink`, drivers/envisalink.py).

The panel's reports are edges (tamper, tamper restore); fault rules count readings. So the
poller latches every state and re-reads the latch on each poll; after the link opens again
it clears the latch and asks for a status dump (001), which lists what is active now.
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
from .envisalink import Login, login_command, login_step
from .errors import DeviceRefused, LinkDown
from .framing import Deframer, FrameError
from .it100 import ACK, COMMAND_ERROR, MAX_FRAME, POLL, STATUS_REQUEST, SYSTEM_ERROR, Message, Scope, decode
from .retry import RetryGate

log = logging.getLogger(__name__)

# Making the connection, the module's password request, and its verdict on the password:
# the connection and the login together get this many request timeouts.
LOGIN_EXCHANGES = 3


class WrongPassword(LinkDown):
    """The Envisalink refused the password: trying again soon will not mend it."""

    retryable = False


class _Wire(asyncio.Protocol):
    """One stream's callbacks, passed on to the link that made it. A stream the link has
    since given up (closed after a failed login or an unanswered command) is heard no more."""

    def __init__(self, link: It100Connection) -> None:
        self.link = link
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.link._data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(self, exc)

    def write(self, frame: bytes) -> None:
        if self.transport is not None:
            self.transport.write(frame)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class It100Connection:
    """The IT-100 command set over one stream to one panel; subclasses make the stream."""

    def __init__(
        self,
        name: str,
        where: str,
        clock: Clock,
        *,
        timeout_s: float = 0.5,
        retries: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.where = where  # for messages: "port /dev/ttyUSB0", "192.0.2.7:4025"
        self.timeout_s = timeout_s
        self.retries = retries
        self._clock = clock
        self._gate = RetryGate(clock, backoff)
        self._lock = asyncio.Lock()
        self._wire: _Wire | None = None  # the stream, from the moment it is made
        self._ready = False  # ... and once it carries commands (an Envisalink: logged in)
        self._deframer = Deframer(decode, MAX_FRAME)
        self._pending: tuple[str, asyncio.Future[str]] | None = None
        self.on_message: Callable[[Message], None] = lambda m: None
        self.errors = ErrorWindow(max_unproven=retries + 1)  # one poll's worth of tries
        self.down_reason = ""  # why the last open failed, until one succeeds
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
        return self._wire is not None and self._ready

    def error_rate(self) -> float | None:
        return self.errors.rate()

    # --- what subclasses provide ----------------------------------------------------------

    async def _connect(self, wire: _Wire) -> None:
        """Make the stream with `wire` as its protocol and get it ready for commands; raise
        LinkDown (the stream is closed by the caller)."""
        raise NotImplementedError

    def _before_ready(self, msg: Message) -> None:
        """A message that came while the stream is made but not yet ready."""

    def _stop_waiting(self, exc: LinkDown) -> None:
        """The stream was lost while `_connect` may be waiting on it."""

    def _unanswered(self) -> None:
        """A command got no acknowledge after every try."""

    # --- the stream ---------------------------------------------------------------------

    def _data(self, wire: _Wire, data: bytes) -> None:
        if wire is not self._wire:
            return
        for msg in self._deframer.feed(data):
            if isinstance(msg, FrameError):
                self.errors.garbled()
                log.debug("%s: dropped bad frame: %s", self.name, msg)
                continue
            if not self._ready:
                self._before_ready(msg)
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

    def _lost(self, wire: _Wire, exc: Exception | None) -> None:
        if wire is not self._wire:
            return
        was_ready = self._ready
        self._forget()
        down = LinkDown(f"{self.name}: {self.where} lost")
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(down)
        if was_ready:
            log.warning("%s: %s lost (%s)", self.name, self.where, exc or "closed")
            self._gate.failed()
        else:
            self._stop_waiting(down)  # `_open` counts this failure

    def _forget(self) -> None:
        self._wire = None
        self._ready = False
        self._deframer.clear()

    def _drop(self) -> None:
        """Close the stream and forget it: nothing it says counts any more."""
        wire = self._wire
        self._forget()
        if wire is not None:
            wire.close()

    async def _open(self) -> None:
        where = f"{self.where} ({self.down_reason})" if self.down_reason else self.where
        self._gate.check(self.name, where)
        wire = self._wire = _Wire(self)
        self._ready = False
        self._deframer.clear()
        try:
            await self._connect(wire)
        except LinkDown as exc:
            if self._wire is wire:
                self._drop()
            else:
                wire.close()
            self._gate.failed(longest=not exc.retryable)
            raise
        if self._wire is not wire:  # lost in the moment it was made
            self._gate.failed()
            raise LinkDown(f"{self.name}: {self.where} lost")
        self._ready = True
        self.down_reason = ""
        self.opens += 1
        self._gate.succeeded()

    # --- commands -------------------------------------------------------------------------

    async def command(self, command: str, data: str = "") -> None:
        """Send a command and wait for its acknowledge; resend on a command error (501).
        Raises LinkDown when the stream is gone or no acknowledge comes, DeviceRefused on a
        system error (502): the panel understood and said no, so sending again won't help."""
        async with self._lock:
            if not self.connected:
                await self._open()
            frame = Message(command, data).encode()
            loop = asyncio.get_running_loop()
            for _ in range(self.retries + 1):
                wire = self._wire
                if wire is None:
                    break
                fut: asyncio.Future[str] = loop.create_future()
                self._pending = (command, fut)
                self.requests += 1
                wire.write(frame)
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
            if self._wire is not None:
                self._unanswered()
            raise LinkDown(f"{self.name}: no acknowledge of {command} on {self.where}")

    async def close(self) -> None:
        self._drop()


class It100Link(It100Connection):
    """A serial port to an IT-100 module."""

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
        super().__init__(name, f"port {port}", clock, timeout_s=timeout_s, retries=retries, backoff=backoff)
        self.port = port
        self.baud = baud

    async def _connect(self, wire: _Wire) -> None:
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                asyncio.get_running_loop(), lambda: wire, url=self.port, baudrate=self.baud
            )
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(f"{self.name}: cannot open {self.port}: {exc}") from exc
        # connection_made() runs on the next loop turn; the port is ours already.
        wire.transport = transport


class EnvisalinkLink(It100Connection):
    """TCP to an Envisalink (EVL-3/4): the TPI login, then the IT-100 command set.

    A wrong password is said once as an error, and again (as a warning) at most once per
    attempt, which it puts off by the longest backoff: the module's password will not change
    by itself within seconds. A lost connection is made again with the usual backoff; so is
    one whose command went unanswered, as a TCP connection can die without a word."""

    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        password: str,
        clock: Clock,
        *,
        timeout_s: float = 1.0,
        retries: int = 1,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(name, f"{address}:{port}", clock, timeout_s=timeout_s, retries=retries, backoff=backoff)
        self.address = address
        self.port = port
        self._login_frame = login_command(password).encode()  # ValueError for one the TPI cannot carry
        self.login_timeout_s = LOGIN_EXCHANGES * timeout_s
        self._login: asyncio.Future[Login] | None = None
        self._password_sent = False
        self.logins = 0
        self.refused_logins = 0
        self.ignored_before_login = 0  # messages before the login's verdict that are not part of it

    async def _connect(self, wire: _Wire) -> None:
        loop = asyncio.get_running_loop()
        login = self._login = loop.create_future()
        self._password_sent = False
        try:
            async with asyncio.timeout(self.login_timeout_s):
                await loop.create_connection(lambda: wire, self.address, self.port)
                step = await login
        except TimeoutError:
            self.down_reason = "no login"
            raise LinkDown(f"{self.name}: no login at {self.where} within {self.login_timeout_s:g} s") from None
        except OSError as exc:
            self.down_reason = "cannot connect"
            raise LinkDown(f"{self.name}: cannot connect to {self.where}: {exc}") from exc
        finally:
            self._login = None
        if step is Login.REFUSED:
            self.refused_logins += 1
            self.down_reason = "wrong password"
            if self.refused_logins == 1:
                log.error(
                    "%s: wrong password: the Envisalink at %s refused the password in the site file's "
                    "envisalink.password_file; its zones are not monitored; trying again every %.0f s",
                    self.name,
                    self.where,
                    self._gate.longest_s,
                )
            else:
                log.warning("%s: wrong password, again (%d times)", self.name, self.refused_logins)
            raise WrongPassword(f"{self.name}: wrong password at {self.where}")
        if step is Login.TIMED_OUT:
            self.down_reason = "login timed out"
            raise LinkDown(f"{self.name}: the Envisalink at {self.where} gave up waiting for the password")
        if self.refused_logins:
            log.warning("%s: the Envisalink at %s takes the password again", self.name, self.where)
        self.refused_logins = 0
        self.logins += 1

    def _before_ready(self, msg: Message) -> None:
        step = login_step(msg)
        login = self._login
        if login is None or login.done() or step is None:
            self.ignored_before_login += 1
            return
        if step is Login.REQUEST:
            if self._password_sent:  # asked twice: the verdict is awaited once, or times out
                self.ignored_before_login += 1
                return
            self._password_sent = True
            if self._wire is not None:
                self._wire.write(self._login_frame)
            return
        login.set_result(step)

    def _stop_waiting(self, exc: LinkDown) -> None:
        if self._login is not None and not self._login.done():
            self.down_reason = "closed before the login"
            self._login.set_exception(exc)

    def _unanswered(self) -> None:
        # A connection whose module no longer answers is made again on the next request.
        log.debug("%s: %s does not answer; the connection is made again", self.name, self.where)
        self._drop()
        self._gate.failed()


_PANEL_FIELDS = ("mains_fail", "battery_low", "tamper", "fire_trouble")
_ZONE_FIELDS = ("tamper", "battery_low", "link_lost")


class It100Poller:
    """Keeps the state of one IT-100 panel and its zones as Readings."""

    def __init__(
        self,
        host: Device,
        zones: Mapping[int, Device],
        link: It100Connection,
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
        """Poll the panel. After the link (re)opens, or after a garbled frame that may have
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
