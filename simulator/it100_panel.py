"""A PowerSeries-style panel behind an IT-100 integration module, on a paced RS-232 line.

It answers poll (000) with acknowledge (500), status request (001) with acknowledge and a
dump of every trouble that is active (and every zone open), a bad checksum with command
error (501), any other command with system error 502 "API command not supported", and
reports changes unasked: zone open (a device in alarm), zone tamper, zone fault (a wireless
zone not heard for three check-ins), wireless low battery, panel AC, panel battery, system
tamper, fire trouble, keybus fault, and the verbose trouble bit field (849). A hung host
answers nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from alarmgw.clock import Clock
from alarmgw.drivers.framing import Deframer, FrameError
from alarmgw.drivers.it100 import (
    ACK,
    COMMAND_ERROR,
    MAX_FRAME,
    POLL,
    STATUS_REQUEST,
    SYSTEM_ERROR,
    UNSUPPORTED_COMMAND,
    VERBOSE_TROUBLE,
    Message,
    decode,
)
from alarmgw.model import Device, DeviceKind
from alarmgw.tasks import cancel_and_wait

from .models import SimSite
from .serial_line import SerialLine

# How often the panel looks at its zones, seconds of simulated time.
SCAN_S = 0.5
# A wireless zone is faulted (supervisory) after this many missed check-ins.
MISSED_CHECK_INS = 3
PARTITION = "1"

# field -> (command when it becomes true, when false), for a zone and for the panel
_ZONE = {
    "tamper": ("603", "604"),
    "link_lost": ("605", "606"),
    "battery_low": ("821", "822"),
    "alarm": ("609", "610"),  # zone open / restored: status, not trouble
}
# zone field -> its bit in the verbose trouble status (849)
_ZONE_TROUBLE_BITS = {"link_lost": 1 << 4, "tamper": 1 << 5, "battery_low": 1 << 6}
_PANEL = {
    "mains_fail": ("802", "803"),
    "battery_low": ("800", "801"),
    "tamper": ("829", "830"),
    "fire_trouble": ("842", "843"),
    "link_lost": ("896", "897"),
}


class PanelModel:
    """What the panel knows and says, sans-IO: the answer to each command its integration
    module receives, and the reports of what changed since the last scan. The serial IT-100
    (It100Panel) and the Envisalink (simulator/envisalink.py) carry the same messages."""

    def __init__(self, host: Device, zones: Mapping[int, Device], site: SimSite, clock: Clock, t0: float) -> None:
        self.host = host
        self.zones = dict(zones)
        self.site = site
        self.clock = clock
        self.t0 = t0
        self._reported: dict[tuple[str, str], bool] = {}
        self._trouble_bits = 0
        self.commands = 0

    def t(self) -> float:
        return self.clock.monotonic() - self.t0

    def conditions(self, t: float) -> dict[tuple[str, str], bool]:
        out: dict[tuple[str, str], bool] = {}
        fire = False
        for zone_dev in self.zones.values():
            v = self.site.values(zone_dev.id, t)
            out[(zone_dev.id, "tamper")] = bool(v["tamper"])
            out[(zone_dev.id, "battery_low")] = bool(v["battery_low"])
            lost_after = MISSED_CHECK_INS * self.site.report_interval(zone_dev.id)
            out[(zone_dev.id, "link_lost")] = (
                zone_dev.kind is not DeviceKind.REMOTE_CONTROL and float(v.get("link_age_s", 0)) > lost_after
            )
            out[(zone_dev.id, "alarm")] = bool(v.get("alarm"))
            fire = fire or bool(v.get("fire_trouble"))
        h = self.site.values(self.host.id, t)
        out[(self.host.id, "mains_fail")] = bool(h["mains_fail"])
        out[(self.host.id, "battery_low")] = bool(h["battery_low"])
        out[(self.host.id, "tamper")] = bool(h["tamper"])
        out[(self.host.id, "fire_trouble")] = fire
        out[(self.host.id, "link_lost")] = self.site.active(self.host.id, "keybus_fault", t)
        return out

    def _message(self, key: tuple[str, str], active: bool) -> Message:
        device_id, field = key
        if device_id == self.host.id:
            return Message(_PANEL[field][0 if active else 1])
        zone = next(z for z, d in self.zones.items() if d.id == device_id)
        command = _ZONE[field][0 if active else 1]
        data = f"{zone:03d}" if command not in ("603", "604") else f"{PARTITION}{zone:03d}"
        return Message(command, data)

    def _bits(self, cond: Mapping[tuple[str, str], bool]) -> int:
        zone_ids = {d.id for d in self.zones.values()}
        bits = 0
        if cond[(self.host.id, "mains_fail")]:
            bits |= 1 << 1
        for (dev, field), on in cond.items():
            if on and dev in zone_ids:
                bits |= _ZONE_TROUBLE_BITS.get(field, 0)
        return bits

    def hung(self) -> bool:
        return self.site.offline(self.host.id, self.t())

    def answer(self, msg: Message | FrameError) -> list[Message]:
        """What the panel sends back for one command received (or a garbled one)."""
        if isinstance(msg, FrameError):
            return [] if self.hung() else [Message(COMMAND_ERROR)]
        self.commands += 1
        if self.hung():
            return []
        if msg.command not in (POLL, STATUS_REQUEST) or self.site.refusing(self.host.id, self.t()):
            return [Message(SYSTEM_ERROR, UNSUPPORTED_COMMAND)]
        out = [Message(ACK, msg.command)]
        if msg.command == STATUS_REQUEST:
            out += [self._message(key, True) for key, on in self.conditions(self.t()).items() if on]
        return out

    def scan(self) -> list[Message]:
        """Reports of what changed since the last scan: edges, and the verbose trouble bits."""
        if self.hung():
            return []
        out = []
        cond = self.conditions(self.t())
        for key, on in cond.items():
            if self._reported.get(key, False) != on:
                self._reported[key] = on
                out.append(self._message(key, on))
        bits = self._bits(cond)
        if bits != self._trouble_bits:
            self._trouble_bits = bits
            out.append(Message(VERBOSE_TROUBLE, f"{bits:02X}"))
        return out

    async def run_scans(self, send: Callable[[Message], None]) -> None:
        """Scan every SCAN_S of the clock for ever, handing each report to `send`."""
        next_at = self.clock.monotonic()
        while True:
            await self.clock.sleep_until(next_at)
            next_at = max(next_at + SCAN_S, self.clock.monotonic())
            for msg in self.scan():
                send(msg)


class It100Panel:
    """The panel behind an IT-100 module on a paced RS-232 line."""

    def __init__(
        self,
        path: Path,
        baud: int,
        host: Device,
        zones: Mapping[int, Device],
        site: SimSite,
        clock: Clock,
        t0: float,
        *,
        noise: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.model = PanelModel(host, zones, site, clock, t0)
        self.host = host
        self.line = SerialLine(path, baud, self._on_bytes, noise=noise, seed=seed)
        self._deframer = Deframer(decode, MAX_FRAME)
        self._scanner: asyncio.Task[None] | None = None

    @property
    def commands(self) -> int:
        return self.model.commands

    @property
    def bad_frames(self) -> int:
        """Garbled commands received, each answered with a command error unless hung."""
        return self._deframer.bad_frames

    def conditions(self, t: float) -> dict[tuple[str, str], bool]:
        return self.model.conditions(t)

    def _send(self, msg: Message) -> None:
        self.line.send(msg.encode())

    def _on_bytes(self, data: bytes, _rx_done: float) -> None:
        for msg in self._deframer.feed(data):
            for reply in self.model.answer(msg):
                self._send(reply)

    async def start(self) -> None:
        await self.line.start()
        self._scanner = asyncio.create_task(self.model.run_scans(self._send), name=f"it100:{self.host.id}")

    async def stop(self) -> None:
        await cancel_and_wait(self._scanner)
        self._scanner = None
        await self.line.stop()
