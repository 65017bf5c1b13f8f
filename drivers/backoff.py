"""Exponential reconnect backoff with a cap and jitter, owned by the transport that retries."""

from __future__ import annotations

import random

from alarmgw.clock import Clock

from .errors import LinkDown


class Backoff:
    """Delays of initial, 2x, 4x ... up to `cap`, each spread by +-`jitter` so that many
    gateways behind one outage do not reconnect in step."""

    def __init__(
        self, initial_s: float = 1.0, cap_s: float = 60.0, jitter: float = 0.1, rng: random.Random | None = None
    ) -> None:
        if initial_s <= 0 or cap_s < initial_s:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """Delay before the next attempt, after one more failure."""
        base = min(self.cap_s, self.initial_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        spread = base * self.jitter
        return max(0.0, min(self.cap_s, base + self._rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.failures = 0


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

    def check(self, name: str, where: str) -> None:
        """Raise LinkDown while the gate is closed."""
        wait = self.retry_in_s
        if wait > 0:
            raise LinkDown(f"{name}: {where} down, next attempt in {wait:.1f} s")

    def failed(self) -> None:
        self._retry_at = self._clock.monotonic() + self._backoff.next_delay()

    def succeeded(self) -> None:
        self._backoff.reset()
