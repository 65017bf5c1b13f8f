"""SLA arithmetic and the ticket lifecycle, with explicit times across hours and days."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest

from alarmgw.diagnostics.sla import ClockState, Stamps, add_months, clocks, in_warranty
from alarmgw.diagnostics.tickets import TRANSITIONS, IllegalTransition, Ticket, TicketState

T0 = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # late evening: clocks run across midnight
H = timedelta(hours=1)
D = timedelta(days=1)


def stamps(ack: timedelta | None = None, arrive: timedelta | None = None, resolve: timedelta | None = None) -> Stamps:
    return Stamps(T0, ack and T0 + ack, arrive and T0 + arrive, resolve and T0 + resolve)


def test_fresh_ticket_city_equipment() -> None:
    response, arrival, repair = clocks(stamps(), "city", "equipment", T0 + timedelta(minutes=10))
    assert response.due == T0 + H and response.state is ClockState.RUNNING and response.remaining_s == 50 * 60
    assert arrival.due == T0 + 2 * H
    # before arrival the repair deadline is the latest possible one: arrival due + 3 days
    assert repair.due == T0 + 2 * H + 3 * D and repair.provisional


def test_suburb_arrival_is_twelve_hours() -> None:
    _, arrival, repair = clocks(stamps(), "suburb", "accessory", T0)
    assert arrival.due == T0 + 12 * H
    assert repair.due == T0 + 12 * H + D


def test_response_met_stops_the_clock() -> None:
    response, _, _ = clocks(stamps(ack=timedelta(minutes=59)), "city", "equipment", T0 + 5 * H)
    assert response.state is ClockState.MET
    assert response.remaining_s == 60  # a minute to spare, frozen at the stop


def test_response_breached_while_running_and_when_late() -> None:
    running, _, _ = clocks(stamps(), "city", "equipment", T0 + H + timedelta(seconds=1))
    assert running.state is ClockState.BREACHED and running.remaining_s == -1
    late, _, _ = clocks(stamps(ack=timedelta(minutes=61)), "city", "equipment", T0 + 3 * H)
    assert late.state is ClockState.BREACHED and late.remaining_s == -60


def test_repair_runs_from_arrival() -> None:
    arrive = timedelta(hours=1, minutes=30)
    _, arrival, repair = clocks(stamps(ack=timedelta(minutes=5), arrive=arrive), "city", "accessory", T0 + 2 * D)
    assert arrival.state is ClockState.MET
    assert repair.due == T0 + arrive + D and not repair.provisional
    assert repair.state is ClockState.BREACHED  # two days later and still not fixed


def test_equipment_repair_three_days_after_arrival_met() -> None:
    arrive = 1.5 * H
    fixed = arrive + 3 * D - timedelta(minutes=1)
    _, _, repair = clocks(stamps(ack=H / 2, arrive=arrive, resolve=fixed), "city", "equipment", T0 + 10 * D)
    assert repair.state is ClockState.MET and repair.remaining_s == 60


def test_fixed_remotely_needs_no_arrival() -> None:
    _, arrival, repair = clocks(stamps(ack=H / 4, resolve=H / 2), "suburb", "accessory", T0 + D)
    assert arrival.state is ClockState.NOT_NEEDED
    assert repair.state is ClockState.MET


@pytest.mark.parametrize(
    ("commissioned", "on", "expected"),
    [
        (date(2026, 1, 31), date(2027, 1, 30), True),
        (date(2026, 1, 31), date(2027, 1, 31), False),
        (date(2024, 2, 29), date(2025, 2, 27), True),
        (date(2024, 2, 29), date(2025, 2, 28), False),  # no 29 Feb in 2025: the month's end
        (None, date(2026, 1, 1), None),
    ],
)
def test_warranty_twelve_months(commissioned: date | None, on: date, expected: bool | None) -> None:
    assert in_warranty(commissioned, on) is expected


def test_add_months_clamps() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)


def ticket() -> Ticket:
    return Ticket(
        None,
        "site",
        "smoke-1",
        "smoke_detector",
        "low_battery",
        "low battery",
        "hall",
        "city",
        "accessory",
        "low",
        T0,
        T0,
    )


def test_lifecycle_follows_the_table_and_stamps_each_step() -> None:
    t = ticket()
    path = [
        TicketState.ACKNOWLEDGED,
        TicketState.DISPATCHED,
        TicketState.ON_SITE,
        TicketState.RESOLVED,
        TicketState.CLOSED,
    ]
    for i, state in enumerate(path, 1):
        t = t.moved(state, T0 + i * H)
    assert (t.acknowledged_at, t.dispatched_at, t.on_site_at, t.resolved_at, t.closed_at) == tuple(
        T0 + i * H for i in range(1, 6)
    )
    assert t.version == 6


@pytest.mark.parametrize("state", list(TicketState))
def test_every_illegal_move_is_refused(state: TicketState) -> None:
    for to in TicketState:
        if to in TRANSITIONS[state]:
            continue
        t = dataclasses.replace(ticket(), state=state)
        with pytest.raises(IllegalTransition, match=f"cannot go from {state} to {to}"):
            t.moved(to, T0)


def test_restore_and_recur_keep_one_episode() -> None:
    t = ticket().restored(T0 + H)
    assert not t.fault_active and t.restored_at == T0 + H and t.state is TicketState.OPEN
    t = t.recurred()
    assert t.fault_active and t.restored_at is None and t.occurrences == 2
