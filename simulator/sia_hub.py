"""A simulated IP alarm hub that reports to a receiving centre over SIA DC-09, as Ajax,
Jablotron or Hikvision AX PRO hubs do: each trouble and restore of its devices as one
message (SIA-DCS, or Contact ID in ADM-CID), a periodic link test (`NULL`), over TCP or UDP,
plain or AES-encrypted; and it reads the answer. No answer: sent again (up to `retries`);
a NAK with the receiver's time: the hub sets its clock by it and sends again, as hubs do.

The code for each fault is the fault table's for the device's kind (`codes_for`), so the
hub says what the table says a real one says. It can play a list of (device, fault, on/off)
events, or follow the simulator's injections (`follow`): a fault that starts or ends on one
of its devices is reported; while the hub itself is `offline` or `silent` it says nothing,
its periodic report included; a device gone `silent` is reported as lost (its comm_loss code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alarmgw.clock import Clock
from alarmgw.diagnostics.rules import FaultTable
from alarmgw.drivers.dc09 import Reply, ReplyError, cid_body, decode_reply, encode, sia_body
from alarmgw.model import Device
from alarmgw.tasks import raise_if_cancelling

from .models import SimSite

log = logging.getLogger(__name__)

# The simulator's fault names -> the fault table's, for what a hub reports.
REPORTED = {
    "low_battery": "low_battery",
    "tamper": "tamper",
    "mains_loss": "mains_loss",
    "jamming": "rf_jamming",
    "sensor_fault": "sensor_fault",
    "fire_trouble": "fire_trouble",
    "battery_missing": "battery_missing",
    "silent": "comm_loss",  # a device the hub no longer hears (the hub itself just goes quiet)
}
SCAN_S = 1.0
Frame = Callable[[], bytes]
ANSWERS_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Answer:
    """How one message went: the receiver's final answer after any tries."""

    kind: Literal["ACK", "NAK", "DUH", "RSP", "none", "garbled"]
    sequence: int
    tries: int
    latency_s: float  # from the last send to its answer (wall, monotonic)
    reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class SiaHubSpec:
    """A simulated hub of a site file: where it reports, how, and the devices behind it."""

    hub: Device
    zones: Mapping[int, Device]
    table: FaultTable
    account: str
    address: tuple[str, int]
    key: str | None = None
    protocol: Literal["tcp", "udp"] = "tcp"
    report_interval_s: float | None = None


class SiaHub:
    """`zones`: zone number -> device behind the hub. `source`: the local address to send
    from (a loopback address of its own, so a receiver's per-address limits see one hub)."""

    def __init__(
        self,
        hub: Device,
        zones: Mapping[int, Device],
        table: FaultTable,
        clock: Clock,
        *,
        account: str,
        address: tuple[str, int],
        key: str | None = None,
        protocol: Literal["tcp", "udp"] = "tcp",
        format: Literal["sia", "cid"] = "sia",
        report_interval_s: float | None = None,
        source: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        site: SimSite | None = None,
        t0: float = 0.0,
    ) -> None:
        """`site` and `t0` (the simulator's start, monotonic): the injections `start()` follows."""
        self.hub = hub
        self.site = site
        self.t0 = t0
        self.zones = dict(zones)
        self.zone_of = {d.id: z for z, d in zones.items()}
        self.devices = {hub.id: hub, **{d.id: d for d in zones.values()}}
        self.table = table
        self.clock = clock
        self.account = account
        self.address = address
        self.key = key
        self.protocol = protocol
        self.format = format
        self.report_interval_s = report_interval_s
        self.source = source
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock_offset_s = 0.0  # the hub's clock against the simulator's
        self.sequence = 0
        self.answers: deque[Answer] = deque(maxlen=ANSWERS_KEPT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_in: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- what it says ---------------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock.now() + timedelta(seconds=self.clock_offset_s)

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 9999 + 1
        return self.sequence

    def event_frame(self, device_id: str, fault: str, on: bool, sequence: int | None = None) -> bytes:
        """The frame reporting `fault` (a fault table name) starting or ending on a device."""
        device = self.devices[device_id]
        codes = self.table.faults[fault].codes_for(device.kind)
        zone = self.zone_of.get(device_id)
        seq = self.next_sequence() if sequence is None else sequence
        if self.format == "cid":
            if codes.contact_id is None:
                raise ValueError(f"{fault} has no Contact ID code for a {device.kind.value}")
            body = cid_body(self.account, 1 if on else 3, codes.contact_id, zone or 0)
            return encode(self.account, seq, body, message_type="ADM-CID", key=self.key, timestamp=self.now())
        if codes.sia is None:
            raise ValueError(f"{fault} has no SIA code for a {device.kind.value}")
        body = sia_body(self.account, codes.sia[0 if on else 1], zone)
        return encode(self.account, seq, body, key=self.key, timestamp=self.now())

    def link_test_frame(self, sequence: int | None = None) -> bytes:
        seq = self.next_sequence() if sequence is None else sequence
        return encode(self.account, seq, "", message_type="NULL", key=self.key, timestamp=self.now())

    def code_frame(self, code: str, zone: int | None = None) -> bytes:
        """A SIA-DCS event with any code (one the receiver may not know)."""
        body = sia_body(self.account, code, zone)
        return encode(self.account, self.next_sequence(), body, key=self.key, timestamp=self.now())

    async def send_event(self, device_id: str, fault: str, on: bool) -> Answer:
        seq = self.next_sequence()
        return await self.send(lambda: self.event_frame(device_id, fault, on, seq), seq)

    async def send_link_test(self) -> Answer:
        seq = self.next_sequence()
        return await self.send(lambda: self.link_test_frame(seq), seq)

    async def play(self, events: Sequence[tuple[float, str, str, bool]]) -> list[Answer]:
        """(seconds from now, device, fault table name, on) in order, each at its time."""
        start = self.clock.monotonic()
        out = []
        for at, device_id, fault, on in sorted(events, key=lambda e: e[0]):
            await self.clock.sleep_until(start + at)
            out.append(await self.send_event(device_id, fault, on))
        return out

    # --- the wire ---------------------------------------------------------------------------

    async def send(self, make: Frame, sequence: int) -> Answer:
        """Send a frame (made again for each try, with the hub's time then) and read its answer."""
        async with self._lock:
            answer = Answer("none", sequence, 0, 0.0)
            for attempt in range(1, self.retries + 2):
                frame = make()
                answer = await self._exchange(frame, sequence, attempt)
                if answer.kind == "NAK" and answer.reply is not None and answer.reply.timestamp is not None:
                    # A NAK carries the receiver's time: set the hub's clock by it and try again.
                    self.clock_offset_s += (answer.reply.timestamp - self.now()).total_seconds()
                    continue
                if answer.kind in ("none", "garbled"):
                    continue
                break
            self.answers.append(answer)
            return answer

    async def send_raw(self, frame: bytes, sequence: int = 0) -> Answer:
        """One frame as given, one try."""
        async with self._lock:
            answer = await self._exchange(frame, sequence, 1)
            self.answers.append(answer)
            return answer

    async def _exchange(self, frame: bytes, sequence: int, attempt: int) -> Answer:
        await self._open()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._udp is not None:
                    while not self._udp_in.empty():
                        self._udp_in.get_nowait()  # a late answer to an earlier try
                    self._udp.sendto(frame)
                    while True:
                        data = await self._udp_in.get()
                        answer = self._read(data, sequence, attempt, started)
                        if answer is not None:
                            return answer
                assert self._writer is not None and self._reader is not None
                self._writer.write(frame)
                await self._writer.drain()
                while True:
                    data = await self._reader.readuntil(b"\r")
                    answer = self._read(data, sequence, attempt, started)
                    if answer is not None:
                        return answer
        except TimeoutError:
            return Answer("none", sequence, attempt, time.monotonic() - started)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await self.close()
            return Answer("none", sequence, attempt, time.monotonic() - started)

    def _read(self, data: bytes, sequence: int, attempt: int, started: float) -> Answer | None:
        """The answer to this message, or None for a late one to an earlier message."""
        latency = time.monotonic() - started
        try:
            reply = decode_reply(data, self.key)
        except ReplyError:
            return Answer("garbled", sequence, attempt, latency)
        if reply.kind != "NAK" and int(reply.sequence) != sequence:
            return None
        kind: Literal["ACK", "NAK", "DUH", "RSP"] = reply.kind  # type: ignore[assignment]
        return Answer(kind, sequence, attempt, latency, reply)

    async def _open(self) -> None:
        if self.protocol == "udp":
            if self._udp is None:
                loop = asyncio.get_running_loop()
                local = (self.source, 0) if self.source else None
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Inbox(self._udp_in), local_addr=local, remote_addr=self.address
                )
            return
        if self._writer is None or self._writer.is_closing():
            local = (self.source, 0) if self.source else None
            self._reader, self._writer = await asyncio.open_connection(*self.address, local_addr=local, limit=4096)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # --- following the simulator --------------------------------------------------------------

    async def follow(self, site: SimSite, t0: float) -> None:
        """Report the injections on its devices as they start and end, and the periodic
        report, until cancelled. What was not acknowledged is tried again next time round."""
        said: dict[tuple[str, str], bool] = {}
        last_report = float("-inf")
        while True:
            raise_if_cancelling()
            t = self.clock.monotonic() - t0
            try:
                last_report = await self._report(site, t, said, last_report)
            except (OSError, TimeoutError, ReplyError) as exc:  # no receiver yet, or it went away
                log.debug("hub %s: %s; again in %.1f s", self.hub.id, exc, SCAN_S)
                await self.close()
            await self.clock.sleep_until(self.clock.monotonic() + SCAN_S)

    async def _report(self, site: SimSite, t: float, said: dict[tuple[str, str], bool], last_report: float) -> float:
        """One look at the simulated site: send what changed and, when due, the periodic
        report; when the last periodic report was acknowledged."""
        if not (site.active(self.hub.id, "offline", t) or site.active(self.hub.id, "silent", t)):
            for device_id in self.devices:
                for sim_fault, fault in REPORTED.items():
                    if fault == "comm_loss" and device_id == self.hub.id:
                        continue
                    on = site.active(device_id, sim_fault, t)
                    if said.get((device_id, fault), False) == on:
                        continue
                    try:
                        answer = await self.send_event(device_id, fault, on)
                    except ValueError:  # the table has no code for it on this kind
                        said[(device_id, fault)] = on
                        continue
                    if answer.kind in ("ACK", "DUH"):
                        said[(device_id, fault)] = on
            due = self.report_interval_s is not None and t - last_report >= self.report_interval_s
            if due and (await self.send_link_test()).kind == "ACK":
                last_report = t
        return last_report

    async def start(self) -> None:
        """Follow the simulated site's injections (as the simulator's other parts do)."""
        if self.site is None:
            raise RuntimeError("a hub follows a simulated site: give it `site`")
        self._task = asyncio.create_task(self.follow(self.site, self.t0), name=f"sia-hub:{self.hub.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.close()


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(data)
