"""The gateway's watch over its own inputs: every device is, at every moment, either heard
within its window or in a fault.

Drivers give a verdict on every device they read (values, or `link_lost`). When a device
gets no reading at all for longer than its window (its host refuses the read, the reply
does not decode, a poll job keeps failing, a feed says nothing), the watch names it, and
the core raises `unmonitored` on it, unless something above it is already in a fault that
explains the silence. Pure: times are monotonic seconds handed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable

from .engine import UNMONITORED


class Watch:
    """`stall_s`: a gap between two looks longer than this means the gateway itself was
    not running (the box suspended, the process stopped or starved); every window starts
    again, so devices are not blamed for the gateway's own absence."""

    def __init__(self, now: float, stall_s: float = float("inf")) -> None:
        self._stall_s = stall_s
        self._looked = now
        self._windows: dict[str, float] = {}
        self._heard: dict[str, float] = {}
        self._flagged: set[str] = set()

    def add(self, device_id: str, window_s: float | None, now: float) -> None:
        """Watch a device (from now: a device not heard yet gets its whole window)."""
        if window_s is not None and device_id not in self._windows:
            self._windows[device_id] = window_s
            self._heard[device_id] = now

    def window(self, device_id: str) -> float | None:
        return self._windows.get(device_id)

    def flag(self, devices: Iterable[str]) -> None:
        """Devices already known to be unmonitored (an open fault restored at start)."""
        self._flagged.update(devices)

    def heard(self, device_id: str, now: float) -> bool:
        """A reading of the device arrived; True when it had been flagged unmonitored."""
        if device_id in self._heard:
            self._heard[device_id] = now
        if device_id in self._flagged:
            self._flagged.discard(device_id)
            return True
        return False

    def overdue(self, now: float) -> list[str]:
        """Devices past their window and not flagged yet (flag those the caller raises)."""
        if now - self._looked > self._stall_s:
            self._heard = {d: max(at, now) for d, at in self._heard.items()}
        self._looked = now
        return [d for d, window in self._windows.items() if d not in self._flagged and now - self._heard[d] > window]

    def age_s(self, device_id: str, now: float) -> float | None:
        at = self._heard.get(device_id)
        return None if at is None else now - at


__all__ = ["UNMONITORED", "Watch"]
