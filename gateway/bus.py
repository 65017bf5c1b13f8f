"""A small in-process event bus with bounded subscriber queues.

Publishing never blocks the poll path: a subscriber that falls behind loses its oldest
events and is told how many through `dropped`. Durable delivery is the store's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


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

    def publish(self, item: T) -> None:
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
