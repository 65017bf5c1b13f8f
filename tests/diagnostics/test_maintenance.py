"""The maintenance plan, from tables: three monthly checks, regular ones to the end of the
first year, and the visit in the warranty's last ten days; windows across month ends and leap
years; and each visit's state on a given day."""

from __future__ import annotations

from datetime import date

import pytest

from alarmgw.diagnostics.assets import asset
from alarmgw.diagnostics.maintenance import Visit, VisitState, plan


def windows(commissioned: date, regular_months: int = 3, maker: int | None = None) -> list[tuple[str, str, str]]:
    until = asset("site", "host", commissioned, maker_warranty_months=maker).warranty_until
    assert until is not None
    return [(v.kind, v.opens.isoformat(), v.closes.isoformat()) for v in plan(commissioned, until, regular_months)]


def test_a_site_commissioned_mid_february_quarterly() -> None:
    assert windows(date(2026, 2, 16)) == [
        ("monthly", "2026-02-16", "2026-03-15"),
        ("monthly", "2026-03-16", "2026-04-15"),
        ("monthly", "2026-04-16", "2026-05-15"),
        ("regular", "2026-05-16", "2026-08-15"),
        ("regular", "2026-08-16", "2026-11-15"),
        ("regular", "2026-11-16", "2027-02-05"),  # shortened: ends before the pre-expiry window
        ("pre_expiry", "2027-02-06", "2027-02-15"),  # the warranty's last ten days
    ]


def test_leap_day_and_month_ends() -> None:
    assert windows(date(2028, 1, 31), regular_months=6) == [
        ("monthly", "2028-01-31", "2028-02-28"),  # 31 Jan + 1 month = 29 Feb (leap year), the day before
        ("monthly", "2028-02-29", "2028-03-30"),
        ("monthly", "2028-03-31", "2028-04-29"),
        ("regular", "2028-04-30", "2028-10-30"),
        ("regular", "2028-10-31", "2029-01-20"),
        ("pre_expiry", "2029-01-21", "2029-01-30"),
    ]


def test_monthly_regular_visits_and_a_makers_longer_warranty() -> None:
    got = windows(date(2026, 6, 1), regular_months=1, maker=13)
    assert [k for k, _, _ in got] == ["monthly"] * 3 + ["regular"] * 10 + ["pre_expiry"]
    assert got[-1] == ("pre_expiry", "2027-06-21", "2027-06-30")


def test_regular_visits_must_be_apart() -> None:
    with pytest.raises(ValueError, match="at least one month"):
        plan(date(2026, 1, 1), date(2026, 12, 31), regular_months=0)


V = Visit(1, "monthly", date(2026, 3, 1), date(2026, 3, 31))


@pytest.mark.parametrize(
    ("today", "done", "state"),
    [
        (date(2026, 2, 28), [], VisitState.UPCOMING),
        (date(2026, 3, 1), [], VisitState.DUE),
        (date(2026, 3, 31), [], VisitState.DUE),
        (date(2026, 4, 1), [], VisitState.OVERDUE),
        (date(2026, 4, 1), [date(2026, 3, 31)], VisitState.DONE),
        (date(2026, 4, 1), [date(2026, 2, 27)], VisitState.OVERDUE),  # a visit before the window is another one's
        (date(2026, 3, 5), [date(2026, 3, 5)], VisitState.DONE),
    ],
)
def test_state(today: date, done: list[date], state: VisitState) -> None:
    assert V.state(today, done) == state
