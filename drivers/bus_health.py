"""How healthy a link is: the share of its recent transactions that failed."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

# How many recent transactions the rate is taken over, and how many it needs before it
# says anything: small enough to notice a loose termination within a few polls.
ERROR_WINDOW = 50
ERROR_WINDOW_MIN = 8


class ErrorWindow:
    """A garbled frame counts at once, and proves its peer alive. An unanswered try counts
    only once the same peer answers again: a peer that never answers is dead, and must not
    make a healthy line look noisy (its silence is its own comm loss). And of a silence that
    ends, at most `max_unproven` tries count (one poll's worth): a unit that was off for ten
    minutes and is back was its own outage, not ten minutes of a noisy line."""

    def __init__(self, size: int = ERROR_WINDOW, minimum: int = ERROR_WINDOW_MIN, max_unproven: int = 2) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)
        self._minimum = minimum
        self._max_unproven = max_unproven
        self._unproven: dict[Hashable, int] = {}

    def _prove(self, peer: Hashable) -> None:
        self._outcomes.extend([False] * min(self._unproven.pop(peer, 0), self._max_unproven))

    def answered(self, peer: Hashable = None) -> None:
        self._prove(peer)
        self._outcomes.append(True)

    def unanswered(self, peer: Hashable = None) -> None:
        self._unproven[peer] = self._unproven.get(peer, 0) + 1

    def garbled(self, peer: Hashable = None) -> None:
        self._prove(peer)
        self._outcomes.append(False)

    def rate(self) -> float | None:
        if len(self._outcomes) < self._minimum:
            return None
        return self._outcomes.count(False) / len(self._outcomes)
