"""The ASCII integration protocol of the DSC IT-100 / PowerSeries family, sans-IO.

IT-100 Developer's Guide, "Communications Protocol": every message is a 3-digit command,
its data, a 2-character checksum and CR LF. The checksum is the sum of the command and data
bytes, modulo 256, as two upper-case hex digits. Commands used here:

  application -> IT-100: 000 poll, 001 status request
  IT-100 -> application: 500 command acknowledge (data: the command), 501 command error
  (bad checksum), 502 system error (3-digit code), 601/602 zone alarm/restore, 603/604 zone
  tamper/restore and 605/606 zone fault/restore... (see EVENTS), 849 verbose trouble status
  (2 hex digits of bits, VERBOSE_TROUBLE).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .framing import FrameError, IncompleteFrame

# Longest message: 3 command + 32 data (LCD update 901 carries the most) + 2 + CR LF.
MAX_FRAME = 64
TERMINATOR = b"\r\n"

POLL = "000"
STATUS_REQUEST = "001"
ACK = "500"
COMMAND_ERROR = "501"
SYSTEM_ERROR = "502"
VERBOSE_TROUBLE = "849"
# 502 system error codes (data): the ones this gateway can provoke.
API_SYNTAX_ERROR = "020"
UNSUPPORTED_COMMAND = "022"


class Scope(Enum):
    ZONE = "zone"  # data ends with a 3-digit zone number (after a 1-digit partition for 601-604)
    PANEL = "panel"


# command -> (field of the common model, active?, scope). Zone fault (605) is how a
# PowerSeries panel reports a wireless zone's supervisory trouble: the device is not heard.
EVENTS: dict[str, tuple[str, bool, Scope]] = {
    "601": ("alarm", True, Scope.ZONE),
    "602": ("alarm", False, Scope.ZONE),
    "603": ("tamper", True, Scope.ZONE),
    "604": ("tamper", False, Scope.ZONE),
    "605": ("link_lost", True, Scope.ZONE),
    "606": ("link_lost", False, Scope.ZONE),
    "609": ("alarm", True, Scope.ZONE),  # zone open: status, not trouble
    "610": ("alarm", False, Scope.ZONE),
    "800": ("battery_low", True, Scope.PANEL),
    "801": ("battery_low", False, Scope.PANEL),
    "802": ("mains_fail", True, Scope.PANEL),
    "803": ("mains_fail", False, Scope.PANEL),
    "821": ("battery_low", True, Scope.ZONE),  # general device (wireless zone) low battery
    "822": ("battery_low", False, Scope.ZONE),
    "829": ("tamper", True, Scope.PANEL),  # general system tamper
    "830": ("tamper", False, Scope.PANEL),
    "842": ("fire_trouble", True, Scope.PANEL),
    "843": ("fire_trouble", False, Scope.PANEL),
    "896": ("link_lost", True, Scope.PANEL),  # keybus fault: the IT-100 has lost the panel
    "897": ("link_lost", False, Scope.PANEL),
}

# 849 verbose trouble status, bit -> meaning (bit 0 = LSB). Only AC maps to a model field;
# the rest are reported by their own commands or are outside the gateway's scope.
VERBOSE_TROUBLE_BITS = {
    0: "service required",
    1: "AC power lost",
    2: "telephone line fault",
    3: "failure to communicate",
    4: "sensor/zone fault",
    5: "sensor/zone tamper",
    6: "sensor/zone low battery",
    7: "loss of time",
}


def checksum(body: bytes) -> bytes:
    return f"{sum(body) & 0xFF:02X}".encode()


@dataclass(frozen=True, slots=True)
class Message:
    command: str  # three digits
    data: str = ""

    def encode(self) -> bytes:
        body = (self.command + self.data).encode("ascii")
        return body + checksum(body) + TERMINATOR

    @property
    def event(self) -> tuple[str, bool, Scope] | None:
        """(field, active, scope) for a status event, None for anything else."""
        return EVENTS.get(self.command)

    @property
    def zone(self) -> int | None:
        """The zone number of a zone event; a partition digit before it is skipped."""
        ev = self.event
        if ev is None or ev[2] is not Scope.ZONE or len(self.data) < 3 or not self.data[-3:].isdigit():
            return None
        return int(self.data[-3:])

    @property
    def trouble_bits(self) -> int | None:
        if self.command != VERBOSE_TROUBLE:
            return None
        try:
            return int(self.data, 16)
        except ValueError:
            return None


def decode(buf: bytes) -> tuple[Message, int]:
    """One message from the front of `buf`; garbage before a frame is a FrameError whose
    `skip` drops it, so a reader resynchronises on the next CR LF."""
    end = buf.find(TERMINATOR)
    if end < 0:
        if len(buf) > MAX_FRAME:
            raise FrameError(f"no CR LF within {MAX_FRAME} bytes", skip=len(buf) - 1)
        raise IncompleteFrame
    used = end + len(TERMINATOR)
    line = bytes(buf[:end])
    if len(line) < 5 or len(line) > MAX_FRAME:
        raise FrameError(f"message of {len(line)} bytes: {line!r}", skip=used)
    body, given = line[:-2], line[-2:]
    if not body[:3].isdigit() or not body.isascii():
        raise FrameError(f"not an IT-100 message: {line!r}", skip=used)
    if given.upper() != checksum(body):
        raise FrameError(
            f"checksum {given.decode(errors='replace')} != {checksum(body).decode()} in {line!r}", skip=used
        )
    return Message(body[:3].decode(), body[3:].decode()), used
