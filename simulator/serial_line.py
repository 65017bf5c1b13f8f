"""A simulated serial cable: a pseudo-terminal whose slave side the gateway opens as it
would open /dev/ttyUSB0, with bytes paced at the line's baud rate in both directions, line
noise on demand, and an unplug that makes the port vanish.

Pacing: with 8N1 framing every byte is 10 bits, so a byte takes 10/baud seconds. Bytes the
gateway writes are taken to arrive no faster than that; bytes the device sends are released
to the gateway no sooner than the wire would deliver them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pty
import random
import tty
from collections.abc import Callable
from pathlib import Path

from alarmgw.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
# Release paced output in slices of about this long: short enough to keep timing true,
# long enough not to wake the loop for every byte at high baud rates.
PACING_SLICE_S = 0.002


class SerialLine:
    """One cable end. `on_bytes(data, arrived_at)` gets what the gateway sends; `send()`
    queues a frame for the gateway."""

    def __init__(
        self,
        link_path: Path,
        baud: int,
        on_bytes: Callable[[bytes, float], None],
        *,
        noise: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.link_path = Path(link_path)
        self.baud = baud
        self.byte_s = BITS_PER_BYTE / baud
        self.on_bytes = on_bytes
        self.noise = noise
        self._rng = random.Random(seed)
        self._master: int | None = None
        self._slave: int | None = None
        self._queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(maxsize=256)
        self._writer: asyncio.Task[None] | None = None
        self.rx_done = 0.0  # loop time at which the last byte from the gateway has fully arrived
        self._tx_free = 0.0
        self.frames_sent = 0
        self.frames_corrupted = 0

    @property
    def tx_end(self) -> float:
        """Loop time at which the last byte sent to the gateway has crossed the wire."""
        return self._tx_free

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def start(self) -> None:
        """Create the pty and the link the gateway opens."""
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: a wire, not a terminal
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        target = os.ttyname(slave)
        self.link_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        self.link_path.symlink_to(target)
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable)
        self._writer = asyncio.create_task(self._write_loop(), name=f"line:{self.link_path.name}")

    async def stop(self) -> None:
        """Unplug: the port disappears; the gateway's next read or write fails."""
        await cancel_and_wait(self._writer)
        self._writer = None
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        with contextlib.suppress(FileNotFoundError):
            self.link_path.unlink()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EIO: no process has the slave open (the gateway closed the port). Nothing to read.
            return
        if not data:
            return
        now = asyncio.get_running_loop().time()
        self.rx_done = max(self.rx_done, now) + len(data) * self.byte_s
        if self.noise and self._rng.random() < self.noise:
            data = self._corrupt(data)
        self.on_bytes(data, self.rx_done)

    def send(self, frame: bytes, gap_s: float = 0.0) -> None:
        """Queue a frame, to start at least `gap_s` after the last byte received. With the
        cable out nothing is queued: what a device says then falls off the cable, as on a
        real wire, instead of reaching the gateway late as if it were new."""
        if not self.plugged:
            return
        try:
            self._queue.put_nowait((frame, gap_s))
        except asyncio.QueueFull:
            log.warning("%s: output queue full, frame dropped", self.link_path)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame, gap = await self._queue.get()
            if self.noise and self._rng.random() < self.noise:
                frame = self._corrupt(frame)
            start = max(loop.time(), self.rx_done + gap, self._tx_free)
            per_slice = max(1, int(PACING_SLICE_S / self.byte_s))
            sent = 0
            while sent < len(frame):
                chunk = frame[sent : sent + per_slice]
                sent += len(chunk)
                # A byte is readable only once its last bit has crossed the wire.
                delay = start + sent * self.byte_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._master is None:
                    return
                with contextlib.suppress(OSError):  # nobody listening: the bytes fall off the cable
                    os.write(self._master, chunk)
            self._tx_free = start + len(frame) * self.byte_s
            self.frames_sent += 1

    def _corrupt(self, frame: bytes) -> bytes:
        """One noise event: a flipped bit, a dropped byte, or garbage before the frame."""
        self.frames_corrupted += 1
        data = bytearray(frame)
        kind = self._rng.randrange(3)
        if kind == 0 and data:
            i = self._rng.randrange(len(data))
            data[i] ^= 1 << self._rng.randrange(8)
        elif kind == 1 and data:
            del data[self._rng.randrange(len(data))]
        else:
            data[:0] = bytes(self._rng.randrange(256) for _ in range(self._rng.randint(1, 4)))
        return bytes(data)
