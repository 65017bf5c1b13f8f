"""Exponential backoff with a cap and jitter: how long to wait before trying again.

Shared by everything that retries (device links, the MQTT connections, supervised tasks,
the InfluxDB writer); the layer that owns a link decides when to retry, this only says how
long to wait.
"""

from __future__ import annotations

import random


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

    def exhaust(self) -> None:
        """Every delay from now on is the longest, until `reset()`: for a failure that trying
        again soon will not mend."""
        self.failures = max(self.failures, 32)

    def reset(self) -> None:
        self.failures = 0
