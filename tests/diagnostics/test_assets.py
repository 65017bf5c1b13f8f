"""The asset register's dates, from tables: warranty 12 months or the maker's longer one, the
last day in warranty, parts billable after it, the rated life, across month ends and leap
years."""

from __future__ import annotations

from datetime import date

import pytest

from alarmgw.diagnostics.assets import asset, near_end_of_life, warranty_ending

CASES = [
    # commissioned, maker's months, rated years -> warranty_until (last day in), end_of_life
    ("plain", date(2026, 2, 16), None, 6, date(2027, 2, 15), date(2032, 2, 16)),
    (
        "the maker's shorter warranty does not shorten the promise",
        date(2026, 2, 16),
        6,
        6,
        date(2027, 2, 15),
        date(2032, 2, 16),
    ),
    ("the maker's longer warranty counts", date(2026, 2, 16), 36, 6, date(2029, 2, 15), date(2032, 2, 16)),
    ("31 January: a year on is 31 January", date(2026, 1, 31), None, 6, date(2027, 1, 30), date(2032, 1, 31)),
    ("29 February: a year on is 28 February", date(2028, 2, 29), None, 6, date(2029, 2, 27), date(2034, 2, 28)),
    (
        "29 February, 4 years' warranty: 29 February again",
        date(2028, 2, 29),
        48,
        6,
        date(2032, 2, 28),
        date(2034, 2, 28),
    ),
    ("1 March in a leap year", date(2028, 3, 1), None, 6, date(2029, 2, 28), date(2034, 3, 1)),
    ("a detector rated for 10 years", date(2026, 6, 1), None, 10, date(2027, 5, 31), date(2036, 6, 1)),
]


@pytest.mark.parametrize(("case", "commissioned", "maker", "years", "until", "eol"), CASES, ids=[c[0] for c in CASES])
def test_dates(case: str, commissioned: date, maker: int | None, years: int, until: date, eol: date) -> None:
    a = asset("d1", "smoke_detector", commissioned, maker_warranty_months=maker, rated_life_years=years)
    assert (a.warranty_until, a.end_of_life) == (until, eol)


def test_in_warranty_to_its_last_day_and_parts_billable_after() -> None:
    a = asset("d1", "smoke_detector", date(2026, 2, 16))
    assert [a.in_warranty(d) for d in (date(2026, 2, 16), date(2027, 2, 15), date(2027, 2, 16))] == [True, True, False]
    assert [a.parts_billable(d) for d in (date(2027, 2, 15), date(2027, 2, 16))] == [False, True]


def test_without_a_commissioning_day_nothing_is_known() -> None:
    a = asset("d1", "pir_detector", None)
    assert (a.warranty_until, a.end_of_life, a.in_warranty(date(2026, 1, 1)), a.parts_billable(date(2026, 1, 1))) == (
        None,
        None,
        None,
        None,
    )


def test_what_is_due() -> None:
    assets = [
        asset("ends-today", "host", date(2025, 12, 2)),  # last day in warranty: 2026-12-01
        asset("ends-in-30", "host", date(2026, 1, 1)),  # 2026-12-31
        asset("ends-in-31", "host", date(2026, 1, 2)),  # 2027-01-01
        asset("ended", "host", date(2025, 11, 1)),
        asset("unknown", "host", None),
        asset("old", "smoke_detector", date(2020, 12, 1)),  # rated life reached 2026-12-01
        asset("nearly", "smoke_detector", date(2021, 5, 31)),  # 2027-05-31
    ]
    today = date(2026, 12, 1)
    assert [a.device_id for a in warranty_ending(assets, today, 30)] == ["ends-today", "ends-in-30"]
    assert [a.device_id for a in near_end_of_life(assets, today, 0)] == ["old"]
    assert [a.device_id for a in near_end_of_life(assets, today, 6)] == ["old", "nearly"]
