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


def raise_if_cancelling() -> None:
    """Honour a cancellation that library code swallowed.

    asyncio.wait_for on Python 3.11 (inside pymodbus and aiomqtt) can eat a CancelledError
    when its inner future completes at the same moment; the request to cancel is still
    counted on the task. Loops that run forever call this each time round, or shutdown
    would wait for them forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
