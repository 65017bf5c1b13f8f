"""The bounded deframer, with the real IT-100 and Modbus RTU codecs, from byte tables:
splits anywhere give the same frames, garbage is skipped and counted, a flood stays within
the bound, a bad frame does not take the good one behind it; then a fuzz of any bytes in
any chunking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.drivers import it100, modbus_rtu
from alarmgw.drivers.framing import Deframer, FrameError, IncompleteFrame
from alarmgw.drivers.it100 import Message
from alarmgw.drivers.modbus_rtu import ExceptionResponse, ReadRequest, ReadResponse


@dataclass(frozen=True)
class Codec:
    decode: Callable[[bytes], tuple[object, int]]
    max_frame: int
    wires: tuple[bytes, ...]  # good frames on the wire ...
    frames: tuple[object, ...]  # ... and what they decode to

    def deframer(self) -> Deframer[object]:
        return Deframer(self.decode, self.max_frame)


# Vectors from tests/drivers/test_it100.py and test_modbus_rtu.py (the guides' examples).
CODECS = {
    "it100": Codec(
        it100.decode,
        it100.MAX_FRAME,
        (b"00090\r\n", b"50000025\r\n", b"60310055F\r\n", b"849420B\r\n"),
        (Message("000"), Message("500", "000"), Message("603", "1005"), Message("849", "42")),
    ),
    "rtu-request": Codec(
        modbus_rtu.decode_request,
        modbus_rtu.MAX_RTU_FRAME,
        (bytes.fromhex("11 03 00 6B 00 03 76 87"), bytes.fromhex("01 03 00 00 00 01 84 0A")),
        (ReadRequest(0x11, 3, 0x6B, 3), ReadRequest(1, 3, 0, 1)),
    ),
    "rtu-response": Codec(
        modbus_rtu.decode_response,
        modbus_rtu.MAX_RTU_FRAME,
        (bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD"), bytes.fromhex("01 83 02 C0 F1")),
        (ReadResponse(0x11, 3, (0xAE41, 0x5652, 0x4340)), ExceptionResponse(1, 3, 2)),
    ),
}


def flipped(wire: bytes, at: int) -> bytes:
    bad = bytearray(wire)
    bad[at] ^= 0x10
    return bytes(bad)


def frames_of(items: list[object]) -> list[object]:
    return [i for i in items if not isinstance(i, FrameError)]


@pytest.mark.parametrize("name", CODECS)
def test_a_split_at_every_byte_boundary_gives_the_same_frames(name: str) -> None:
    codec = CODECS[name]
    stream = b"".join(codec.wires)
    for at in range(len(stream) + 1):
        d = codec.deframer()
        assert d.feed(stream[:at]) + d.feed(stream[at:]) == list(codec.frames), at
        assert d.buffered == 0 and d.bad_frames == 0


@pytest.mark.parametrize("name", CODECS)
def test_one_byte_at_a_time_gives_the_same_frames(name: str) -> None:
    codec = CODECS[name]
    d = codec.deframer()
    out = [item for byte in b"".join(codec.wires) for item in d.feed(bytes([byte]))]
    assert out == list(codec.frames)


GARBAGE = [
    # (codec, bytes between the first two frames, bad frames counted)
    ("it100", b"\x00\xff!junk\r\n", 1),  # not digits: dropped up to its CR LF
    ("it100", b"\r\n", 1),  # an empty line
    ("it100", b"60310056A\r\n", 1),  # zone tamper with a wrong checksum
    # RTU resynchronises a byte at a time; the last garbage byte pairs with the next
    # frame's unit as an unsupported function, hence one more than the garbage bytes.
    ("rtu-request", b"\x07\x09", 2),
    ("rtu-request", b"\x00\x00\x00", 3),
    ("rtu-response", b"\x07\x09", 2),
    ("rtu-response", b"\x00\x00\x00", 3),
]


@pytest.mark.parametrize(("name", "garbage", "bad"), GARBAGE)
def test_garbage_between_frames_is_skipped_and_counted(name: str, garbage: bytes, bad: int) -> None:
    codec = CODECS[name]
    stream = codec.wires[0] + garbage + codec.wires[1]
    for at in range(len(stream) + 1):
        d = codec.deframer()
        items = d.feed(stream[:at]) + d.feed(stream[at:])
        assert frames_of(items) == list(codec.frames[:2]), at
        assert d.bad_frames == bad == sum(isinstance(i, FrameError) for i in items)
        assert d.buffered == 0


BAD_THEN_GOOD = [
    ("it100", b"60310056A\r\n"),  # checksum off by one
    ("it100", b"6031005\r\n"),  # checksum missing: too short
    ("rtu-request", flipped(CODECS["rtu-request"].wires[0], 4)),  # CRC mismatch
    ("rtu-response", flipped(CODECS["rtu-response"].wires[0], 4)),
    ("rtu-response", bytes.fromhex("01 03 05 00 00 00 00 00")),  # odd byte count
]


@pytest.mark.parametrize(("name", "bad"), BAD_THEN_GOOD)
def test_a_bad_frame_followed_by_a_good_one_yields_the_good_one(name: str, bad: bytes) -> None:
    codec = CODECS[name]
    d = codec.deframer()
    items = d.feed(bad + codec.wires[0])
    assert frames_of(items) == [codec.frames[0]]
    assert isinstance(items[0], FrameError) and d.bad_frames >= 1 and d.buffered == 0


FLOODS = [
    ("it100", b"x"),  # no CR LF, ever
    ("it100", b"0"),  # digits, no CR LF
    ("rtu-request", b"\x00"),
    ("rtu-request", b"\x01\x03"),  # a unit and a read function, over and over: CRC never matches
    ("rtu-response", b"\x01\x03\xfa"),  # announces 250 data bytes, over and over
]


@pytest.mark.parametrize(("name", "pattern"), FLOODS)
def test_a_flood_with_no_frame_stays_under_the_bound(name: str, pattern: bytes) -> None:
    codec = CODECS[name]
    d = codec.deframer()
    flood = pattern * (8 * d.max_buffer // len(pattern))  # eight times what it may hold
    for at in range(0, len(flood), 997):
        assert frames_of(d.feed(flood[at : at + 997])) == []
        assert d.buffered <= d.max_buffer
    assert d.bad_frames > 0
    # The line comes back. A frame held half-read may swallow the first good ones (an RTU
    # response can announce 255 bytes), but the codec resynchronises within a buffer's worth.
    recovered = frames_of(d.feed(b"".join(codec.wires) * 32))
    assert recovered[-len(codec.frames) :] == list(codec.frames)


def never_complete(buf: bytes) -> tuple[object, int]:
    """A codec that can never decide, as one waiting for a length that never arrives."""
    raise IncompleteFrame


def test_the_bound_drops_the_oldest_bytes_and_counts_them() -> None:
    d: Deframer[object] = Deframer(never_complete, max_frame=16)
    for _ in range(100):
        assert d.feed(b"y" * 33) == []
        assert d.buffered <= d.max_buffer
    assert d.buffered == d.max_buffer == 64
    assert d.dropped_bytes == 100 * 33 - 64 and d.bad_frames == 0


def test_clear_forgets_the_bytes_held_but_not_the_counts() -> None:
    codec = CODECS["it100"]
    d = codec.deframer()
    d.feed(b"junk\r\n" + codec.wires[0][:3])
    assert d.clear() == 3 and d.buffered == 0 and d.bad_frames == 1
    assert d.feed(codec.wires[1]) == [codec.frames[1]]


FUZZ_CODECS = {
    **{name: (c.decode, c.max_frame, c.wires) for name, c in CODECS.items()},
    "never-complete": (never_complete, 16, ()),
}


@pytest.mark.parametrize("name", FUZZ_CODECS)
@given(data=st.data())
def test_fuzz_any_bytes_in_any_chunking_never_raise_nor_outgrow_the_bound(name: str, data: st.DataObject) -> None:
    decode, max_frame, wires = FUZZ_CODECS[name]
    pieces = st.binary(max_size=600)
    if wires:
        pieces = pieces | st.sampled_from(wires)  # some good frames among the noise
    d: Deframer[object] = Deframer(decode, max_frame)
    errors = 0
    for chunk in data.draw(st.lists(pieces, max_size=12)):
        items = d.feed(chunk)
        errors += sum(isinstance(i, FrameError) for i in items)
        assert d.buffered <= d.max_buffer
    assert d.bad_frames == errors
