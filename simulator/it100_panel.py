"""A PowerSeries-style panel behind an IT-100 integration module, on a paced RS-232 line.

It answers poll (000) with acknowledge (500), status request (001) with acknowledge and a
dump of every trouble that is active, a bad checksum with command error (501), any other
command with system error 502 "API command not supported", and reports
changes unasked: zone tamper, zone fault (a wireless zone not heard for three check-ins),
wireless low battery, panel AC, panel battery, system tamper, fire trouble, keybus fault,
and the verbose trouble bit field (849). A hung host answers nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
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

# (field, panel-level?) -> (command when it becomes true, when false)
_ZONE = {"tamper": ("603", "604"), "link_lost": ("605", "606"), "battery_low": ("821", "822")}
_PANEL = {
    "mains_fail": ("802", "803"),
    "battery_low": ("800", "801"),
    "tamper": ("829", "830"),
    "fire_trouble": ("842", "843"),
    "link_lost": ("896", "897"),
}


class It100Panel:
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
        self.host = host
        self.zones = dict(zones)
        self.site = site
        self.clock = clock
        self.t0 = t0
        self.line = SerialLine(path, baud, self._on_bytes, noise=noise, seed=seed)
        self._deframer = Deframer(decode, MAX_FRAME)
        self._reported: dict[tuple[str, str], bool] = {}
        self._trouble_bits = 0
        self._scanner: asyncio.Task[None] | None = None
        self.commands = 0

    @property
    def bad_frames(self) -> int:
        """Garbled commands received, each answered with a command error unless hung."""
        return self._deframer.bad_frames

    # --- what the panel knows -----------------------------------------------------------

    def _t(self) -> float:
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
                bits |= {"link_lost": 1 << 4, "tamper": 1 << 5, "battery_low": 1 << 6}[field]
        return bits

    def _hung(self) -> bool:
        return self.site.offline(self.host.id, self._t())

    # --- the wire -------------------------------------------------------------------------

    def _on_bytes(self, data: bytes, _rx_done: float) -> None:
        for msg in self._deframer.feed(data):
            if isinstance(msg, FrameError):
                if not self._hung():
                    self.line.send(Message(COMMAND_ERROR).encode())
                continue
            self.commands += 1
            if self._hung():
                continue
            if msg.command not in (POLL, STATUS_REQUEST) or self.site.refusing(self.host.id, self._t()):
                self.line.send(Message(SYSTEM_ERROR, UNSUPPORTED_COMMAND).encode())
                continue
            self.line.send(Message(ACK, msg.command).encode())
            if msg.command == STATUS_REQUEST:
                for key, on in self.conditions(self._t()).items():
                    if on:
                        self.line.send(self._message(key, True).encode())

    async def _scan(self) -> None:
        next_at = self.clock.monotonic()
        while True:
            await self.clock.sleep_until(next_at)
            next_at = max(next_at + SCAN_S, self.clock.monotonic())
            if self._hung():
                continue
            cond = self.conditions(self._t())
            for key, on in cond.items():
                if self._reported.get(key, False) != on:
                    self._reported[key] = on
                    self.line.send(self._message(key, on).encode())
            bits = self._bits(cond)
            if bits != self._trouble_bits:
                self._trouble_bits = bits
                self.line.send(Message(VERBOSE_TROUBLE, f"{bits:02X}").encode())

    async def start(self) -> None:
        await self.line.start()
        self._scanner = asyncio.create_task(self._scan(), name=f"it100:{self.host.id}")

    async def stop(self) -> None:
        await cancel_and_wait(self._scanner)
        self._scanner = None
        await self.line.stop()
