"""The maintenance plan a site is owed, computed from its commissioning day. Pure dates.

The promise: a routine check every month for the first three months of operation; regular
checks for the rest of the first year; and a visit within the ten days before the warranty
expires, with an offer to renew. Each visit has a window (first and last day, both
included); a visit is `upcoming` before its window, `due` inside it, `overdue` after it, and
`done` once a visit inside its window is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from .sla import add_months

MONTHLY_VISITS = 3  # the first three months of operation
PRE_EXPIRY_DAYS = 10  # the visit within the ten days before the warranty expires
one_day = timedelta(days=1)

VisitKind = Literal["monthly", "regular", "pre_expiry"]


class VisitState(StrEnum):
    UPCOMING = "upcoming"
    DUE = "due"
    OVERDUE = "overdue"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Visit:
    n: int  # 1, 2, ... in the order of the plan
    kind: VisitKind
    opens: date  # the window's first day
    closes: date  # its last day

    def state(self, today: date, done_on: Iterable[date] = ()) -> VisitState:
        if any(self.opens <= d <= self.closes for d in done_on):
            return VisitState.DONE
        if today < self.opens:
            return VisitState.UPCOMING
        return VisitState.DUE if today <= self.closes else VisitState.OVERDUE


def plan(commissioned_on: date, warranty_until: date, regular_months: int = 3) -> list[Visit]:
    """Every visit owed within the warranty: the monthly ones, the regular ones after them up
    to the pre-expiry window (the last one shortened to end before it), and the pre-expiry
    visit in the warranty's last ten days."""
    if regular_months < 1:
        raise ValueError("regular visits: at least one month apart")
    pre = Visit(0, "pre_expiry", warranty_until - timedelta(days=PRE_EXPIRY_DAYS - 1), warranty_until)
    windows: list[tuple[VisitKind, date, date]] = []
    for k in range(MONTHLY_VISITS):
        windows.append(("monthly", add_months(commissioned_on, k), add_months(commissioned_on, k + 1) - one_day))
    start = MONTHLY_VISITS
    while (opens := add_months(commissioned_on, start)) < pre.opens:
        closes = min(add_months(commissioned_on, start + regular_months) - one_day, pre.opens - one_day)
        windows.append(("regular", opens, closes))
        start += regular_months
    # A warranty shorter than the monthly checks: none of them runs into the last ten days.
    windows = [(k, o, min(c, pre.opens - one_day)) for k, o, c in windows if o < pre.opens]
    visits = [Visit(i, k, o, c) for i, (k, o, c) in enumerate(windows, start=1)]
    return [*visits, Visit(len(visits) + 1, "pre_expiry", pre.opens, pre.closes)]
