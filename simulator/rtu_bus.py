"""An RS-485 bus of simulated hosts answering Modbus RTU, on a paced serial line.

Slaves behave as the serial-line guide (§2.5.1.1) asks: a gap of more than 3.5 character
times starts a new frame, so garbage left by noise is dropped at the next silence; a frame
with a bad CRC is ignored (the master times out); a unit that is not on the bus, or a host
that is hung, stays silent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from alarmgw.clock import Clock
from alarmgw.drivers.framing import Deframer, FrameError
from alarmgw.drivers.modbus_rtu import (
    MAX_RTU_FRAME,
    ExceptionResponse,
    ReadRequest,
    ReadResponse,
    decode_request,
    silence_s,
)

from .modbus_server import HostRegisters
from .serial_line import SerialLine

_FUNCTION = {"holding": 3, "input": 4}


class RtuSlaveBus:
    def __init__(
        self,
        path: Path,
        baud: int,
        units: Mapping[int, HostRegisters],
        clock: Clock,
        t0: float,
        *,
        noise: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.units = dict(units)
        self.clock = clock
        self.t0 = t0
        self.silence = silence_s(baud)
        self.line = SerialLine(path, baud, self._on_bytes, noise=noise, seed=seed)
        self._deframer = Deframer(decode_request, MAX_RTU_FRAME)
        self._last_rx = float("-inf")
        self.requests = 0
        self.unfinished_frames = 0  # frames cut short by a silence
        self.gap_violations = 0  # requests that started before 3.5 character times of silence

    @property
    def bad_frames(self) -> int:
        """Requests dropped: a bad CRC or function, or cut short by a silence."""
        return self._deframer.bad_frames + self.unfinished_frames

    def _on_bytes(self, data: bytes, rx_done: float) -> None:
        now = asyncio.get_running_loop().time()
        started = rx_done - len(data) * self.line.byte_s
        if started - self._last_rx > self.silence:
            if self._deframer.clear():
                self.unfinished_frames += 1
            if now < self.line.tx_end + self.silence and self.line.frames_sent:
                self.gap_violations += 1
        self._last_rx = rx_done
        for frame in self._deframer.feed(data):
            if isinstance(frame, FrameError):
                continue  # ignored: the master times out (§2.5.1)
            self.requests += 1
            self._answer(frame)

    def _answer(self, frame: ReadRequest | ExceptionResponse) -> None:
        host = self.units.get(frame.unit)
        if host is None:
            return
        t = self.clock.monotonic() - self.t0
        if host.offline_until(t) is not None:
            return
        if isinstance(frame, ExceptionResponse):
            self.line.send(frame.encode(), self.silence)
            return
        if frame.function != _FUNCTION[host.profile.function]:
            self.line.send(ExceptionResponse(frame.unit, frame.function, 1).encode(), self.silence)
            return
        words = None if host.site.refusing(host.host.id, t) else host.read(frame.address, frame.count, t)
        reply = (
            ExceptionResponse(frame.unit, frame.function, 2)
            if words is None
            else ReadResponse(frame.unit, frame.function, tuple(words))
        )
        self.line.send(reply.encode(), self.silence)

    async def start(self) -> None:
        await self.line.start()

    async def stop(self) -> None:
        await self.line.stop()
