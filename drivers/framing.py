"""The codec contract shared by every wire protocol: `decode(buf) -> (frame, consumed)`,
raising `IncompleteFrame` when more bytes are needed and `FrameError` when they are bad."""

from __future__ import annotations


class IncompleteFrame(Exception):
    """Not enough bytes yet for a whole frame; call again with more."""


class FrameError(Exception):
    """The bytes are not a valid frame. `skip` is how many bytes to drop to resynchronise."""

    def __init__(self, message: str, skip: int = 1) -> None:
        super().__init__(message)
        self.skip = max(1, skip)
