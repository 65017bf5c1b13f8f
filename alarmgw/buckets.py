"""Token buckets per client: the rate bound of every door that takes requests from the
network (the HTTP fronts, the SIA DC-09 receiver). Pure: times are handed in by the caller.
No web framework here, so a door that is not HTTP does not load one."""

from __future__ import annotations

import contextlib
import ipaddress
from collections import OrderedDict

MAX_CLIENTS = 4096  # addresses a rate limit remembers; past it the longest quiet is forgotten


def client_key(address: str) -> str:
    """Whom a rate limit counts: an IPv4 address, or an IPv6 address's /64 (one host's
    share of a network, which hands out the rest of it freely)."""
    if ":" not in address:
        return address
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_network(f"{address.partition('%')[0]}/64", strict=False))
    return address


class TokenBuckets:
    """Requests per client: a bucket of `burst` tokens each, refilled at `rate` a second; a
    request takes one. A refused request takes one too, down to a debt of `burst`: a client
    that does not wait is told to wait longer, each of its requests a turn later than the
    last, so what it sends over many connections comes back one by one, not all at once.
    At most `max_clients` buckets are kept, the least recently used going first (a sender
    with more addresses than that is bounded by the connection cap instead)."""

    def __init__(self, rate: float, burst: float, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def take(self, client: str, now: float) -> float:
        """0 when `client` may make a request at `now`, else the seconds it must wait."""
        tokens, then = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[client] = (max(-self.burst, tokens - 1), now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)
