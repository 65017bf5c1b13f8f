"""A small in-process event bus: bounded subscriber queues, and listeners called in line.

Publishing never blocks the poll path: a subscriber that falls behind loses its oldest
events and is told how many through `dropped`; a listener that raises is logged and the
others still hear the event. Durable delivery is the store's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Subscription(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.dropped = 0

    async def get(self) -> T:
        return await self.queue.get()

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self.queue.get()


class Bus(Generic[T]):
    def __init__(self) -> None:
        self._subs: list[Subscription[T]] = []
        self._listeners: list[Callable[[T], None]] = []

    def listen(self, listener: Callable[[T], None]) -> None:
        """Call `listener` with every event, in line: for cheap work that must not lag
        (counting, queueing a message); it must not block."""
        self._listeners.append(listener)

    def publish(self, item: T) -> None:
        for listener in self._listeners:
            try:
                listener(item)
            except Exception:
                log.exception("a listener failed on %s", type(item).__name__)
        for sub in self._subs:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(item)

    @asynccontextmanager
    async def subscribe(self, maxsize: int = 1000) -> AsyncIterator[Subscription[T]]:
        sub: Subscription[T] = Subscription(maxsize)
        self._subs.append(sub)
        try:
            yield sub
        finally:
            self._subs.remove(sub)
