"""SIA DC-09 framing through pysiaalarm, from byte vectors; pure, no I/O.

The CRC is CRC-16/ARC (poly 0x8005 reflected, init 0), whose published check value over
"123456789" is BB3D. The encrypted vectors are checked against AES-CBC with a zero IV done
here directly (pycryptodome), not only through the decoder; their padding is pysiaalarm's
('0' characters before the '|')."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from Crypto.Cipher import AES

from alarmgw.drivers.dc09 import (
    Decoder,
    Reply,
    ReplyError,
    Verdict,
    cid_body,
    crc,
    decode_reply,
    encode,
    frame,
    sia_body,
)
from alarmgw.drivers.sia_map import Report

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
STAMP = datetime(2026, 1, 5, 7, 59, 55, tzinfo=UTC)
K128, K192, K256 = "0123456789ABCDEF", "0123456789ABCDEF01234567", "0123456789ABCDEF0123456789ABCDEF"

PLAIN_TA = b'\n88F5003A"SIA-DCS"0007R0L0#AAA[#AAA|Nri1/TA003]_07:59:55,01-05-2026\r'
CID_384 = b'\n13BA003B"ADM-CID"0003R0L0#CCC[#CCC|1384 01 005]_07:59:55,01-05-2026\r'
ENCRYPTED_XT = {
    K128: b'\nD8B40077"*SIA-DCS"0012R0L0#BBB[969677BDF2B234C35BB05052E26E242CA4B33FD4C680E70D6D2E3A3282E5DD'
    b"63867A9B9234C1E9E59BB9CA71E105BFE0\r",
    K192: b'\n71640077"*SIA-DCS"0012R0L0#BBB[E86F09AD14E177D4647E12DA17FA0CE29C62990E2E3CE76A8FE02DFE8A57DD'
    b"99943F105345E4C25F8589AF861D512165\r",
    K256: b'\nA6A80077"*SIA-DCS"0012R0L0#BBB[88927331CEA5397DDA0C3E374779193051428641C814231F0FB6DFC5659F32'
    b"54F0DCC26B9E200C9DC5FD1AB2E8C30EAF\r",
}
NULL_ENCRYPTED = b'\nA3F30054"*NULL"0004R0L0#BBB[E9A95C1F0C911C9FF3131E6194A58E60AAB4B5834295BBAC9DF5B4DC229502E7\r'
NAK_AT_NOW = b'\n81670025"NAK"0000R0L0A0[]_08:00:00,01-05-2026\r'


def decoder(key: str | None = K128) -> Decoder:
    return Decoder({"AAA": None, "BBB": key, "CCC": None})


def test_crc_is_crc16_arc() -> None:
    assert crc("123456789") == "BB3D"
    assert frame('"ACK"0007R0L0#AAA[]') == b'\n08300013"ACK"0007R0L0#AAA[]\r'


def test_a_plain_sia_dcs_event() -> None:
    out = decoder().decode(PLAIN_TA, NOW)
    assert out.verdict is Verdict.ACK
    assert out.reply == b'\n08300013"ACK"0007R0L0#AAA[]\r'
    assert out.message is not None
    assert out.message.report == Report("sia", code="TA", zone=3, area=1, text="003")
    assert out.message.timestamp == STAMP and out.message.sequence == "0007" and not out.message.encrypted
    assert encode("AAA", 7, sia_body("AAA", "TA", 3), timestamp=STAMP) == PLAIN_TA


def test_a_contact_id_event_in_adm_cid() -> None:
    out = decoder().decode(CID_384, NOW)
    assert out.verdict is Verdict.ACK and out.message is not None
    assert out.message.report == Report("cid", cid_event=384, cid_qualifier=1, zone=5, area=1)
    assert encode("CCC", 3, cid_body("CCC", 1, 384, 5), message_type="ADM-CID", timestamp=STAMP) == CID_384


@pytest.mark.parametrize("key", [K128, K192, K256])
def test_encrypted_events_with_aes_128_192_256(key: str) -> None:
    vector = ENCRYPTED_XT[key]
    # The encrypted part, opened here with AES-CBC and a zero IV, holds the event.
    secret = bytes.fromhex(vector.decode().split("[", 1)[1].strip())
    plain = AES.new(key.encode(), AES.MODE_CBC, bytes(16)).decrypt(secret).decode()
    assert plain.endswith("|#BBB|Nri1/XT005]_07:59:55,01-05-2026") and len(plain) % 16 == 0
    out = decoder(key).decode(vector, NOW)
    assert out.verdict is Verdict.ACK and out.message is not None and out.message.encrypted
    assert out.message.report == Report("sia", code="XT", zone=5, area=1, text="005")
    assert out.message.timestamp == STAMP
    assert encode("BBB", 12, sia_body("BBB", "XT", 5), key=key, timestamp=STAMP) == vector
    # The ACK is encrypted too and carries the receiver's time.
    assert out.reply is not None and out.reply.startswith(b"\n") and b'"*ACK"0012R0L0#BBB[' in out.reply
    assert decode_reply(out.reply, key) == Reply("ACK", "0012", "BBB", NOW)


def test_an_encrypted_link_test() -> None:
    out = decoder().decode(NULL_ENCRYPTED, NOW)
    assert out.verdict is Verdict.ACK and out.message is not None
    assert out.message.report == Report("null")


def test_a_bad_crc_gets_no_answer() -> None:
    for bad in (PLAIN_TA.replace(b"88F5", b"88F6"), PLAIN_TA.replace(b"TA003", b"TR003")):
        assert decoder().decode(bad, NOW).verdict is Verdict.CRC
        assert decoder().decode(bad, NOW).reply is None
    bad = ENCRYPTED_XT[K128].replace(b"D8B4", b"0000")
    assert decoder().decode(bad, NOW).reply is None


@pytest.mark.parametrize(
    "junk",
    [b"", b"\r", b"hello\r", b"\n\xff\xfe\r", b"\n0000", b'\nZZZZ0013"ACK"0007R0L0#AAA[]\r', b"x" * 5000],
)
def test_what_is_not_dc09_gets_no_answer(junk: bytes) -> None:
    out = decoder().decode(junk, NOW)
    assert out.verdict is Verdict.MALFORMED and out.reply is None


def test_an_unknown_account_is_refused_with_the_receivers_time() -> None:
    frame_ = encode("DDD", 1, sia_body("DDD", "TA", 3), timestamp=STAMP)
    out = decoder().decode(frame_, NOW)
    assert (out.verdict, out.reply) == (Verdict.ACCOUNT, NAK_AT_NOW)
    assert decode_reply(NAK_AT_NOW) == Reply("NAK", "0000", None, NOW)


def test_the_wrong_key_or_none_is_refused() -> None:
    wrong = encode("BBB", 1, sia_body("BBB", "TA", 3), key="FEDCBA9876543210", timestamp=STAMP)
    assert (decoder().decode(wrong, NOW).verdict, decoder().decode(wrong, NOW).reply) == (Verdict.KEY, NAK_AT_NOW)
    # encrypted to an account that has no key
    assert decoder(None).decode(ENCRYPTED_XT[K128], NOW).verdict is Verdict.KEY
    # plain text to an account that has one: anyone could have sent it
    plain = encode("BBB", 1, sia_body("BBB", "TA", 3), timestamp=STAMP)
    assert decoder().decode(plain, NOW).verdict is Verdict.PLAINTEXT
    # hex that is not whole blocks, and a body that is not hex
    assert decoder().decode(frame('"*SIA-DCS"0001R0L0#BBB[ABC'), NOW).verdict is Verdict.KEY
    assert decoder().decode(frame('"*SIA-DCS"0001R0L0#BBB[nothex!'), NOW).verdict is Verdict.KEY


def test_the_timestamp_window() -> None:
    def at(seconds: float, key: str | None = None, account: str = "AAA") -> Verdict:
        f = encode(account, 1, sia_body(account, "TA", 3), key=key, timestamp=NOW + timedelta(seconds=seconds))
        return decoder().decode(f, NOW).verdict

    assert at(-40) is Verdict.ACK and at(20) is Verdict.ACK
    assert at(-41) is Verdict.TIMESTAMP and at(21) is Verdict.TIMESTAMP
    assert at(-3600, K128, "BBB") is Verdict.TIMESTAMP
    assert decoder().decode(encode("AAA", 1, sia_body("AAA", "TA", 3)), NOW).verdict is Verdict.ACK  # plain, no stamp
    no_stamp = encode("BBB", 1, sia_body("BBB", "TA", 3), key=K128)
    out = decoder().decode(no_stamp, NOW)
    assert (out.verdict, out.reply) == (Verdict.TIMESTAMP, NAK_AT_NOW)  # encrypted: a stamp is owed


def test_a_code_sia_does_not_define_gets_duh() -> None:
    out = decoder().decode(encode("AAA", 9, sia_body("AAA", "AC", 5), timestamp=STAMP), NOW)
    assert (out.verdict, out.reply) == (Verdict.DUH, b'\nB8BA0013"DUH"0009R0L0#AAA[]\r')
    assert out.message is not None and out.message.report.code == "AC"  # handed on, to be kept


def test_a_plain_message_whose_content_does_not_parse_is_refused() -> None:
    out = decoder().decode(frame('"SIA-DCS"0001R0L0#AAA[#AAA|Nri1/TA003'), NOW)  # no closing bracket
    assert (out.verdict, out.reply) == (Verdict.FORMAT, NAK_AT_NOW)


def test_answers_as_a_hub_reads_them() -> None:
    assert decode_reply(b'\n08300013"ACK"0007R0L0#AAA[]\r') == Reply("ACK", "0007", "AAA", None)
    with pytest.raises(ReplyError):
        decode_reply(b'\n08310013"ACK"0007R0L0#AAA[]\r')  # bad CRC
    with pytest.raises(ReplyError):
        decode_reply(b"garbage\r")
    enc_ack = b'\n1FF10053"*ACK"0012R0L0#BBB[5187B403EEE10558ED4EF0D95C8607E0BD447DB21F31E21A54C5C356A64FC66F\r'
    assert decode_reply(enc_ack, K128) == Reply("ACK", "0012", "BBB", NOW)
    with pytest.raises(ReplyError):
        decode_reply(enc_ack, K256)


def test_hostile_frames_of_the_largest_size_decode_in_bounded_time() -> None:
    """Frames with a valid CRC built to make the patterns work hard: each decodes in
    milliseconds, whatever it holds."""
    d = decoder()
    bodies = [
        '"SIA-DCS"0001R0L0#AAA[' + "#AAA|" + "ri1/" * 240 + "]",
        '"SIA-DCS"0001R0L0#AAA[' + "N" + "1" * 990 + "]",
        '"SIA-DCS"0001R0L0#AAA[' + "#AAA|Nri1/TA" + "0" * 980,
        '"ADM-CID"0001R0L0#AAA[' + "#AAA|1384 01 " + "0" * 970 + "]",
        '"SIA-DCS"0001R0L0#AAA[' + "]_" + "0:" * 490,
    ]
    secret = "|" + "#BBB|Nri1/TA" + "x" * 400  # decrypts, but no closing bracket anywhere
    from pysiaalarm.account import SIAAccount
    from pysiaalarm.event import SIAEvent

    hexed = SIAEvent(sia_account=SIAAccount("BBB", K128)).encrypt_content(secret)
    assert hexed is not None
    bodies.append('"*SIA-DCS"0001R0L0#BBB[' + hexed)
    for body in bodies:
        f = frame(body)
        assert len(f) <= 1024, len(f)
        started = time.perf_counter()
        out = d.decode(f, NOW)
        assert time.perf_counter() - started < 0.05, body[:40]
        assert out.verdict is not Verdict.CRC
