"""The simulated serial cable over a real pseudo-terminal: raw bytes, whole and in order
both ways, paced at 10 bits a byte; an unplug that makes the port vanish and a plug that
brings it back.

Pacing is checked on the schedule the line computes, with loop time made virtual inside
`serial_line` (it moves only when the line sleeps, by what it asked for), never against
the wall clock; the pty and the event loop underneath stay real."""

from __future__ import annotations

import asyncio
import os
import termios
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alarmgw.simulator import serial_line
from alarmgw.simulator.serial_line import BITS_PER_BYTE, PACING_SLICE_S, SerialLine

pytestmark = pytest.mark.timeout(10)

WAIT_S = 2.0  # for bytes that a fast line delivers in milliseconds
VIRTUAL_START = 1000.0


class Cable:
    """A SerialLine on a real pty, with the gateway's end of it opened through the link."""

    def __init__(self, path: Path, baud: int, *, noise: float = 0.0, seed: int = 1) -> None:
        self.line = SerialLine(path, baud, self._on_bytes, noise=noise, seed=seed)
        self.received: list[tuple[bytes, float]] = []  # what the device got, and when it had arrived
        self._arrived = asyncio.Event()
        self.port: int | None = None

    def _on_bytes(self, data: bytes, arrived_at: float) -> None:
        self.received.append((data, arrived_at))
        self._arrived.set()

    async def plug(self) -> None:
        """Plug the cable in and open the port as the gateway would."""
        await self.line.start()
        self.port = os.open(self.line.link_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    async def close(self) -> None:
        await self.line.stop()
        if self.port is not None:
            os.close(self.port)
            self.port = None

    def gateway_writes(self, data: bytes) -> None:
        assert self.port is not None
        assert os.write(self.port, data) == len(data)

    async def gateway_reads(self, done: Callable[[bytes], bool]) -> bytes:
        """What the gateway reads from its end, once `done` says it is all there."""
        assert self.port is not None
        port = self.port
        loop = asyncio.get_running_loop()
        buf = bytearray()
        complete = loop.create_future()

        def readable() -> None:
            try:
                buf.extend(os.read(port, 4096))
            except BlockingIOError:
                return
            if done(bytes(buf)) and not complete.done():
                complete.set_result(None)

        loop.add_reader(port, readable)
        try:
            async with asyncio.timeout(WAIT_S):
                await complete
        finally:
            loop.remove_reader(port)
        return bytes(buf)

    async def gateway_reads_exactly(self, n: int) -> bytes:
        return await self.gateway_reads(lambda b: len(b) >= n)

    async def device_gets(self, n: int) -> bytes:
        """What the device side got from the gateway, once it is `n` bytes."""
        async with asyncio.timeout(WAIT_S):
            while sum(len(d) for d, _ in self.received) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return b"".join(d for d, _ in self.received)


@pytest.fixture
async def cables(tmp_path: Path) -> AsyncIterator[Callable[..., Cable]]:
    made: list[Cable] = []

    def make(baud: int = 115200, **kw: Any) -> Cable:
        cable = Cable(tmp_path / f"ttyUSB{len(made)}", baud, **kw)
        made.append(cable)
        return cable

    yield make
    for cable in made:
        await cable.close()


class _Stand:
    """`real`, with some of its attributes replaced."""

    def __init__(self, real: Any, **replaced: Any) -> None:
        self._real = real
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTime:
    """Loop time inside serial_line that moves only when the line sleeps; every write to
    the pty is logged with the (virtual) moment it was released."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.released: list[tuple[float, bytes]] = []
        self.asyncio = _Stand(asyncio, get_running_loop=self._loop, sleep=self._sleep)
        self.os = _Stand(os, write=self._write)

    def _loop(self) -> _Stand:
        return _Stand(asyncio.get_running_loop(), time=lambda: self.now)

    async def _sleep(self, delay: float) -> None:
        self.now += max(delay, 0.0)
        await asyncio.sleep(0)

    def _write(self, fd: int, data: bytes) -> int:
        n = os.write(fd, data)
        self.released.append((self.now, bytes(data[:n])))
        return n

    def schedule(self) -> list[tuple[int, float]]:
        """(bytes released so far, when) after each write."""
        out, total = [], 0
        for at, chunk in self.released:
            total += len(chunk)
            out.append((total, at))
        return out


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualTime]:
    vt = VirtualTime(VIRTUAL_START)
    monkeypatch.setattr(serial_line, "asyncio", vt.asyncio)
    monkeypatch.setattr(serial_line, "os", vt.os)
    yield vt


# --- what a byte costs ----------------------------------------------------------------


@pytest.mark.parametrize("baud", [1200, 9600, 19200, 38400, 115200])
def test_a_byte_takes_ten_bit_times(baud: int, tmp_path: Path) -> None:
    assert BITS_PER_BYTE == 10  # 8N1: start, 8 data, stop
    line = SerialLine(tmp_path / "ttyS0", baud, lambda data, at: None)
    assert line.byte_s == pytest.approx(10 / baud)
    assert not line.plugged


# --- pacing, on the line's own schedule -----------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(("baud", "slice_bytes"), [(1200, 1), (9600, 1), (115200, 23)])
async def test_device_bytes_are_released_as_the_wire_delivers_them(
    cables: Callable[..., Cable], virtual_time: VirtualTime, baud: int, slice_bytes: int
) -> None:
    cable = cables(baud)
    await cable.plug()
    frame = bytes(range(64))
    cable.line.send(frame)
    assert await cable.gateway_reads_exactly(len(frame)) == frame
    byte_s = 10 / baud
    # Each slice is written once its last byte has crossed the wire, no sooner, no later.
    for sent, at in virtual_time.schedule():
        assert at == pytest.approx(VIRTUAL_START + sent * byte_s)
    sizes = [len(chunk) for _, chunk in virtual_time.released]
    assert sizes[:-1] == [slice_bytes] * (len(sizes) - 1)
    assert all(n == 1 or n * byte_s <= PACING_SLICE_S for n in sizes)
    assert cable.line.tx_end == pytest.approx(VIRTUAL_START + len(frame) * byte_s)
    assert cable.line.frames_sent == 1


@pytest.mark.integration
async def test_frames_queued_together_follow_each_other_without_overlap(
    cables: Callable[..., Cable], virtual_time: VirtualTime
) -> None:
    cable = cables(9600)
    await cable.plug()
    frames = [b"\x01\x03\x00\x00\x00\x08", b"\x02" * 17, bytes(range(200, 256))]
    for f in frames:
        cable.line.send(f)
    stream = b"".join(frames)
    assert await cable.gateway_reads_exactly(len(stream)) == stream
    for sent, at in virtual_time.schedule():
        assert at == pytest.approx(VIRTUAL_START + sent * 10 / 9600)
    assert cable.line.tx_end == pytest.approx(VIRTUAL_START + len(stream) * 10 / 9600)
    assert cable.line.frames_sent == 3


@pytest.mark.integration
async def test_an_answer_starts_a_gap_after_the_request_has_fully_arrived(
    cables: Callable[..., Cable], virtual_time: VirtualTime
) -> None:
    cable = cables(9600)
    byte_s = 10 / 9600
    await cable.plug()
    request = b"\x01\x03\x00\x00\x00\x08\x44\x0c"
    cable.gateway_writes(request)
    assert await cable.device_gets(len(request)) == request
    # Read at t0, the request is taken to have arrived at the wire's pace from then on.
    arrived = [at for _, at in cable.received]
    assert arrived == sorted(arrived)
    assert cable.line.rx_done == arrived[-1] == pytest.approx(VIRTUAL_START + len(request) * byte_s)

    gap = 3.5 * byte_s
    reply = b"\x01\x03\x10" + bytes(16) + b"\xe4\x59"
    cable.line.send(reply, gap)
    assert await cable.gateway_reads_exactly(len(reply)) == reply
    first_at = virtual_time.released[0][0]
    assert first_at == pytest.approx(cable.line.rx_done + gap + byte_s)
    assert cable.line.tx_end == pytest.approx(cable.line.rx_done + gap + len(reply) * byte_s)


# --- the bytes themselves, in real time -----------------------------------------------


@pytest.mark.integration
async def test_the_port_is_a_link_to_a_raw_pty(cables: Callable[..., Cable]) -> None:
    cable = cables()
    await cable.plug()
    assert cable.line.plugged
    assert cable.line.link_path.is_symlink()
    assert cable.port is not None and os.isatty(cable.port)
    iflag, oflag, _cflag, lflag, *_speeds_and_cc = termios.tcgetattr(cable.port)
    # A wire, not a terminal: no echo, no line editing, no CR/LF translation, no XON/XOFF.
    assert lflag & (termios.ECHO | termios.ICANON | termios.ISIG) == 0
    assert oflag & termios.OPOST == 0
    assert iflag & (termios.ICRNL | termios.IXON) == 0


@pytest.mark.integration
async def test_device_frames_reach_the_gateway_whole_and_in_order(cables: Callable[..., Cable]) -> None:
    cable = cables(115200)
    await cable.plug()
    frames = [bytes(range(i, 256, 20)) for i in range(20)]  # every byte value, in 20 frames
    for f in frames:
        cable.line.send(f)
    stream = b"".join(frames)
    assert await cable.gateway_reads_exactly(len(stream)) == stream
    assert cable.line.frames_sent == len(frames)
    assert cable.line.frames_corrupted == 0


@pytest.mark.integration
async def test_gateway_bytes_reach_the_device_whole_and_in_order(cables: Callable[..., Cable]) -> None:
    cable = cables(115200)
    await cable.plug()
    stream = bytes(range(256)) * 2
    for i in range(0, len(stream), 64):
        cable.gateway_writes(stream[i : i + 64])
    assert await cable.device_gets(len(stream)) == stream
    arrived = [at for _, at in cable.received]
    assert arrived == sorted(arrived)
    assert cable.line.rx_done == arrived[-1]


def _one_noise_event(sent: bytes, got: bytes) -> bool:
    """A flipped bit, a dropped byte, or 1-4 bytes of garbage in front."""
    if len(got) == len(sent):
        diff = [a ^ b for a, b in zip(sent, got, strict=True) if a != b]
        return len(diff) == 1 and diff[0].bit_count() == 1
    if len(got) == len(sent) - 1:
        return any(sent[:i] + sent[i + 1 :] == got for i in range(len(sent)))
    return 1 <= len(got) - len(sent) <= 4 and got.endswith(sent)


@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_noise_on_every_frame_spoils_each_with_one_event(cables: Callable[..., Cable], seed: int) -> None:
    cable = cables(115200, noise=1.0, seed=seed)
    await cable.plug()
    frame = b"ABCDEFGHIJKLMNOP"
    cable.line.send(frame)
    got = await cable.gateway_reads(lambda b: _one_noise_event(frame, b))
    assert got != frame
    assert cable.line.frames_corrupted == 1


# --- unplug and plug ------------------------------------------------------------------


@pytest.mark.integration
async def test_unplugging_makes_the_port_vanish_and_plugging_brings_it_back(cables: Callable[..., Cable]) -> None:
    cable = cables(115200)
    await cable.plug()
    old_port = cable.port
    assert old_port is not None
    await cable.line.stop()
    assert not cable.line.plugged
    assert not cable.line.link_path.is_symlink()
    with pytest.raises(OSError):
        os.write(old_port, b"x")  # the gateway's next write fails
    with pytest.raises(FileNotFoundError):
        os.open(cable.line.link_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    await cable.line.stop()  # a second unplug is harmless
    os.close(old_port)
    cable.port = None

    await cable.plug()
    assert cable.line.plugged
    cable.line.send(b"back")
    assert await cable.gateway_reads_exactly(4) == b"back"
    cable.gateway_writes(b"hello")
    assert await cable.device_gets(5) == b"hello"


@pytest.mark.integration
async def test_frames_sent_while_unplugged_fall_off_the_cable(cables: Callable[..., Cable]) -> None:
    cable = cables(115200)
    await cable.plug()
    await cable.close()
    cable.line.send(b"stale")  # e.g. an IT-100 report while the adapter is out
    await cable.plug()
    cable.line.send(b"fresh")
    assert await cable.gateway_reads_exactly(5) == b"fresh"
