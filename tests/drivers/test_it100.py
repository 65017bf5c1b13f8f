"""IT-100 framing from the developer's guide: the four checks and a fuzz.

Checksums below are worked from the guide's rule (sum of the command and data bytes,
mod 256, two upper-case hex digits), written out so they can be checked by hand; the
poll and status-request frames are the guide's own examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.drivers.framing import FrameError, IncompleteFrame
from alarmgw.drivers.it100 import Message, Scope, decode

VECTORS = [
    (b"00090\r\n", Message("000"), None),  # poll: 0x30*3 = 0x90
    (b"00191\r\n", Message("001"), None),  # status request: 0x90 + 1
    # acknowledge of a poll: '5' 0x35 + 5 * '0' 0x30 = 0x125 -> 25
    (b"50000025\r\n", Message("500", "000"), None),
    # command error, no data: 0x35 + 0x30 + 0x31 = 0x96
    (b"50196\r\n", Message("501"), None),
    # system error 022, command not supported: "502022" = 0x35+0x30+0x32+0x30+0x32+0x32 = 0x12B -> 2B
    (b"5020222B\r\n", Message("502", "022"), None),
    # zone 4 open, then restored: "609004" = 0x36+0x30+0x39+0x30+0x30+0x34 = 0x133 -> 33; 610004 -> 0x12B
    (b"60900433\r\n", Message("609", "004"), ("alarm", True, 4)),
    (b"6100042B\r\n", Message("610", "004"), ("alarm", False, 4)),
    # zone 5 tamper on partition 1: "6031005" = 0x36+0x30+0x33+0x31+0x30+0x30+0x35 = 0x15F -> 5F
    (b"60310055F\r\n", Message("603", "1005"), ("tamper", True, 5)),
    # zone 5 tamper restore: one more than 603 -> 60
    (b"604100560\r\n", Message("604", "1005"), ("tamper", False, 5)),
    # zone 12 fault (supervisory): "605012" = 0x36+0x30+0x35+0x30+0x31+0x32 = 0x12E -> 2E
    (b"6050122E\r\n", Message("605", "012"), ("link_lost", True, 12)),
    # wireless zone 7 low battery: "821007" = 0x38+0x32+0x31+0x30+0x30+0x37 = 0x132 -> 32
    (b"82100732\r\n", Message("821", "007"), ("battery_low", True, 7)),
    # panel AC trouble: 0x38 + 0x30 + 0x32 = 0x9A
    (b"8029A\r\n", Message("802"), ("mains_fail", True, None)),
    # general system tamper restore: 0x38 + 0x33 + 0x30 = 0x9B
    (b"8309B\r\n", Message("830"), ("tamper", False, None)),
    # keybus fault: 0x38 + 0x39 + 0x36 = 0xA7
    (b"896A7\r\n", Message("896"), ("link_lost", True, None)),
    # verbose trouble, AC lost (bit 1) + low battery (bit 6) = 0x42: "84942" = 0x38+0x34+0x39+0x34+0x32 = 0x10B -> 0B
    (b"849420B\r\n", Message("849", "42"), None),
]


@pytest.mark.parametrize(("wire", "message", "_"), VECTORS)
def test_round_trip(wire: bytes, message: Message, _: object) -> None:
    assert decode(wire) == (message, len(wire))
    assert message.encode() == wire


@pytest.mark.parametrize(("wire", "message", "event"), VECTORS)
def test_events_and_zones(wire: bytes, message: Message, event: tuple[str, bool, int | None] | None) -> None:
    if event is None:
        assert message.event is None
        return
    field, active, zone = event
    assert message.event is not None
    assert message.event[:2] == (field, active)
    assert message.zone == zone
    assert (message.event[2] is Scope.ZONE) == (zone is not None)


def test_verbose_trouble_bits() -> None:
    assert Message("849", "42").trouble_bits == 0x42
    assert Message("849", "ZZ").trouble_bits is None


@pytest.mark.parametrize(("wire", "_m", "_e"), VECTORS)
def test_every_truncated_prefix_is_incomplete(wire: bytes, _m: object, _e: object) -> None:
    for n in range(len(wire) - 1):  # all but the final LF
        with pytest.raises(IncompleteFrame):
            decode(wire[:n])


def test_byte_at_a_time_and_resync_after_garbage() -> None:
    stream = b"".join(w for w, _, _ in VECTORS[:4]) + b"\x00\xff!junk\r\n" + VECTORS[4][0]
    buf = b""
    frames, errors = [], 0
    for b in stream:
        buf += bytes([b])
        while True:
            try:
                frame, used = decode(buf)
            except IncompleteFrame:
                break
            except FrameError as exc:
                errors += 1
                buf = buf[exc.skip :]
                continue
            frames.append(frame)
            buf = buf[used:]
    assert frames == [m for _, m, _ in VECTORS[:5]]
    assert errors == 1 and buf == b""


@pytest.mark.parametrize(
    "bad",
    [b"60310056A\r\n", b"ABC12\r\n", b"12\r\n", b"60310055FX\r\n"],
    ids=["checksum", "not-digits", "too-short", "bad-checksum-chars"],
)
def test_malformed_is_a_frame_error(bad: bytes) -> None:
    with pytest.raises(FrameError) as err:
        decode(bad)
    assert err.value.skip == len(bad)


def test_endless_garbage_is_dropped_not_buffered() -> None:
    with pytest.raises(FrameError) as err:
        decode(b"x" * 100)
    assert err.value.skip == 99


@given(st.binary(max_size=200))
def test_fuzz_parses_or_raises_frame_errors_only(data: bytes) -> None:
    try:
        msg, used = decode(data)
    except (IncompleteFrame, FrameError):
        return
    assert 0 < used <= len(data) and len(msg.command) == 3
