"""Task ownership helpers shared by the gateway and the simulator."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel a task this code owns and wait until it has really stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
