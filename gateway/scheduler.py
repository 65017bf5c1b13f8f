"""The poll scheduler: each job runs at its own interval, phases staggered, supervised.

A job that raises is logged and counted, and runs again at its next tick: one bad poll
never ends the loop. A tick that is missed because a poll ran long is skipped, not queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from alarmgw.backoff import Backoff
from alarmgw.clock import Clock
from alarmgw.tasks import raise_if_cancelling

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PollJob:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]
    phase_s: float = 0.0
    runs: int = 0
    errors: int = 0
    skipped: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set after every run


def stagger(jobs: Sequence[PollJob]) -> None:
    """Spread jobs over their interval so that no two hosts are polled at the same instant."""
    n = len(jobs)
    for i, job in enumerate(jobs):
        job.phase_s = job.interval_s * i / n if n else 0.0


# Told after every run of a job: the job and how long the run took (s).
RunObserver = Callable[[PollJob, float], None]


async def run_job(job: PollJob, clock: Clock, on_run: RunObserver | None = None) -> None:
    """Run one job forever (until cancelled)."""
    next_at = clock.monotonic() + job.phase_s
    while True:
        raise_if_cancelling()
        await clock.sleep_until(next_at)
        started = clock.monotonic()
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            job.errors += 1
            log.exception("poll job %s failed; it runs again at its next tick", job.name)
        if on_run is not None:
            on_run(job, clock.monotonic() - started)
        job.runs += 1
        job.done.set()
        job.done = asyncio.Event()
        next_at += job.interval_s
        now = clock.monotonic()
        if next_at <= now:
            missed = int((now - next_at) // job.interval_s) + 1
            job.skipped += missed
            next_at += missed * job.interval_s


class Supervised:
    """A task that should run as long as the gateway does (uplink, remote desk, HTTP server,
    telemetry): if it fails, or ends, it is logged and started again after a backoff (reset
    once it has run for a minute), so a fault in one output never stops polling."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]], clock: Clock, backoff: Backoff | None = None):
        self.name = name
        self.run = run
        self.clock = clock
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.restarts = 0

    async def __call__(self) -> None:
        while True:
            raise_if_cancelling()
            started = self.clock.monotonic()
            try:
                await self.run()
                log.error("%s stopped by itself; starting it again", self.name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; starting it again", self.name)
            self.restarts += 1
            if self.clock.monotonic() - started >= 60.0:
                self.backoff.reset()
            await self.clock.sleep_until(self.clock.monotonic() + self.backoff.next_delay())


async def run_jobs(jobs: Sequence[PollJob], clock: Clock, on_run: RunObserver | None = None) -> None:
    async with asyncio.TaskGroup() as tg:
        for job in jobs:
            tg.create_task(run_job(job, clock, on_run), name=f"poll:{job.name}")
