"""The asset register: for each device, when its warranty ends and when it reaches its rated
life. Pure dates, from its commissioning day.

The promise: equipment is under warranty for 12 months from commissioning, or for the
maker's warranty where that is longer; in warranty repairs and parts are free, after it the
labour stays free and parts are charged at cost. The main equipment is rated for six years of
normal use. `warranty_until` is the last day in warranty; `end_of_life` the day the rated
life is reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from .sla import PROMISE, ServicePolicy, add_months

RATED_LIFE_YEARS = 6  # "the main equipment can be used for six years under normal use"


@dataclass(frozen=True, slots=True)
class Asset:
    device_id: str
    kind: str
    commissioned_on: date | None
    warranty_until: date | None  # the last day in warranty
    end_of_life: date | None  # the day its rated life is reached

    def in_warranty(self, on: date) -> bool | None:
        return None if self.warranty_until is None else on <= self.warranty_until

    def parts_billable(self, on: date) -> bool | None:
        """Parts are charged at cost once the warranty is over (labour stays free)."""
        inside = self.in_warranty(on)
        return None if inside is None else not inside


def asset(
    device_id: str,
    kind: str,
    commissioned_on: date | None,
    *,
    maker_warranty_months: int | None = None,
    rated_life_years: int = RATED_LIFE_YEARS,
    policy: ServicePolicy = PROMISE,
) -> Asset:
    """One device's dates; none of them without a commissioning day."""
    if commissioned_on is None:
        return Asset(device_id, kind, None, None, None)
    months = max(policy.warranty_months, maker_warranty_months or 0)
    return Asset(
        device_id,
        kind,
        commissioned_on,
        add_months(commissioned_on, months) - timedelta(days=1),
        add_months(commissioned_on, 12 * rated_life_years),
    )


def warranty_ending(assets: Iterable[Asset], today: date, days: int) -> list[Asset]:
    """Those whose warranty ends within `days` from today (today included), soonest first."""
    last = today + timedelta(days=days)
    due = [a for a in assets if a.warranty_until is not None and today <= a.warranty_until <= last]
    return sorted(due, key=lambda a: (a.warranty_until, a.device_id))


def near_end_of_life(assets: Iterable[Asset], today: date, months: int) -> list[Asset]:
    """Those that reach their rated life within `months` from today, or have reached it."""
    by = add_months(today, months)
    due = [a for a in assets if a.end_of_life is not None and a.end_of_life <= by]
    return sorted(due, key=lambda a: (a.end_of_life, a.device_id))
