"""Downtime while a component is repaired: from the last reading of the ticket's device
before it went away to the first after it is back, against the promise's one hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.sla import ClockState, downtime_clock
from alarmgw.diagnostics.tickets import Ticket, TicketState, ticket_json
from alarmgw.gateway.downtime import heard_at
from alarmgw.model import Reading
from tests.conftest import Harness

T0 = datetime(2028, 2, 29, 23, 30, tzinfo=UTC)  # a leap day, half an hour before midnight
M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"battery_v": 3.0}, T0),
        ({"battery_v": 3.0, "link_age_s": 45}, T0 - timedelta(seconds=45)),
        ({"battery_v": 3.0, "link_age_s": 0}, T0),
        ({"link_lost": True}, None),
        ({"unmonitored": True}, None),
        ({"slot_refused": True}, None),
        ({"present": False, "link_age_s": 3}, None),
        ({}, None),
        ({"link_age_s": True}, T0),  # a flag is not an age
    ],
)
def test_a_reading_says_when_its_device_was_last_heard(values: dict[str, object], expected: object) -> None:
    assert heard_at(Reading("pir-1", T0, values)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("down", "back", "now", "state", "remaining_min"),
    [
        (None, None, T0, None, None),
        (T0, None, T0 + 20 * M, ClockState.RUNNING, 40),
        (T0, None, T0 + 61 * M, ClockState.BREACHED, -1),
        (T0, T0 + 59 * M, T0 + 600 * M, ClockState.MET, 1),
        (T0, T0 + 60 * M, T0 + 600 * M, ClockState.MET, 0),
        (T0, T0 + 75 * M, T0 + 80 * M, ClockState.BREACHED, -15),
    ],
)
def test_the_downtime_clock(
    down: datetime | None, back: datetime | None, now: datetime, state: ClockState | None, remaining_min: int | None
) -> None:
    c = downtime_clock(down, back, now)
    if state is None:
        assert c is None
        return
    assert c is not None and c.name == "downtime"
    assert (c.due, c.state, c.remaining_s) == (T0 + 60 * M, state, remaining_min * 60)
    assert c.due.date().isoformat() == "2028-03-01"  # across the leap day's midnight


def _ticket() -> Ticket:
    t = Ticket(3, "s", "pir-1", "pir_detector", "tamper", "tamper", "hall", "city", "equipment", "medium", T0, T0)
    return t.moved(TicketState.ACKNOWLEDGED, T0 + M).moved(TicketState.DISPATCHED, T0 + 2 * M)


def test_one_window_from_the_first_time_it_went_away_to_the_last_time_it_came_back() -> None:
    t = _ticket()
    assert [c.name for c in t.clocks(T0)] == ["response", "arrival", "repair"]
    away = t.went_down(T0 + 10 * M)
    assert away.down and away.version == t.version + 1
    assert away.went_down(T0 + 20 * M) is away  # already away: nothing new
    back = away.came_back(T0 + 30 * M)
    assert not back.down and back.back_at == T0 + 30 * M
    again = back.went_down(T0 + 40 * M).came_back(T0 + 50 * M)
    assert (again.down_since, again.back_at) == (T0 + 10 * M, T0 + 50 * M)
    assert [c.name for c in again.clocks(T0 + 60 * M)] == ["response", "arrival", "repair", "downtime"]
    assert ticket_json(again, T0)["clocks"]["downtime"]["state"] == "met"  # type: ignore[index]


def test_out_of_service_holds_the_downtime_open_until_it_is_put_back() -> None:
    out = _ticket().marked_out(T0 + 10 * M)
    assert out.down and out.out_of_service
    assert out.came_back(T0 + 11 * M) is out  # readings end nothing while it is out
    back_in = out.marked_in()
    assert back_in.down and not back_in.out_of_service
    assert back_in.came_back(T0 + 12 * M).back_at == T0 + 12 * M


# --- end to end: the gateway polling the simulator on a manual clock ----------------------


async def _on_site(harness: Harness, device: str) -> Ticket:
    gw = await harness.start_gateway()
    harness.sim.inject(device, "tamper")
    await harness.cycle(1)
    (t,) = harness.tickets()
    for to in (TicketState.ACKNOWLEDGED, TicketState.DISPATCHED, TicketState.ON_SITE):
        gw.core.move(t.id or 0, to, actor="eng-1")
    return harness.gateway.store.tickets.get(t.id or 0)


def _ticket_of(harness: Harness, ticket_id: int) -> Ticket:
    return harness.gateway.store.tickets.get(ticket_id)


@pytest.mark.integration
async def test_a_detector_taken_away_during_its_repair_has_its_downtime_measured(harness: Harness) -> None:
    t = await _on_site(harness, "pir-2")
    for _ in range(10):  # a check-in after the engineer arrived
        await harness.cycle(1)
        heard = heard_at(harness.gateway.core.latest["pir-2"])
        if heard is not None and t.on_site_at is not None and heard > t.on_site_at:
            break
    assert _ticket_of(harness, t.id or 0).down_since is None  # still heard: nothing runs
    removed_at = harness.clock.now()
    harness.sim.inject("pir-2", "silent", duration=600)  # the engineer takes it off the wall
    last_heard = heard_at(harness.gateway.core.latest["pir-2"])
    assert last_heard is not None and last_heard <= removed_at
    for _ in range(40):  # its 60 s window passes without a check-in
        await harness.cycle(1)
        if _ticket_of(harness, t.id or 0).down_since is not None:
            break
    away = _ticket_of(harness, t.id or 0)
    assert away.down_since == last_heard  # from its last reading, not from when it was noticed
    assert harness.clock.now() - last_heard > timedelta(seconds=60)
    assert [c.state for c in away.clocks(harness.clock.now()) if c.name == "downtime"] == [ClockState.RUNNING]
    for _ in range(200):  # back on the wall after ten minutes: its next check-in ends it
        await harness.cycle(1)
        if _ticket_of(harness, t.id or 0).back_at is not None:
            break
    back = _ticket_of(harness, t.id or 0)
    assert back.back_at is not None and back.down_since is not None
    downtime = back.back_at - back.down_since
    assert timedelta(minutes=10) <= downtime <= timedelta(minutes=11)
    assert [(c.name, c.state) for c in back.clocks(harness.clock.now())][-1] == ("downtime", ClockState.MET)
    log = [row["action"] for row in harness.gateway.store.tickets.log(t.id or 0)]
    assert log[-2:] == ["down", "back"]


@pytest.mark.integration
async def test_an_engineer_marks_the_device_out_and_back_in_service(harness: Harness) -> None:
    t = await _on_site(harness, "pir-3")
    core = harness.gateway.core
    marked_at = harness.clock.now()
    out = core.out_of_service(t.id or 0, True, actor="eng-1")
    assert out.out_of_service and out.down_since == marked_at  # it was still heard: from the mark
    await harness.cycle(10)  # it keeps talking: nothing ends while it is out
    assert _ticket_of(harness, t.id or 0).back_at is None
    harness.clock.advance(20 * 60)
    back_in_at = harness.clock.now()
    core.out_of_service(t.id or 0, False, actor="eng-1")
    for _ in range(10):
        await harness.cycle(1)
        if _ticket_of(harness, t.id or 0).back_at is not None:
            break
    back = _ticket_of(harness, t.id or 0)
    assert back.back_at is not None and back.back_at > back_in_at  # a check-in after it was put back
    assert back.back_at - back_in_at <= timedelta(seconds=30)
    assert [c.state for c in back.clocks(harness.clock.now()) if c.name == "downtime"] == [ClockState.MET]
