"""Escalation marks and the SLA report, with explicit times across hours and days."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.escalation import due_escalations
from alarmgw.diagnostics.sla import share_report
from alarmgw.diagnostics.tickets import Ticket, TicketState

T0 = datetime(2026, 3, 2, 23, 40, tzinfo=UTC)  # late evening: the clocks run past midnight
M = timedelta(minutes=1)
H = timedelta(hours=1)


def ticket(tid: int = 1, area: str = "city", repair: str = "accessory") -> Ticket:
    return Ticket(
        tid,
        "s",
        f"dev-{tid}",
        "pir_detector",
        "tamper",
        "tamper",
        "hall",
        area,
        repair,
        "medium",  # type: ignore[arg-type]
        T0,
        T0,
    )


def keys(t: Ticket, at: datetime, sent: set[tuple[int, str, float]] | None = None) -> list[tuple[str, float]]:
    return [(e.clock, e.mark_s) for e in due_escalations([t], at, sent=sent or set())]


def test_nothing_before_the_first_mark() -> None:
    assert keys(ticket(), T0 + 29 * M) == []


def test_response_marks_fire_once_each_in_order() -> None:
    t = ticket()
    sent: set[tuple[int, str, float]] = set()
    fired = []
    for minutes in range(0, 130, 5):  # the escalation job every 5 minutes for two hours
        for e in due_escalations([t], T0 + minutes * M, sent=sent):
            sent.add(e.key)
            fired.append((minutes, e.clock, e.mark_s))
    assert fired == [
        (30, "response", 1800.0),
        (50, "response", 600.0),
        (60, "response", 0.0),
        (90, "arrival", 1800.0),
        (120, "arrival", 0.0),
    ]


def test_acknowledging_stops_the_response_escalations() -> None:
    t = ticket().moved(TicketState.ACKNOWLEDGED, T0 + 20 * M)
    assert [k for k in keys(t, T0 + 3 * H) if k[0] == "response"] == []


def test_suburb_arrival_and_the_repair_clock_after_arrival_across_days() -> None:
    t = ticket(area="suburb", repair="equipment").moved(TicketState.ACKNOWLEDGED, T0 + 10 * M)
    assert keys(t, T0 + 11 * H + 29 * M) == []  # suburb: due 12 h after detection
    assert keys(t, T0 + 11 * H + 30 * M) == [("arrival", 1800.0)]
    arrived = T0 + 11 * H + 45 * M
    t = t.moved(TicketState.DISPATCHED, T0 + 11 * H).moved(TicketState.ON_SITE, arrived)
    assert keys(t, arrived + timedelta(days=3) - 6 * H - M) == []
    assert keys(t, arrived + timedelta(days=3) - 6 * H) == [("repair", 21600.0)]
    assert keys(t, arrived + timedelta(days=3, seconds=1)) == [("repair", 21600.0), ("repair", 0.0)]
    assert keys(dataclasses.replace(t, state=TicketState.RESOLVED), arrived + timedelta(days=9)) == []


def test_share_report_counts_only_decided_clocks() -> None:
    late = ticket(1).moved(TicketState.ACKNOWLEDGED, T0 + 61 * M)
    early = ticket(2).moved(TicketState.ACKNOWLEDGED, T0 + 5 * M)
    running = ticket(3)
    now = T0 + 30 * M + 31 * M
    report = share_report((t.fault, t.clocks(now)) for t in (late, early, running))
    cell = report["tamper"]["response"]
    # at now = T0+61 min the running ticket's response is breached too
    assert (cell["met"], cell["breached"], cell["running"]) == (1, 2, 0)
    assert cell["share_met"] == pytest.approx(1 / 3)
    assert report["tamper"]["arrival"]["running"] == 3
