"""A SIA DC-09 receiver for the IP alarm hubs of a site (Ajax, Jablotron, Hikvision AX PRO,
Paradox IP ...): each hub reports every event, trouble and restore over TCP or UDP, and a
periodic link test, as it would to an alarm receiving centre.

One frame's way: the peer's token bucket (over it: dropped unanswered, a TCP peer is not
read until it may send again), the codec's verdict (`dc09.Decoder`: framing, CRC, account,
key, timestamp window), the code's meaning (`sia_map.CodeMap`), the readings handed on, and
only then the answer: a message the gateway could not take is not acknowledged, so the hub
sends it again. A frame with a bad CRC, or one that is not DC-09 at all, gets no answer; a
wrong account or key, or a timestamp outside the window, a NAK. Every verdict is counted.

Hubs report changes, not state: what each report said of a device is latched (until its
restore), and `judge()`, run on the gateway's schedule, repeats the latch as readings, so a
fault's debounce counts judgements as it counts polls, and its detection time is the first
report's. A hub is heard on every message it sends; one that misses its periodic report
(its interval plus a margin) is `link_lost`, and the devices behind it are left to its
fault (nothing is said of them while it is lost). A message that repeats one just taken
(the hub did not get the ACK) is acknowledged again and not taken twice.

Bounded: a frame's size, connections in all and per address, bytes waiting to be written
to a peer that does not read, idle connections, the peers remembered by the rate limit,
the recent messages remembered per hub, and the unknown reports kept for a look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from alarmgw.backoff import Backoff
from alarmgw.buckets import TokenBuckets, client_key
from alarmgw.clock import Clock
from alarmgw.model import Reading

from .dc09 import MAX_FRAME, WINDOW_FUTURE_S, WINDOW_PAST_S, Decoder, Message, Verdict
from .sia_map import Change, CodeMap, HubZones, LinkTest, Unknown, detection_time

log = logging.getLogger(__name__)

# Refusals (a flood's junk, a hub with the wrong key) are logged at most this many a
# minute one by one, the rest summed up; all are counted.
LOG_BURST = 10
LOG_WINDOW_S = 60.0
RECENT_PER_HUB = 16  # messages remembered per hub to know a repeat
UNKNOWN_KEPT = 200  # the latest unknown reports, for a look
UDP_RECEIVE_BUFFER = 1024 * 1024
_ACCOUNT = re.compile(r"^[0-9A-Fa-f]{3,16}$")
_KEY = re.compile(r"^[0-9A-Fa-f]{16}([0-9A-Fa-f]{8}){0,2}$")

Values = dict[str, float | int | bool]


@dataclass(frozen=True, slots=True)
class Hub:
    """One hub of the site: its device id, DC-09 account, key and zone map."""

    id: str
    account: str  # 3 to 16 hex digits, as set in the hub
    key: str | None = None  # 16, 24 or 32 hex characters (AES-128/192/256); None: plain text
    report_interval_s: float | None = None  # its periodic report; None: not judged by silence
    report_margin_s: float = 30.0  # how late a periodic report may be
    zones: Mapping[int, str] = field(default_factory=dict)  # zone number -> device id

    def __post_init__(self) -> None:
        if not _ACCOUNT.match(self.account):
            raise ValueError(f"{self.id}: account {self.account!r} is not 3 to 16 hex digits")
        if self.key is not None and not _KEY.match(self.key):
            raise ValueError(f"{self.id}: a key is 16, 24 or 32 hex characters (AES-128, -192, -256)")
        if self.report_interval_s is not None and self.report_interval_s <= 0:
            raise ValueError(f"{self.id}: report_interval_s must be positive")
        if self.report_margin_s < 0:
            raise ValueError(f"{self.id}: report_margin_s cannot be negative")
        if 0 in self.zones:
            raise ValueError(f"{self.id}: zone 0 is the hub itself")

    @property
    def window_s(self) -> float | None:
        """How long the hub may be silent before its link is lost."""
        return None if self.report_interval_s is None else self.report_interval_s + self.report_margin_s


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame: int = MAX_FRAME  # bytes, LF and CR included
    max_connections: int = 2048  # TCP connections open at once
    max_connections_per_address: int = 4  # a hub needs one
    messages_per_s: float = 2.0  # per peer address (IPv6: per /64), with a burst of
    burst: float = 20.0
    idle_timeout_s: float = 300.0  # a TCP connection that says nothing this long is closed
    max_unsent_bytes: int = 64 * 1024  # answers a peer leaves unread before it is dropped
    max_peers: int = 4096  # addresses the rate limit remembers
    window_past_s: float = WINDOW_PAST_S  # how old an event's timestamp may be
    window_future_s: float = WINDOW_FUTURE_S  # and how far ahead of the gateway's clock


class Supervision:
    """The hubs' links and what their reports latched; pure (monotonic seconds handed in)."""

    def __init__(self, hubs: Sequence[Hub], start: float, stall_s: float = float("inf")) -> None:
        self.hubs = {h.id: h for h in hubs}
        self._heard = {h.id: start for h in hubs}
        self._stall_s = stall_s
        self._judged = start
        self.latched: dict[str, Values] = {}

    def heard(self, hub_id: str, at: float) -> None:
        self._heard[hub_id] = max(at, self._heard.get(hub_id, at))

    def latch(self, device_id: str, values: Mapping[str, bool]) -> None:
        self.latched.setdefault(device_id, {}).update(values)

    def age_s(self, hub_id: str, at: float) -> float:
        return at - self._heard[hub_id]

    def lost(self, hub_id: str, at: float) -> bool:
        """The hub missed its periodic report."""
        window = self.hubs[hub_id].window_s
        return window is not None and self.age_s(hub_id, at) > window

    def hub_link(self, hub_id: str, at: float) -> bool:
        """`link_lost` of the hub: silent past its window, or it says its path is down."""
        return self.lost(hub_id, at) or bool(self.latched.get(hub_id, {}).get("link_lost", False))

    def judge(self, now: datetime, at: float, hub_ids: Sequence[str] | None = None) -> list[Reading]:
        """Each hub's link and latch, and each device's latch while its hub is heard (of
        `hub_ids`, or every hub). A gap since the last judgement longer than `stall_s` is the
        gateway's own absence (the box suspended): every window starts again."""
        if hub_ids is None:
            self.begin(at)
        out = []
        for hub_id in self.hubs if hub_ids is None else hub_ids:
            hub = self.hubs[hub_id]
            out.append(Reading(hub.id, now, {**self.latched.get(hub.id, {}), "link_lost": self.hub_link(hub.id, at)}))
            if self.lost(hub.id, at):
                continue  # nothing is known of its devices; the hub's fault covers them
            for device_id in hub.zones.values():
                out.append(Reading(device_id, now, {"link_lost": False, **self.latched.get(device_id, {})}))
        return out

    def begin(self, at: float) -> None:
        """A judgement starts at `at` (see `judge`)."""
        if at - self._judged > self._stall_s:
            self._heard = {h: max(t, at) for h, t in self._heard.items()}
        self._judged = at


class _LogLimit:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._start = float("-inf")
        self._logged = 0
        self._unlogged = 0

    def warn(self, text: str, *args: object) -> None:
        now = self._clock.monotonic()
        if now - self._start >= LOG_WINDOW_S:
            if self._unlogged:
                log.warning("%d more DC-09 refusals in %.0f s not logged one by one", self._unlogged, LOG_WINDOW_S)
            self._start, self._logged, self._unlogged = now, 0, 0
        if self._logged < LOG_BURST:
            self._logged += 1
            log.warning(text, *args)
        else:
            self._unlogged += 1


OnReadings = Callable[[Sequence[Reading]], None]
OnUnknown = Callable[[Unknown, datetime], None]


class SiaReceiver:
    """Listens on `bind`:`port` over TCP and UDP (port 0: any free one, see `tcp_port`,
    `udp_port`) for the hubs given; hands readings to `on_readings` and unknown reports to
    `on_unknown`. `judge()` is for the gateway's schedule; `stall_s` is how long a gap
    between two judgements means the gateway itself was away."""

    def __init__(
        self,
        hubs: Sequence[Hub],
        codes: CodeMap,
        clock: Clock,
        on_readings: OnReadings,
        *,
        bind: str = "0.0.0.0",
        port: int = 0,
        tcp: bool = True,
        udp: bool = True,
        limits: Limits = Limits(),
        on_unknown: OnUnknown | None = None,
        stall_s: float = float("inf"),
    ) -> None:
        accounts = [h.account.upper() for h in hubs]
        if len(set(accounts)) != len(accounts):
            raise ValueError("two hubs share an account")
        self.hubs = {h.account.upper(): h for h in hubs}
        self.codes = codes
        self.clock = clock
        self.on_readings = on_readings
        self.on_unknown = on_unknown
        self.bind, self.port, self.tcp, self.udp = bind, port, tcp, udp
        self.limits = limits
        self.decoder = Decoder(
            {h.account: h.key for h in hubs},
            window_past_s=limits.window_past_s,
            window_future_s=limits.window_future_s,
            max_frame=limits.max_frame,
        )
        self.supervision = Supervision(hubs, clock.monotonic(), stall_s)
        self.buckets = TokenBuckets(limits.messages_per_s, limits.burst, limits.max_peers)
        self.counts: Counter[str] = Counter()
        self.unknown: deque[tuple[datetime, Unknown]] = deque(maxlen=UNKNOWN_KEPT)
        self._zones = {h.id: HubZones(h.id, h.zones) for h in hubs}
        self._recent: dict[str, deque[tuple[str, object]]] = {a: deque(maxlen=RECENT_PER_HUB) for a in self.hubs}
        self._per_address: Counter[str] = Counter()
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._datagrams: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._log = _LogLimit(clock)
        self.tcp_port: int | None = None
        self.udp_port: int | None = None

    # --- one frame ------------------------------------------------------------------------

    def take(self, frame: bytes, peer: str) -> bytes | None:
        """One frame from `peer` (already through its bucket): the answer to send, if any."""
        now = self.clock.now()
        outcome = self.decoder.decode(frame, now)
        self.counts[outcome.verdict.value] += 1
        if outcome.message is None:
            if outcome.verdict is not Verdict.MALFORMED:
                self._log.warn("DC-09 from %s refused (%s)", peer, outcome.verdict.value)
            return outcome.reply
        try:
            self._accepted(outcome.message, now)
        except Exception:  # the hub is not answered and sends it again
            self.counts["ingest_errors"] += 1
            log.exception("could not take a DC-09 message from %s", peer)
            return None
        return outcome.reply

    def _accepted(self, message: Message, now: datetime) -> None:
        hub = self.hubs[message.account]
        sup = self.supervision
        sup.heard(hub.id, self.clock.monotonic())
        recent = self._recent[message.account]
        key = (message.sequence, message.report)
        if key in recent:
            self.counts["repeats"] += 1
            return
        meaning = self.codes.meaning(message.report, self._zones[hub.id])
        detected = detection_time(message.timestamp, now, self.limits.window_past_s, self.limits.window_future_s)
        readings: list[Reading] = []
        if isinstance(meaning, Change):
            sup.latch(meaning.device_id, meaning.values)
            if meaning.device_id == hub.id:
                link = {"link_lost": sup.hub_link(hub.id, self.clock.monotonic())}
                readings.append(Reading(hub.id, detected.at, {**link, **meaning.values}))
            else:
                readings.append(self._hub_heard(hub, now))
                readings.append(Reading(meaning.device_id, detected.at, dict(meaning.values)))
        else:
            readings.append(self._hub_heard(hub, now))
            if isinstance(meaning, Unknown):
                self.counts[f"unknown_{meaning.reason}"] += 1
                self.unknown.append((detected.at, meaning))
                if self.on_unknown is not None:
                    try:
                        self.on_unknown(meaning, detected.at)
                    except Exception:  # kept in `unknown` all the same; the hub is answered
                        self.counts["unknown_not_kept"] += 1
                        log.exception("could not keep an unknown DC-09 report of %s", meaning.device_id)
            else:
                assert isinstance(meaning, LinkTest)
                self.counts["link_tests"] += 1
        self.on_readings(readings)
        recent.append(key)  # only once taken: a message the gateway could not take comes again

    def _hub_heard(self, hub: Hub, now: datetime) -> Reading:
        return Reading(hub.id, now, {"link_lost": self.supervision.hub_link(hub.id, self.clock.monotonic())})

    def judge(self) -> list[Reading]:
        """Every hub's link verdict and what the reports latched, now."""
        return self.supervision.judge(self.clock.now(), self.clock.monotonic())

    def judge_slices(self, hubs_per_slice: int = 50) -> Iterator[list[Reading]]:
        """The same judgement, now, a few hubs at a time (each hub with its devices), so a
        caller can hand each slice on and let answers out between them: a site with many
        hubs is judged without holding every ACK up for the whole of it."""
        now, at = self.clock.now(), self.clock.monotonic()
        self.supervision.begin(at)
        ids = list(self.supervision.hubs)
        for i in range(0, len(ids), hubs_per_slice):
            yield self.supervision.judge(now, at, ids[i : i + hubs_per_slice])

    def admit(self, peer: str) -> float:
        """0 when `peer` may send a frame now, else the seconds it must wait (counted)."""
        wait = self.buckets.take(peer, self.clock.monotonic())
        if wait > 0:
            self.counts["rate_limited"] += 1
        return wait

    # --- sockets ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be taken."""
        loop = asyncio.get_running_loop()
        try:
            if self.tcp:
                self._server = await loop.create_server(lambda: _Connection(self), self.bind, self.port)
                self.tcp_port = self._server.sockets[0].getsockname()[1]
            if self.udp:
                udp_port = self.port or self.tcp_port or 0
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(self.bind, udp_port)
                )
                self._datagrams = transport
                self.udp_port = transport.get_extra_info("sockname")[1]
                sock = transport.get_extra_info("socket")
                with contextlib.suppress(OSError):  # room for a burst (the kernel caps it at rmem_max)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        except BaseException:
            await self.stop()
            raise
        self._sweeper = asyncio.create_task(self._sweep(), name="dc09 idle sweep")
        log.info("DC-09 receiver on %s (tcp %s, udp %s)", self.bind, self.tcp_port, self.udp_port)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            for c in list(self._connections):
                c.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self._datagrams is not None:
            self._datagrams.close()
            self._datagrams = None

    async def __aenter__(self) -> SiaReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, backoff: Backoff | None = None) -> None:
        """Listen until cancelled; an address that cannot be taken is tried again with
        backoff (hubs not heard meanwhile become `link_lost` as their windows pass)."""
        backoff = backoff or Backoff(1.0, 60.0)
        while True:
            try:
                await self.start()
                break
            except OSError as exc:
                delay = backoff.next_delay()
                log.error(
                    "DC-09 receiver cannot listen on %s:%s (%s); again in %.0f s", self.bind, self.port, exc, delay
                )
                await self.clock.sleep_until(self.clock.monotonic() + delay)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def _sweep(self) -> None:
        """Close TCP connections idle past the limit."""
        every = max(0.5, self.limits.idle_timeout_s / 4)
        while True:
            await self.clock.sleep_until(self.clock.monotonic() + every)
            now = self.clock.monotonic()
            for c in [c for c in self._connections if now - c.active > self.limits.idle_timeout_s]:
                self.counts["idle_closed"] += 1
                c.transport.abort()

    def _opened(self, c: _Connection) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            self.counts["connections_refused"] += 1
            self._log.warn("DC-09: %d connections open; refused %s", len(self._connections), c.peer)
            return False
        if self._per_address[c.peer] >= self.limits.max_connections_per_address:
            self.counts["connections_refused"] += 1
            self._log.warn("DC-09: %s already has %d connections; refused", c.peer, self._per_address[c.peer])
            return False
        self._connections.add(c)
        self._per_address[c.peer] += 1
        self.counts["connections"] += 1
        return True

    def _closed(self, c: _Connection) -> None:
        if c in self._connections:
            self._connections.discard(c)
            self._per_address[c.peer] -= 1
            if self._per_address[c.peer] <= 0:
                del self._per_address[c.peer]

    def stats(self) -> dict[str, int]:
        return {**{f"dc09_{k}": v for k, v in self.counts.items()}, "dc09_open_connections": len(self._connections)}


class _Connection(asyncio.Protocol):
    """One TCP peer: frames end at CR; past the limit without one, the peer is dropped."""

    def __init__(self, rx: SiaReceiver) -> None:
        self.rx = rx
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set at once
        self.peer = ""
        self.buf = bytearray()
        self.active = rx.clock.monotonic()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = client_key(str(peername[0]) if peername else "?")
        if not self.rx._opened(self):
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.rx._closed(self)

    def data_received(self, data: bytes) -> None:
        self.active = self.rx.clock.monotonic()
        self.buf += data
        self._drain()

    def _drain(self) -> None:
        rx = self.rx
        while not self.paused and not self.transport.is_closing():
            end = self.buf.find(b"\r")
            if end < 0:
                if len(self.buf) > rx.limits.max_frame:
                    rx.counts["oversize"] += 1
                    rx._log.warn("DC-09: %s sent %d bytes without a frame's end; dropped", self.peer, len(self.buf))
                    self.transport.abort()
                return
            frame = bytes(self.buf[: end + 1])
            del self.buf[: end + 1]
            if len(frame.strip(b"\r\n\0 ")) == 0:
                continue  # a keep-alive line
            wait = rx.admit(self.peer)
            if wait > 0:  # dropped unanswered, and nothing more is read from it for a while
                self.paused = True
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(min(wait, 5.0), self._resume)
                return
            if len(frame) > rx.limits.max_frame:
                rx.counts["oversize"] += 1
                continue
            reply = rx.take(frame, self.peer)
            if reply is not None:
                self.transport.write(reply)
                if self.transport.get_write_buffer_size() > rx.limits.max_unsent_bytes:
                    rx.counts["unread_dropped"] += 1
                    self.transport.abort()

    def _resume(self) -> None:
        if self.transport.is_closing():
            return
        self.paused = False
        self.transport.resume_reading()
        self._drain()


class _Datagrams(asyncio.DatagramProtocol):
    """UDP: one frame a datagram."""

    def __init__(self, rx: SiaReceiver) -> None:
        self.rx = rx
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # a selector transport, not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        rx = self.rx
        peer = client_key(str(addr[0]))
        if rx.admit(peer) > 0:
            return
        if len(data) > rx.limits.max_frame:
            rx.counts["oversize"] += 1
            return
        reply = rx.take(data, peer)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        self.rx.counts["udp_errors"] += 1
