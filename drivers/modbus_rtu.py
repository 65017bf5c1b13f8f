"""Modbus RTU framing, sans-IO: CRC-16 and the frames of read holding/input registers.

Modbus over Serial Line v1.02 §2.5.1: address (1 byte), PDU, CRC-16 low byte first.
§2.5.1.1: frames are separated by at least 3.5 character times of silence; above
19200 baud a fixed 1.75 ms is used. Function codes 3 and 4: MODBUS Application Protocol
v1.1b3 §6.3-§6.4.
"""

from __future__ import annotations

from dataclasses import dataclass

from .framing import FrameError, IncompleteFrame

# Largest RTU frame (§2.5.1): 256 bytes = address + 253-byte PDU + 2 CRC.
MAX_RTU_FRAME = 256
# Registers per read (Application Protocol §6.3): 125, so 250 data bytes.
MAX_READ_REGISTERS = 125
READ_FUNCTIONS = (3, 4)


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS: polynomial 0xA001 (reflected 0x8005), initial value 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def silence_s(baud: int, bits_per_char: int = 10) -> float:
    """The 3.5-character inter-frame silence (§2.5.1.1), fixed at 1.75 ms above 19200 baud."""
    return 0.00175 if baud > 19200 else 3.5 * bits_per_char / baud


@dataclass(frozen=True, slots=True)
class ReadRequest:
    unit: int
    function: int
    address: int
    count: int

    def encode(self) -> bytes:
        return with_crc(
            bytes((self.unit, self.function)) + self.address.to_bytes(2, "big") + self.count.to_bytes(2, "big")
        )


@dataclass(frozen=True, slots=True)
class ReadResponse:
    unit: int
    function: int
    registers: tuple[int, ...]

    def encode(self) -> bytes:
        data = b"".join(r.to_bytes(2, "big") for r in self.registers)
        return with_crc(bytes((self.unit, self.function, len(data))) + data)


@dataclass(frozen=True, slots=True)
class ExceptionResponse:
    unit: int
    function: int  # the request's function code (without the 0x80 bit)
    code: int  # 1 illegal function, 2 illegal data address, 3 illegal data value, ...

    def encode(self) -> bytes:
        return with_crc(bytes((self.unit, self.function | 0x80, self.code)))


def _check(buf: bytes, length: int) -> bytes:
    if len(buf) < length:
        raise IncompleteFrame
    frame = bytes(buf[:length])
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise FrameError(f"CRC mismatch in {frame.hex(' ')}")
    return frame


def decode_request(buf: bytes) -> tuple[ReadRequest | ExceptionResponse, int]:
    """A master's request, as a slave sees it. Unsupported functions decode to an
    ExceptionResponse (code 1) to send back, with the bytes consumed."""
    if len(buf) < 2:
        raise IncompleteFrame
    unit, function = buf[0], buf[1]
    if function not in READ_FUNCTIONS:
        # Without knowing the function we cannot know the length: drop the byte, resync.
        raise FrameError(f"unsupported function {function} from unit {unit}")
    frame = _check(buf, 8)
    address = int.from_bytes(frame[2:4], "big")
    count = int.from_bytes(frame[4:6], "big")
    if not 1 <= count <= MAX_READ_REGISTERS:
        return ExceptionResponse(unit, function, 3), 8
    return ReadRequest(unit, function, address, count), 8


def decode_response(buf: bytes) -> tuple[ReadResponse | ExceptionResponse, int]:
    """A slave's answer to a read, as the master sees it."""
    if len(buf) < 3:
        raise IncompleteFrame
    unit, function = buf[0], buf[1]
    if function & 0x80:
        frame = _check(buf, 5)
        return ExceptionResponse(unit, function & 0x7F, frame[2]), 5
    if function not in READ_FUNCTIONS:
        raise FrameError(f"unexpected function {function} from unit {unit}")
    nbytes = buf[2]
    if nbytes % 2 or nbytes > 2 * MAX_READ_REGISTERS:
        raise FrameError(f"byte count {nbytes} is not a register count")
    frame = _check(buf, 5 + nbytes)
    regs = tuple(int.from_bytes(frame[3 + 2 * i : 5 + 2 * i], "big") for i in range(nbytes // 2))
    return ReadResponse(unit, function, regs), 5 + nbytes
