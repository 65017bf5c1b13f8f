"""Incidents across sites: storms of one fault in one area grouped, the rest left single.
Tables of tickets, each row (site, area, fault, minutes after 08:00, state)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from alarmgw.centre.incidents import IncidentRules, TicketSummary, group_incidents
from alarmgw.diagnostics.tickets import TicketState

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN, ACK, RESOLVED, CLOSED = TicketState.OPEN, TicketState.ACKNOWLEDGED, TicketState.RESOLVED, TicketState.CLOSED
Row = tuple[str, str, str, float, TicketState]


def tickets(rows: list[Row]) -> list[TicketSummary]:
    return [TicketSummary(s, i + 1, a, f, T0 + timedelta(minutes=m), st) for i, (s, a, f, m, st) in enumerate(rows)]


def storm(n: int, area: str = "north", fault: str = "mains_loss", start: float = 0, every: float = 0.02) -> list[Row]:
    return [(f"{area}-{fault}-{i}", area, fault, start + i * every, OPEN) for i in range(n)]


# (case, rows, rules, expected incidents as (fault, area, sites, still open, tickets), singles)
CASES: list[tuple[str, list[Row], IncidentRules, list[tuple[str, str, int, int, int]], int]] = [
    ("a storm is one line", storm(212, every=0.04), IncidentRules(), [("mains_loss", "north", 212, 212, 212)], 0),
    (
        "two areas, two incidents",
        storm(5, "north") + storm(5, "south"),
        IncidentRules(),
        [("mains_loss", "north", 5, 5, 5), ("mains_loss", "south", 5, 5, 5)],
        0,
    ),
    (
        "two faults, two incidents",
        storm(4) + storm(4, fault="rf_jamming"),
        IncidentRules(),
        [("mains_loss", "north", 4, 4, 4), ("rf_jamming", "north", 4, 4, 4)],
        0,
    ),
    ("too few sites stay single", storm(2), IncidentRules(), [], 2),
    (
        "the window's last second still joins",
        [("a", "n", "mains_loss", 0, OPEN), ("b", "n", "mains_loss", 5, OPEN), ("c", "n", "mains_loss", 10, OPEN)],
        IncidentRules(),
        [("mains_loss", "n", 3, 3, 3)],
        0,
    ),
    (
        "a ticket just outside the window does not",
        [("a", "n", "mains_loss", 0, OPEN), ("b", "n", "mains_loss", 5, OPEN), ("c", "n", "mains_loss", 10.02, OPEN)],
        IncidentRules(),
        [],
        3,
    ),
    (
        "no chaining: the window runs from the first ticket",
        [(s, "n", "mains_loss", m, OPEN) for s, m in (("a", 0), ("b", 6), ("c", 12), ("d", 18))],
        IncidentRules(min_sites=2),
        [("mains_loss", "n", 2, 2, 2), ("mains_loss", "n", 2, 2, 2)],
        0,
    ),
    (
        "closed and resolved tickets count, but not as open",
        [
            (s, "n", "mains_loss", m, st)
            for m, (s, st) in enumerate(zip("abcde", (CLOSED, RESOLVED, ACK, OPEN, CLOSED), strict=True))
        ],
        IncidentRules(),
        [("mains_loss", "n", 5, 2, 5)],
        0,
    ),
    (
        "one site twice is one site",
        [("a", "n", "mains_loss", 0, OPEN), ("a", "n", "mains_loss", 1, OPEN), ("b", "n", "mains_loss", 2, OPEN)],
        IncidentRules(),
        [],
        3,
    ),
    (
        "one site twice among three",
        [(s, "n", "mains_loss", m, OPEN) for s, m in (("a", 0), ("a", 1), ("b", 2), ("c", 3))],
        IncidentRules(),
        [("mains_loss", "n", 3, 4, 4)],
        0,
    ),
    ("sites with no area are never grouped", storm(5, area=""), IncidentRules(), [], 5),
    (
        "only the fault kinds asked for",
        storm(5) + storm(5, fault="low_battery"),
        IncidentRules(faults=frozenset({"mains_loss"})),
        [("mains_loss", "north", 5, 5, 5)],
        5,
    ),
    (
        "a storm, a later wave and background",
        storm(50) + storm(30, start=30) + [("x", "north", "mains_loss", 15, OPEN), ("y", "south", "tamper", 1, OPEN)],
        IncidentRules(),
        [("mains_loss", "north", 50, 50, 50), ("mains_loss", "north", 30, 30, 30)],
        2,
    ),
]


@pytest.mark.parametrize(("case", "rows", "rules", "expected", "singles"), CASES, ids=[c[0] for c in CASES])
def test_grouping(
    case: str, rows: list[Row], rules: IncidentRules, expected: list[tuple[str, str, int, int, int]], singles: int
) -> None:
    given = tickets(rows)
    random.Random(7).shuffle(given)  # the order tickets arrive in does not matter
    result = group_incidents(given, rules)
    assert [(i.fault, i.area, i.sites, i.still_open, len(i.tickets)) for i in result.incidents] == expected
    assert len(result.singles) == singles
    grouped = [k for i in result.incidents for k in i.tickets] + [t.key for t in result.singles]
    assert sorted(grouped) == sorted(t.key for t in given)  # every ticket once, none lost


def test_an_incident_says_when_and_what() -> None:
    (incident,) = group_incidents(tickets(storm(212, area="suburb north", every=0.04))).incidents
    assert incident.describe() == "mains loss, suburb north, 212 sites, 212 open"
    assert incident.first_opened == T0
    assert incident.last_opened == T0 + timedelta(minutes=211 * 0.04)
    assert incident.tickets[0] == ("suburb north-mains_loss-0", 1)
    assert incident.id == "mains_loss:suburb north:2026-01-05T08:00:00.000Z"


@pytest.mark.parametrize("bad", [{"window_s": 0}, {"min_sites": 1}, {"min_sites": True}, {"windows": 60}])
def test_rules_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IncidentRules.model_validate(bad)


def test_a_hundred_thousand_tickets() -> None:
    """200 storms of 400 sites, and 20,000 scattered tickets, in well under the test timeout."""
    rng = random.Random(1)
    rows: list[Row] = []
    for s in range(200):
        rows += storm(400, area=f"area-{s % 50}", start=(s // 50) * 120, every=0.02)
    rows += [(f"bg-{i}", f"area-{i % 50}", "low_battery", i * 1.0, OPEN) for i in range(20_000)]
    given = tickets(rows)
    rng.shuffle(given)
    result = group_incidents(given)
    assert len(given) == 100_000
    assert len(result.incidents) == 200
    assert {i.sites for i in result.incidents} == {400}
    assert len(result.singles) == 20_000  # each area has one low battery every 50 minutes
