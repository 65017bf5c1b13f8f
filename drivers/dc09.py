"""SIA DC-09 messages, sans-IO: a receiver's verdict on one frame and the answer it owes,
and, for a hub (the simulator's), the frames a hub sends and the answers it reads.

The protocol work is pysiaalarm's: its frame pattern (`MAIN_MATCHER`), CRC, AES-CBC
decryption, content parsing (SIA-DCS, ADM-CID, NULL), SIA code table and the encryption of
an answer. What is done here is what its server classes do with the wall clock or leave
unbounded: the timestamp window is judged against the time handed in, the answers carry
that time, and the CRC is checked before anything is decrypted, so a frame with a bad CRC
costs no AES and gets no answer (the hub sends it again).

A frame is `<LF><crc:4 hex><length:4 hex>"<*?><type>"<seq:4><Rrcvr><Lline>#<account>[...<CR>`;
the CRC (CRC-16/ARC) and the length cover everything from the first quote to the end. An
encrypted message (`*`) carries, after `[`, the hex of AES-CBC (zero IV) over padding, `|`
and the content; its key is the hub's 16, 24 or 32 hex characters taken as they are
(AES-128/192/256), as the hubs and pysiaalarm use them.

Verdicts: a frame that is not DC-09 or has a bad CRC: no answer. An unknown account, a
message that is encrypted where the account has no key (or plain where it has one), one
that does not decrypt or parse, an encrypted one without a timestamp, or one whose
timestamp is outside the window: NAK, carrying the receiver's time so the hub can set its
clock. A code SIA does not define: DUH (the hub does not send it again). Else ACK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from Crypto.Cipher import AES
from pysiaalarm.account import SIAAccount
from pysiaalarm.const import IV
from pysiaalarm.event import BaseEvent, SIAEvent
from pysiaalarm.utils.enums import MessageTypes
from pysiaalarm.utils.regexes import MAIN_MATCHER

from .sia_map import Report

# The longest frame taken, LF and CR included. A DC-09 event is well under 200 bytes; room
# is left for extended data ([...] blocks) and the hex of an encrypted body.
MAX_FRAME = 1024
# pysiaalarm's window for an event's timestamp against the receiver's clock.
WINDOW_PAST_S = 40.0
WINDOW_FUTURE_S = 20.0
TIMESTAMP = "%H:%M:%S,%m-%d-%Y"


class Verdict(StrEnum):
    """What became of a frame; each is counted by the receiver."""

    ACK = "ack"
    DUH = "duh"  # understood as DC-09, but a code SIA does not define
    MALFORMED = "malformed"  # not a DC-09 frame: no answer
    CRC = "crc"  # bad CRC: no answer, the hub sends it again
    ACCOUNT = "account"  # no such account: NAK
    KEY = "key"  # encrypted without a key here, or does not decrypt to a message: NAK
    PLAINTEXT = "plaintext"  # plain text for an account that has a key: NAK
    FORMAT = "format"  # a plain message whose content does not parse: NAK
    TIMESTAMP = "timestamp"  # outside the window, or an encrypted message without one: NAK


@dataclass(frozen=True, slots=True)
class Message:
    """An accepted message (ACK or DUH): who sent it and what it reports."""

    account: str
    sequence: str
    encrypted: bool
    report: Report
    timestamp: datetime | None  # the hub's own stamp (UTC), if it sent one


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reply: bytes | None  # the answer to send, None for none
    message: Message | None = None  # set for ACK and DUH


def crc(text: str) -> str:
    """CRC-16/ARC as DC-09 writes it: four upper-case hex digits (pysiaalarm's)."""
    value = BaseEvent._crc_calc(text)
    assert value is not None
    return value


def frame(body: str) -> bytes:
    """`body` (from the opening quote on) with its LF, CRC, length and CR."""
    return f"\n{crc(body)}{len(body):04X}{body}\r".encode("ascii")


def stamp(at: datetime) -> str:
    return "_" + at.astimezone(UTC).strftime(TIMESTAMP)


class Decoder:
    """The receiver's side. `accounts`: account id -> key (None: plain text)."""

    def __init__(
        self,
        accounts: dict[str, str | None],
        *,
        window_past_s: float = WINDOW_PAST_S,
        window_future_s: float = WINDOW_FUTURE_S,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.accounts = {a.upper(): SIAAccount(a.upper(), key, allowed_timeband=None) for a, key in accounts.items()}
        self.window_past_s = window_past_s
        self.window_future_s = window_future_s
        self.max_frame = max_frame

    def decode(self, data: bytes, now: datetime) -> Outcome:
        """The verdict on one frame received at `now` (UTC) and the answer it gets."""
        if len(data) > self.max_frame:
            return Outcome(Verdict.MALFORMED, None)
        try:
            line = data.decode("ascii").strip("\r\n\0 ")
        except UnicodeDecodeError:
            return Outcome(Verdict.MALFORMED, None)
        m = MAIN_MATCHER.match(line)
        if m is None:
            return Outcome(Verdict.MALFORMED, None)
        g = m.groupdict()
        body = line[8:]
        calc = crc(body)
        if g["crc"].upper() != calc:
            return Outcome(Verdict.CRC, None)
        receiver, ln = g["receiver"] or "", g["line"] or ""
        account = self.accounts.get((g["account"] or "").upper())
        if account is None:
            return self._nak(Verdict.ACCOUNT, receiver, ln, now)
        encrypted = bool(g["encrypted_flag"])
        if encrypted != account.encrypted:
            return self._nak(Verdict.KEY if encrypted else Verdict.PLAINTEXT, receiver, ln, now)
        try:
            event = SIAEvent(
                full_message=body,
                msg_crc=calc,
                calc_crc=calc,
                length=g["length"],
                encrypted=encrypted,
                message_type=g["message_type"],
                sequence=g["sequence"],
                receiver=receiver,
                line=ln,
                account=account.account_id,
                content=None if encrypted else g["rest"],
                encrypted_content=g["rest"] if encrypted else None,
                sia_account=account,
            )
        except Exception:  # anything the content holds: pysiaalarm raises what it meets
            return self._nak(Verdict.KEY if encrypted else Verdict.FORMAT, receiver, ln, now)
        ts = event.timestamp if isinstance(event.timestamp, datetime) else None
        if encrypted and ts is None:
            return self._nak(Verdict.TIMESTAMP, receiver, ln, now)
        if ts is not None and not (-self.window_past_s <= (ts - now).total_seconds() <= self.window_future_s):
            return self._nak(Verdict.TIMESTAMP, receiver, ln, now)
        message = Message(account.account_id, event.sequence or "0000", encrypted, _report(event), ts)
        if event.code_not_found:
            return Outcome(Verdict.DUH, _reply(event, "DUH", now), message)
        return Outcome(Verdict.ACK, _reply(event, "ACK", now), message)

    @staticmethod
    def _nak(verdict: Verdict, receiver: str, line: str, now: datetime) -> Outcome:
        return Outcome(verdict, frame(f'"NAK"0000{receiver or "R0"}{line or "L0"}A0[]{stamp(now)}'))


def _reply(event: SIAEvent, kind: str, now: datetime) -> bytes:
    """pysiaalarm's answer to an accepted message, stamped with `now` (an encrypted ACK
    carries the receiver's time inside its encrypted part)."""
    head = f"{event.sequence}{event.receiver or ''}{event.line or ''}#{event.account}["
    if event.encrypted and kind == "ACK":
        secret = event.encrypt_content("]" + stamp(now))
        return frame(f'"*{kind}"{head}{secret}')
    return frame(f'"{kind}"{head}]')


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


_LEADING_DIGITS = re.compile(r"\d{1,6}")


def _report(event: SIAEvent) -> Report:
    if event.message_type == MessageTypes.NULL:
        return Report("null")
    if event.message_type == MessageTypes.ADMCID:
        return Report(
            "cid",
            cid_event=_int(event.event_type),
            cid_qualifier=_int(event.event_qualifier),
            zone=_int(event.ri),
            area=_int(event.partition),
        )
    text = event.message or ""
    number = _LEADING_DIGITS.match(text)
    return Report(
        "sia",
        code=(event.code or "").upper() or None,
        zone=int(number.group()) if number else None,
        area=_int(event.ri),
        text=text[:64],
    )


# --- the hub's side ----------------------------------------------------------------------


def sia_body(account: str, code: str, zone: int | None = None, area: int = 1) -> str:
    """A SIA-DCS event's data: new event, its area, its code and the zone (none: the hub)."""
    return f"#{account}|Nri{area}/{code}{'' if zone is None else f'{zone:03d}'}"


def cid_body(account: str, qualifier: int, event: int, zone: int = 0, partition: int = 1) -> str:
    """An ADM-CID event's data: Contact ID qualifier, event code, partition and zone."""
    return f"#{account}|{qualifier}{event:03d} {partition:02d} {zone:03d}"


def encode(
    account: str,
    sequence: int,
    body: str,
    *,
    message_type: str = "SIA-DCS",
    key: str | None = None,
    timestamp: datetime | None = None,
    receiver: str = "R0",
    line: str = "L0",
) -> bytes:
    """A hub's frame: `body` from `sia_body` or `cid_body` ("" for a NULL link test),
    encrypted with `key` when given (with the timestamp inside, as DC-09 wants)."""
    content = body + "]" + (stamp(timestamp) if timestamp is not None else "")
    head = f"{sequence % 10000:04d}{receiver}{line}#{account}["
    if key is None:
        return frame(f'"{message_type}"{head}{content}')
    secret = SIAEvent(sia_account=SIAAccount(account, key)).encrypt_content("|" + content)
    assert secret is not None
    return frame(f'"*{message_type}"{head}{secret}')


_REPLY = re.compile(
    r'(?P<crc>[0-9A-Fa-f]{4})(?P<length>[0-9A-Fa-f]{4})"(?P<enc>\*)?(?P<kind>ACK|NAK|DUH|RSP)"'
    r"(?P<seq>\d{4})(?:R[0-9A-Fa-f]{0,6})?(?:L[0-9A-Fa-f]{0,6})?(?:#(?P<account>[0-9A-Fa-f]{3,16})|A0)?\[(?P<rest>.*)$"
)


@dataclass(frozen=True, slots=True)
class Reply:
    """A receiver's answer as a hub reads it."""

    kind: str  # ACK, NAK, DUH or RSP
    sequence: str
    account: str | None
    timestamp: datetime | None  # the receiver's time, if it sent it


class ReplyError(ValueError):
    """Not an answer: wrong shape, bad CRC, or does not decrypt."""


def decode_reply(data: bytes, key: str | None = None) -> Reply:
    """A hub reads the receiver's answer; raises ReplyError."""
    line = data.decode("ascii", "replace").strip("\r\n\0 ")
    m = _REPLY.match(line)
    if m is None:
        raise ReplyError(f"not a DC-09 answer: {line[:80]!r}")
    if m["crc"].upper() != crc(line[8:]):
        raise ReplyError("bad CRC")
    rest = m["rest"]
    if m["enc"]:
        if key is None:
            raise ReplyError("an encrypted answer and no key")
        try:
            rest = AES.new(key.encode("ascii"), AES.MODE_CBC, IV).decrypt(bytes.fromhex(rest)).decode("ascii")
        except ValueError as exc:
            raise ReplyError(f"does not decrypt: {exc}") from None
        if "]" not in rest:
            raise ReplyError("decrypts to nothing sensible (another key?)")
        rest = rest[rest.index("]") :]
    at = None
    if "_" in rest:
        try:
            at = datetime.strptime(rest.split("_", 1)[1], TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            raise ReplyError(f"a timestamp that does not read: {rest[:40]!r}") from None
    return Reply(m["kind"], m["seq"], m["account"], at)
