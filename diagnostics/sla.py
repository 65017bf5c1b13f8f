"""Service clocks of the after-sales promise, as pure arithmetic over a ticket's stamps.

Every clock runs from detection (`opened_at`) except repair, which runs from arrival on
site: equipment (detector, repeater, host, controller) 3 days, accessories 1 day. Until the
engineer arrives, the repair due time is provisional: arrival due + repair allowance.
The fourth clock, downtime, runs only on a ticket whose device went away during its repair:
from the last reading before it went away to the first reading after it is back, under one
hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Literal

Area = Literal["city", "suburb"]
RepairClass = Literal["equipment", "accessory"]


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """The integrator's written promise (shared/seed/after-sales-service-promise.txt)."""

    response: timedelta = timedelta(hours=1)
    arrival_city: timedelta = timedelta(hours=2)
    arrival_suburb: timedelta = timedelta(hours=12)
    repair_equipment: timedelta = timedelta(days=3)
    repair_accessory: timedelta = timedelta(days=1)
    warranty_months: int = 12
    downtime: timedelta = timedelta(hours=1)  # the system stopped while a component is replaced

    def arrival(self, area: Area) -> timedelta:
        return self.arrival_city if area == "city" else self.arrival_suburb

    def repair(self, repair_class: RepairClass) -> timedelta:
        return self.repair_equipment if repair_class == "equipment" else self.repair_accessory


# The integrator's promise as written; a site could be given another policy, not a weaker one.
PROMISE = ServicePolicy()


# Every clock a ticket may show, in the order they run.
CLOCK_NAMES = ("response", "arrival", "repair", "downtime")


class ClockState(StrEnum):
    RUNNING = "running"  # not stopped, not yet due
    BREACHED = "breached"  # past due and not stopped, or stopped late
    MET = "met"  # stopped on time
    NOT_NEEDED = "not_needed"  # e.g. arrival, when the fault was fixed remotely


@dataclass(frozen=True, slots=True)
class ClockStatus:
    name: str  # response | arrival | repair | downtime
    due: datetime
    stopped_at: datetime | None
    state: ClockState
    remaining_s: float  # at `now` while running; at the stop once stopped; negative = late
    provisional: bool = False  # due time will move once an earlier stamp is known


@dataclass(frozen=True, slots=True)
class Stamps:
    """The stamps of a ticket that the clocks need."""

    opened_at: datetime
    acknowledged_at: datetime | None
    on_site_at: datetime | None
    resolved_at: datetime | None


def _clock(name: str, due: datetime, stop: datetime | None, now: datetime, provisional: bool = False) -> ClockStatus:
    if stop is None:
        left = (due - now).total_seconds()
        return ClockStatus(name, due, None, ClockState.RUNNING if left >= 0 else ClockState.BREACHED, left, provisional)
    left = (due - stop).total_seconds()
    return ClockStatus(name, due, stop, ClockState.MET if left >= 0 else ClockState.BREACHED, left, provisional)


def clocks(
    stamps: Stamps, area: Area, repair_class: RepairClass, now: datetime, policy: ServicePolicy = PROMISE
) -> tuple[ClockStatus, ClockStatus, ClockStatus]:
    """Response, arrival and repair clocks of one ticket as seen at `now`."""
    response = _clock("response", stamps.opened_at + policy.response, stamps.acknowledged_at, now)
    arrival_due = stamps.opened_at + policy.arrival(area)
    if stamps.on_site_at is None and stamps.resolved_at is not None:
        arrival = ClockStatus("arrival", arrival_due, stamps.resolved_at, ClockState.NOT_NEEDED, 0.0)
        repair_due = stamps.opened_at + policy.repair(repair_class)
        repair = _clock("repair", repair_due, stamps.resolved_at, now)
        return response, arrival, repair
    arrival = _clock("arrival", arrival_due, stamps.on_site_at, now)
    base = stamps.on_site_at or arrival_due
    repair = _clock("repair", base + policy.repair(repair_class), stamps.resolved_at, now, stamps.on_site_at is None)
    return response, arrival, repair


def downtime_clock(
    down_since: datetime | None, back_at: datetime | None, now: datetime, policy: ServicePolicy = PROMISE
) -> ClockStatus | None:
    """The downtime clock of a component that went away at `down_since` (None: it never did)
    and is back at `back_at`; due one hour (the policy's) after it went away."""
    if down_since is None:
        return None
    return _clock("downtime", down_since + policy.downtime, back_at, now)


def add_months(day: date, months: int) -> date:
    """Same day of month `months` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, d))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def in_warranty(commissioned_on: date | None, on: date, policy: ServicePolicy = PROMISE) -> bool | None:
    """Parts and labour free while True; after it labour is free and parts are charged."""
    if commissioned_on is None:
        return None
    return on < add_months(commissioned_on, policy.warranty_months)


def share_report(decided: Iterable[tuple[str, Iterable[ClockStatus]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per fault kind and clock: how many clocks were met, breached, still running or not
    needed, and the share met among those decided (met / (met + breached))."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for fault, statuses in decided:
        for c in statuses:
            cell = out.setdefault(fault, {}).setdefault(
                c.name, {"met": 0, "breached": 0, "running": 0, "not_needed": 0, "share_met": float("nan")}
            )
            cell[c.state.value] += 1
    for clocks_ in out.values():
        for cell in clocks_.values():
            decided_n = cell["met"] + cell["breached"]
            cell["share_met"] = cell["met"] / decided_n if decided_n else float("nan")
    return out
