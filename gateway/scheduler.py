"""The poll scheduler: each job runs at its own interval, phases staggered, supervised.

Jobs that wait on the same thing (a connection, a serial bus: their `lane`) run one after
another in one task, and those of a lane that fall due together run in one wake-up: fifty
units behind one Modbus TCP gateway cost one timer a second, not fifty. Lanes are staggered
over their interval so that two connections are not polled at the same instant.

A job that raises is logged and counted, and runs again at its next tick: one bad poll
never ends the loop. A tick that is missed because a poll ran long is skipped, not queued.
"""

from __future__ import annotations

import asyncio
import heapq
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
    # What the job waits on (its link): jobs of one lane run one after another, never at
    # once. None: a lane of its own.
    lane: object = None
    runs: int = 0
    errors: int = 0
    skipped: int = 0
    _done: asyncio.Event | None = field(default=None, repr=False)

    @property
    def done(self) -> asyncio.Event:
        """Set after the job's next run (made when asked for: nobody waits on most runs)."""
        if self._done is None:
            self._done = asyncio.Event()
        return self._done

    def ran(self) -> None:
        self.runs += 1
        if self._done is not None:
            self._done.set()
            self._done = None


def lanes(jobs: Sequence[PollJob]) -> list[list[PollJob]]:
    """The jobs grouped by lane, in the order each lane first appears."""
    grouped: dict[object, list[PollJob]] = {}
    for job in jobs:
        grouped.setdefault(job if job.lane is None else job.lane, []).append(job)
    return list(grouped.values())


def stagger(jobs: Sequence[PollJob]) -> None:
    """Spread lanes over their interval so that no two connections are polled at the same
    instant; the jobs of one lane share its phase, and run back to back."""
    groups = lanes(jobs)
    n = len(groups)
    for i, group in enumerate(groups):
        for job in group:
            job.phase_s = job.interval_s * i / n


# Told after every run of a job: the job and how long the run took (s).
RunObserver = Callable[[PollJob, float], None]


async def run_lane(jobs: Sequence[PollJob], clock: Clock, on_run: RunObserver | None = None) -> None:
    """Run the jobs of one lane forever (until cancelled): one sleep until the next is due,
    then every job due by then, one after another."""
    start = clock.monotonic()
    heap = [(start + job.phase_s, i, job) for i, job in enumerate(jobs)]
    heapq.heapify(heap)
    while True:
        raise_if_cancelling()
        await clock.sleep_until(heap[0][0])
        now = clock.monotonic()
        due = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        for next_at, i, job in due:
            try:
                await job.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                job.errors += 1
                log.exception("poll job %s failed; it runs again at its next tick", job.name)
            ended = clock.monotonic()
            if on_run is not None:
                on_run(job, ended - now)
            job.ran()
            next_at += job.interval_s
            if next_at <= ended:
                missed = int((ended - next_at) // job.interval_s) + 1
                job.skipped += missed
                next_at += missed * job.interval_s
            heapq.heappush(heap, (next_at, i, job))
            now = ended


async def run_job(job: PollJob, clock: Clock, on_run: RunObserver | None = None) -> None:
    """Run one job forever (until cancelled)."""
    await run_lane([job], clock, on_run)


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
    """Run every job, a task per lane."""
    async with asyncio.TaskGroup() as tg:
        for group in lanes(jobs):
            tg.create_task(run_lane(group, clock, on_run), name=f"poll:{group[0].name}")
