"""The codec contract shared by every wire protocol: `decode(buf) -> (frame, consumed)`,
raising `IncompleteFrame` when more bytes are needed and `FrameError` when they are bad;
and the one bounded reader that turns a stream of bytes into frames with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Unparsed input a Deframer keeps, in largest legal frames: a frame arriving behind a few
# others in one read. More than that with no frame in it is not a slow peer but garbage.
BUFFERED_FRAMES = 4


class IncompleteFrame(Exception):
    """Not enough bytes yet for a whole frame; call again with more."""


class FrameError(Exception):
    """The bytes are not a valid frame. `skip` is how many bytes to drop to resynchronise."""

    def __init__(self, message: str, skip: int = 1) -> None:
        super().__init__(message)
        self.skip = max(1, skip)


class Deframer(Generic[T]):
    """Bytes in, frames out, sans-IO, for any codec keeping the contract above.

    A bad frame is dropped as far as the codec's `FrameError.skip` says (the codec knows how
    its protocol resynchronises: IT-100 at the next CR LF, Modbus RTU one byte on). The
    buffer never holds more than `max_buffer` bytes between calls: when an incomplete frame
    would need more, the oldest bytes go, counted in `dropped_bytes`."""

    def __init__(self, decode: Callable[[bytes], tuple[T, int]], max_frame: int) -> None:
        self._decode = decode
        self.max_buffer = BUFFERED_FRAMES * max_frame
        self._buf = bytearray()
        self.bad_frames = 0
        self.dropped_bytes = 0

    @property
    def buffered(self) -> int:
        """How many bytes are held, waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[T | FrameError]:
        """The frames completed by `data`, in wire order, with a `FrameError` in place of
        each bad frame skipped (so a caller can answer or count it where it happened)."""
        self._buf += data
        out: list[T | FrameError] = []
        while self._buf:
            try:
                # The codec never sees more than the bound, so one decode costs at most that.
                frame, used = self._decode(bytes(self._buf[: self.max_buffer]))
            except IncompleteFrame:
                overflow = len(self._buf) - self.max_buffer
                if overflow <= 0:
                    break
                del self._buf[:overflow]
                self.dropped_bytes += overflow
                continue
            except FrameError as exc:
                self.bad_frames += 1
                del self._buf[: exc.skip]
                out.append(exc)
                continue
            del self._buf[:used]
            out.append(frame)
        return out

    def clear(self) -> int:
        """Forget the bytes held (the port reopened, or a silence ended the frame); returns
        how many there were. Counters are kept."""
        held = len(self._buf)
        self._buf.clear()
        return held
