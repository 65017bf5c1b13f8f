"""The Envisalink TPI's login, from byte vectors: the 505 login interaction and the 005
network login in the IT-100 framing (command, data, checksum, CR LF).

Checksums are worked from the rule (sum of the command and data bytes, mod 256, two
upper-case hex digits) and written out so they can be checked by hand."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarmgw.drivers.envisalink import (
    MAX_PASSWORD,
    Login,
    check_password,
    interaction,
    login_command,
    login_step,
    password_matches,
)
from alarmgw.drivers.framing import Deframer, FrameError, IncompleteFrame
from alarmgw.drivers.it100 import MAX_FRAME, Message, decode

# The module's side: "505" = 0x35 + 0x30 + 0x35 = 0x9A, plus the code digit.
INTERACTIONS = [
    (b"5050CA\r\n", Login.REFUSED),  # 0x9A + 0x30
    (b"5051CB\r\n", Login.OPEN),  # 0x9A + 0x31
    (b"5052CC\r\n", Login.TIMED_OUT),  # 0x9A + 0x32
    (b"5053CD\r\n", Login.REQUEST),  # 0x9A + 0x33: the first thing a client hears
]

# The client's side: "005" = 0x95, then the password's bytes.
LOGINS = [
    # "user" (the factory password): 0x75 + 0x73 + 0x65 + 0x72 = 0x1BF; 0x95 + 0x1BF = 0x254 -> 54
    ("user", b"005user54\r\n"),
    # "12345678": 0x31 + ... + 0x38 = 0x1A4; 0x95 + 0x1A4 = 0x239 -> 39
    ("12345678", b"00512345678" + b"39\r\n"),
    # "Ab!9~": 0x41 + 0x62 + 0x21 + 0x39 + 0x7E = 0x17B; 0x95 + 0x17B = 0x210 -> 10
    ("Ab!9~", b"005Ab!9~10\r\n"),
]


@pytest.mark.parametrize(("wire", "step"), INTERACTIONS)
def test_login_interactions_round_trip(wire: bytes, step: Login) -> None:
    msg, used = decode(wire)
    assert used == len(wire) and login_step(msg) is step
    assert interaction(step).encode() == wire


@pytest.mark.parametrize(("password", "wire"), LOGINS)
def test_network_login_frames(password: str, wire: bytes) -> None:
    assert login_command(password).encode() == wire
    msg, _ = decode(wire)
    assert password_matches(msg, password)
    assert not password_matches(msg, password + "x")
    assert not password_matches(msg, password[:-1])


def test_only_a_login_matches_a_password() -> None:
    assert not password_matches(Message("000", "user"), "user")
    assert not password_matches(Message("505", "user"), "user")


@pytest.mark.parametrize(
    "msg",
    [Message("505", "9"), Message("505", ""), Message("505", "31"), Message("500", "005"), Message("609", "001")],
    ids=["unknown-code", "no-code", "two-digits", "acknowledge", "zone-open"],
)
def test_anything_else_is_no_login_step(msg: Message) -> None:
    assert login_step(msg) is None


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "empty"),
        ("x" * (MAX_PASSWORD + 1), "at most 10"),
        ("pass word", "U+0020"),
        ("pass\tword", "U+0009"),
        ("pässword", "U+00E4"),
        ("pw\r\n005", "U+000D"),  # would end the frame early and smuggle in a command
    ],
    ids=["empty", "too-long", "space", "tab", "not-ascii", "crlf"],
)
def test_a_password_the_tpi_cannot_carry_is_refused(password: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        check_password(password)
    with pytest.raises(ValueError):
        login_command(password)


def test_the_longest_password_fits_a_frame() -> None:
    wire = login_command("~" * MAX_PASSWORD).encode()
    assert len(wire) <= MAX_FRAME and decode(wire)[0] == Message("005", "~" * MAX_PASSWORD)


def test_a_login_split_anywhere_arrives_whole() -> None:
    stream = INTERACTIONS[3][0] + b"garbage\r\n" + INTERACTIONS[1][0]
    for cut in range(len(stream)):
        d: Deframer[Message] = Deframer(decode, MAX_FRAME)
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        steps = [login_step(m) for m in got if isinstance(m, Message)]
        assert steps == [Login.REQUEST, Login.OPEN] and d.bad_frames == 1


@given(st.binary(max_size=80))
def test_fuzz_a_login_step_or_a_frame_error(data: bytes) -> None:
    try:
        msg, _ = decode(data)
    except (IncompleteFrame, FrameError):
        return
    step = login_step(msg)
    assert step is None or interaction(step) == msg
