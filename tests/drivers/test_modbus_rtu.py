"""Modbus RTU framing from the specification's byte vectors: the four checks and a fuzz."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.drivers.framing import FrameError, IncompleteFrame
from alarmgw.drivers.modbus_rtu import (
    ExceptionResponse,
    ReadRequest,
    ReadResponse,
    crc16,
    decode_request,
    decode_response,
    silence_s,
)

# Modbus Application Protocol §6.3 example, framed for RTU as in the serial-line guide:
# slave 0x11 reads registers 108-110 (address 0x006B, 3 registers) and gets 0x022B,
# 0x0000, 0x0064. CRC bytes from the published frames.
REQUESTS = [
    (bytes.fromhex("11 03 00 6B 00 03 76 87"), ReadRequest(0x11, 3, 0x6B, 3)),
    # slave 1 reads 1 holding register at 0: the most quoted RTU frame of all
    (bytes.fromhex("01 03 00 00 00 01 84 0A"), ReadRequest(1, 3, 0, 1)),
    # slave 1 reads 10 holding registers at 0
    (bytes.fromhex("01 03 00 00 00 0A C5 CD"), ReadRequest(1, 3, 0, 10)),
]
RESPONSES = [
    (bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD"), ReadResponse(0x11, 3, (0xAE41, 0x5652, 0x4340))),
    # illegal data address exception to a function 3 request from slave 1
    (bytes.fromhex("01 83 02 C0 F1"), ExceptionResponse(1, 3, 2)),
]


@pytest.mark.parametrize(("wire", "frame"), REQUESTS)
def test_request_vectors(wire: bytes, frame: ReadRequest) -> None:
    assert decode_request(wire) == (frame, len(wire))
    assert frame.encode() == wire


@pytest.mark.parametrize(("wire", "frame"), RESPONSES)
def test_response_vectors(wire: bytes, frame: ReadResponse | ExceptionResponse) -> None:
    assert decode_response(wire) == (frame, len(wire))
    assert frame.encode() == wire


@pytest.mark.parametrize(
    ("wire", "decode"), [(w, decode_request) for w, _ in REQUESTS] + [(w, decode_response) for w, _ in RESPONSES]
)
def test_every_truncated_prefix_is_incomplete(wire: bytes, decode) -> None:  # type: ignore[no-untyped-def]
    for n in range(len(wire)):
        with pytest.raises(IncompleteFrame):
            decode(wire[:n])


def test_byte_at_a_time_gives_the_same_frames() -> None:
    stream = b"".join(w for w, _ in RESPONSES)
    buf = b""
    frames = []
    for b in stream:
        buf += bytes([b])
        try:
            frame, used = decode_response(buf)
        except IncompleteFrame:
            continue
        frames.append(frame)
        buf = buf[used:]
    assert frames == [f for _, f in RESPONSES] and buf == b""


def test_flipped_bit_is_a_frame_error() -> None:
    wire = bytearray(RESPONSES[0][0])
    wire[4] ^= 0x10
    with pytest.raises(FrameError, match="CRC"):
        decode_response(bytes(wire))


def test_odd_byte_count_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="byte count"):
        decode_response(bytes.fromhex("01 03 05 00 00 00 00 00"))


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS catalogue check value


def test_silence() -> None:
    assert silence_s(9600) == pytest.approx(3.5 * 10 / 9600)
    assert silence_s(115200) == 0.00175


@given(st.binary(max_size=300))
def test_fuzz_parses_or_raises_frame_errors_only(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(IncompleteFrame, FrameError):
            decode(data)


def test_the_inter_frame_silence_holds_on_an_event_loop_that_counts_milliseconds() -> None:
    """uvloop's clock moves in whole milliseconds, longer than the 1.75 ms a fast line
    must stay quiet between frames: the silence is measured on the system's fine clock."""
    import time

    import uvloop

    from alarmgw.clock import ManualClock
    from alarmgw.drivers.modbus_client import rtu_link

    link = rtu_link("bus", "/dev/null", 115200, ManualClock())

    async def gaps() -> list[float]:
        out = []
        for _ in range(40):
            await asyncio.sleep(0)
            time.sleep(0.001)  # noqa: ASYNC251 - the reply is handled a while after the loop woke for it
            link._spoke()
            spoke = time.monotonic()
            await link._quiet()
            out.append(time.monotonic() - spoke)
        return out

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        measured = runner.run(gaps())
    assert min(measured) >= link.silence_s == 0.00175
