"""The poll scheduler on a manual clock: intervals, stagger, supervision, shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from alarmgw.backoff import Backoff
from alarmgw.clock import ManualClock
from alarmgw.gateway.scheduler import PollJob, Supervised, run_job, run_jobs, stagger


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_each_job_runs_at_its_own_interval() -> None:
    clock = ManualClock()
    runs: list[tuple[str, float]] = []

    def job(name: str, interval: float) -> PollJob:
        async def run() -> None:
            runs.append((name, clock.monotonic()))

        return PollJob(name, interval, run)

    jobs = [job("fast", 2.0), job("slow", 5.0)]
    task = asyncio.create_task(run_jobs(jobs, clock))
    await settle()
    for _ in range(10):
        clock.advance(1.0)
        await settle()
    await stop(task)
    assert [t for n, t in runs if n == "fast"] == [0, 2, 4, 6, 8, 10]
    assert [t for n, t in runs if n == "slow"] == [0, 5, 10]


def test_stagger_spreads_phases_over_the_interval() -> None:
    jobs = [PollJob(str(i), 10.0, settle) for i in range(4)]
    stagger(jobs)
    assert [j.phase_s for j in jobs] == [0.0, 2.5, 5.0, 7.5]


async def test_a_failing_poll_does_not_stop_the_loop() -> None:
    clock = ManualClock()
    calls = 0

    async def run() -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise RuntimeError("device said something odd")

    job = PollJob("flaky", 1.0, run)
    task = asyncio.create_task(run_job(job, clock))
    for _ in range(6):
        await settle()
        clock.advance(1.0)
    await settle()
    await stop(task)
    assert calls == 7 and job.errors == 4 and job.runs == 7


async def test_missed_ticks_are_skipped_not_queued() -> None:
    clock = ManualClock()

    async def noop() -> None:
        pass

    job = PollJob("slow", 1.0, noop)
    task = asyncio.create_task(run_job(job, clock))
    await settle()
    clock.advance(5.5)  # the box was stalled for five intervals
    await settle()
    clock.advance(0.5)
    await settle()
    await stop(task)
    assert job.runs == 3 and job.skipped == 4


async def test_shutdown_holds_even_when_a_poll_swallows_the_cancel() -> None:
    """asyncio.wait_for on 3.11 can eat a CancelledError; the loop must still stop."""
    clock = ManualClock()
    entered = asyncio.Event()

    async def stubborn() -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    job = PollJob("stubborn", 1.0, stubborn)
    task = asyncio.create_task(run_job(job, clock))
    await entered.wait()
    task.cancel()
    await asyncio.wait({task}, timeout=2)  # does not pass its own cancellation on to the task
    assert task.cancelled()


async def test_a_failing_long_running_task_is_started_again_after_a_backoff() -> None:
    clock = ManualClock()
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(clock.monotonic())
        if len(starts) <= 2:
            raise RuntimeError("broken output")
        if len(starts) == 3:
            return  # ends by itself: also started again
        await asyncio.Event().wait()  # the fourth start runs for good

    sup = Supervised("flaky", flaky, clock, Backoff(1.0, 60.0, jitter=0.0))
    task = asyncio.create_task(sup())
    await settle()
    for _ in range(20):
        clock.advance(1.0)
        await settle()
    assert starts == [0, 1, 3, 7] and sup.restarts == 3
    await stop(task)
    assert task.cancelled()


async def test_jobs_of_one_lane_due_together_run_back_to_back_on_one_timer() -> None:
    """Fifty units behind one connection: one sleeper, one wake-up a tick, the polls in turn;
    a second lane keeps its own phase."""
    clock = ManualClock()
    runs: list[tuple[str, float]] = []
    link, other = object(), object()

    def job(name: str, lane: object) -> PollJob:
        async def run() -> None:
            runs.append((name, clock.monotonic()))
            await asyncio.sleep(0)  # a poll awaits its answer: the lane must wait for it

        return PollJob(name, 1.0, run, lane=lane)

    jobs = [job(f"unit-{i}", link) for i in range(50)] + [job("panel", other)]
    stagger(jobs)
    assert {j.phase_s for j in jobs[:50]} == {0.0} and jobs[50].phase_s == 0.5
    task = asyncio.create_task(run_jobs(jobs, clock))
    for _ in range(20):
        await settle()
    assert clock.pending_sleepers == 2  # one per lane, not one per job
    assert [n for n, _ in runs] == [f"unit-{i}" for i in range(50)]
    clock.advance(0.5)
    await settle()
    clock.advance(0.5)
    for _ in range(20):
        await settle()
    await stop(task)
    assert [n for n, t in runs if t == 0.5] == ["panel"]
    assert [n for n, t in runs if t == 1.0] == [f"unit-{i}" for i in range(50)]
    assert all(j.runs == 2 for j in jobs[:50])


def test_lanes_are_staggered_not_jobs() -> None:
    a, b = object(), object()
    jobs = [PollJob(name, 10.0, settle, lane=lane) for name, lane in [("a1", a), ("b", b), ("a2", a)]]
    stagger(jobs)
    assert [j.phase_s for j in jobs] == [0.0, 5.0, 0.0]
