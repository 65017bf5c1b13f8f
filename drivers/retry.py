"""When a link may try to open again: a backoff after each failure, owned by the link."""

from __future__ import annotations

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock

from .errors import LinkDown


class RetryGate:
    """When a link may try to (re)open: closed for a backoff delay after each failure,
    open again at once after a success. One per link, owned by the link."""

    def __init__(self, clock: Clock, backoff: Backoff | None = None) -> None:
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._retry_at = 0.0

    @property
    def retry_in_s(self) -> float:
        """Seconds until the next attempt is allowed (0: now)."""
        return max(0.0, self._retry_at - self._clock.monotonic())

    @property
    def longest_s(self) -> float:
        """The longest delay between attempts."""
        return self._backoff.cap_s

    def check(self, name: str, where: str) -> None:
        """Raise LinkDown while the gate is closed."""
        wait = self.retry_in_s
        if wait > 0:
            raise LinkDown(f"{name}: {where} down, next attempt in {wait:.1f} s")

    def failed(self, *, longest: bool = False) -> None:
        """Close the gate for the next backoff delay. `longest`: a failure that trying again
        soon will not mend (a wrong password), so this and every later delay is the longest,
        until a success."""
        if longest:
            self._backoff.exhaust()
        self._retry_at = self._clock.monotonic() + self._backoff.next_delay()

    def succeeded(self) -> None:
        self._backoff.reset()
