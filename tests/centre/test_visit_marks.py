"""Maintenance visits escalate like a clock, at the centre: which marks a planned visit has
reached on which day (month ends, a leap February, the year's end, a visit done, not open yet,
history), which of them are sent, and the message; then sites' assets docs through the ingest
batch into a real PostgreSQL, judged by the liveness turn as time moves, to the notifier."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import batch, commands, parse
from alarmgw.centre.config import CentreConfig, SitesConfig
from alarmgw.centre.liveness import LivenessRunner
from alarmgw.centre.notify import Notifier, Target
from alarmgw.centre.rota import NotifyConfig, VisitNotice, body, recipients, title
from alarmgw.centre.visit_marks import Planned, judge, planned_visit, reached, time_to_judge
from alarmgw.clock import ManualClock
from alarmgw.diagnostics.maintenance import Visit
from alarmgw.gateway.messages import OutboxMessage
from tests.centre.test_plans import site_doc
from tests.centre.workers import scalar

ROOT = "alarmgw"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def visit(opens: str, closes: str, n: int = 4) -> Visit:
    return Visit(n, "regular", date.fromisoformat(opens), date.fromisoformat(closes))


# --- which marks, on which day ----------------------------------------------------------------

# (window opens, closes, done on, now, marks, reached): a window closes at the end of its last
# day (00:00 UTC the next day); mark d is reached d days before; 0 is the moment it is overdue.
REACHED_TABLE = [
    # a leap February: the window's last day is the 29th
    ("2028-02-01", "2028-02-29", None, "2028-02-22T23:59:59", (7, 0), []),
    ("2028-02-01", "2028-02-29", None, "2028-02-23T00:00:00", (7, 0), [7]),
    ("2028-02-01", "2028-02-29", None, "2028-02-29T23:59:59", (7, 0), [7]),
    ("2028-02-01", "2028-02-29", None, "2028-03-01T00:00:00", (7, 0), [7, 0]),
    # February of a common year
    ("2026-02-01", "2026-02-28", None, "2026-02-21T23:59:59", (7, 0), []),
    ("2026-02-01", "2026-02-28", None, "2026-02-22T00:00:00", (7, 0), [7]),
    ("2026-02-01", "2026-02-28", None, "2026-03-01T00:00:00", (7, 0), [7, 0]),
    # the ends of a 31-day month, a 30-day month and the year
    ("2026-01-01", "2026-01-31", None, "2026-01-25T00:00:00", (7, 0), [7]),
    ("2026-01-01", "2026-01-31", None, "2026-01-31T23:00:00", (7, 0), [7]),
    ("2026-01-01", "2026-01-31", None, "2026-02-01T00:00:00", (7, 0), [7, 0]),
    ("2026-04-01", "2026-04-30", None, "2026-04-23T23:59:59", (7, 0), []),
    ("2026-04-01", "2026-04-30", None, "2026-04-24T00:00:00", (7, 0), [7]),
    ("2026-10-01", "2026-12-31", None, "2026-12-25T00:00:00", (7, 0), [7]),
    ("2026-10-01", "2026-12-31", None, "2027-01-01T00:00:00", (7, 0), [7, 0]),
    # more marks: the window's last day, from its first moment, is a day before the end
    ("2026-02-01", "2026-04-30", None, "2026-04-30T00:00:00", (14, 7, 1, 0), [14, 7, 1]),
    ("2026-02-01", "2026-04-30", None, "2026-04-29T23:59:59", (14, 7, 1, 0), [14, 7]),
    # done: inside its window, nothing; a visit done outside it is another visit's
    ("2026-02-01", "2026-02-28", "2026-02-27", "2026-03-01T00:00:00", (7, 0), []),
    ("2026-02-01", "2026-02-28", "2026-02-01", "2026-02-22T00:00:00", (7, 0), []),
    ("2026-02-01", "2026-02-28", "2026-01-31", "2026-03-01T00:00:00", (7, 0), [7, 0]),
    ("2026-02-01", "2026-02-28", "2026-03-01", "2026-03-01T00:00:00", (7, 0), [7, 0]),
    # not open yet: a short window is judged from its first day, its passed marks reached then
    ("2026-03-05", "2026-03-08", None, "2026-03-04T23:59:59", (7, 0), []),
    ("2026-03-05", "2026-03-08", None, "2026-03-05T00:00:00", (7, 0), [7]),
    # history: closed more than 90 days ago (2025-11-30 + 90 days = 2026-02-28)
    ("2025-11-01", "2025-11-30", None, "2026-02-28T23:59:59", (7, 0), [7, 0]),
    ("2025-11-01", "2025-11-30", None, "2026-03-01T00:00:00", (7, 0), []),
    # no marks configured: never
    ("2026-02-01", "2026-02-28", None, "2026-03-01T00:00:00", (), []),
]


@pytest.mark.parametrize(("opens", "closes", "done_on", "now", "marks", "expected"), REACHED_TABLE)
def test_the_marks_a_visit_has_reached(
    opens: str, closes: str, done_on: str | None, now: str, marks: tuple[int, ...], expected: list[int]
) -> None:
    done = date.fromisoformat(done_on) if done_on else None
    assert reached(visit(opens, closes), done, marks, at(now)) == expected


def sent(planned: list[Planned], now: str, recorded: dict[tuple[str, int, date], set[int]]) -> list[tuple[int, bool]]:
    return [(n.mark_days, send) for n, send in judge(planned, at(now), (7, 0), recorded)]


def test_each_mark_once_and_of_several_reached_at_once_only_the_nearest_sent() -> None:
    v = visit("2026-02-01", "2026-02-28")
    p = [Planned("city-1", v, None)]
    key = ("city-1", 4, v.closes)
    assert sent(p, "2026-02-22T00:00:00", {}) == [(7, True)]
    assert sent(p, "2026-02-23T00:00:00", {key: {7}}) == []  # recorded: not again
    assert sent(p, "2026-03-01T00:00:00", {key: {7}}) == [(0, True)]
    # First seen overdue: both recorded, only "overdue" sent (it says how the visit stands).
    assert sent(p, "2026-03-01T00:00:00", {}) == [(7, False), (0, True)]
    # A mark added to the file after a nearer one was sent is recorded, not sent.
    assert [(n.mark_days, s) for n, s in judge(p, at("2026-03-01"), (14, 7, 0), {key: {7, 0}})] == [(14, False)]
    # A plan made again with another window is another visit.
    moved = [Planned("city-1", visit("2026-02-01", "2026-03-31"), None)]
    assert sent(moved, "2026-03-25T00:00:00", {key: {7, 0}}) == [(7, True)]
    (notice, _) = judge(p, at("2026-03-01T08:00"), (7, 0), {key: {7}})[0]
    assert notice == VisitNotice(
        "city-1", 4, "regular", date(2026, 2, 1), date(2026, 2, 28), 0, at("2026-03-01"), at("2026-03-01")
    )
    (late, _) = judge([Planned("s", visit("2026-03-05", "2026-03-08"), None)], at("2026-03-05T09:00"), (7, 0), {})[0]
    assert late.at == at("2026-03-05")  # a mark passed before the window opened is reached when it opens


@pytest.mark.parametrize(
    ("last", "now", "monotonic", "judges"),
    [
        (None, "2026-04-23T12:00:00", 0.0, True),  # a worker's first turn
        ((date(2026, 4, 23), 100.0), "2026-04-23T12:04:59", 399.0, False),
        ((date(2026, 4, 23), 100.0), "2026-04-23T12:05:00", 400.0, True),  # EVERY_S on: docs that came meanwhile
        ((date(2026, 4, 23), 100.0), "2026-04-24T00:00:00", 101.0, True),  # a new UTC day: marks fall at midnight
        ((date(2028, 2, 28), 0.0), "2028-02-29T00:00:00", 10.0, True),
    ],
)
def test_visits_are_judged_on_a_days_first_turn_and_every_few_minutes(
    last: tuple[date, float] | None, now: str, monotonic: float, judges: bool
) -> None:
    assert time_to_judge(last, at(now), monotonic) is judges


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ((4, "regular", "2026-02-01", "2026-02-28", None), True),
        ((4.0, "regular", "2026-02-01", "2026-02-28", "2026-02-03"), True),
        ((4, "regular", "2026-02-01", "2026-02-30", None), False),  # the schema's shape, not in the calendar
        ((0, "regular", "2026-02-01", "2026-02-28", None), False),
        ((2**31, "regular", "2026-02-01", "2026-02-28", None), False),
        ((True, "regular", "2026-02-01", "2026-02-28", None), False),
        ((4, "regular", None, "2026-02-28", None), False),
    ],
)
def test_a_visit_the_centre_cannot_judge_is_left_out(fields: tuple[object, ...], ok: bool) -> None:
    assert (planned_visit("s", *fields) is not None) == ok


def test_the_message_names_the_site_the_visit_its_window_and_the_time_left() -> None:
    warn = VisitNotice(
        "city-1", 4, "pre_expiry", date(2026, 4, 21), date(2026, 4, 30), 7, at("2026-05-01"), at("2026-04-24")
    )
    assert title(warn) == (
        "city-1: maintenance visit 4 (pre expiry) not done, its window closes within 7 days (last day 2026-04-30)"
    )
    text = body(warn, at("2026-04-24T06:00"))
    for line in (
        "site: city-1",
        "maintenance visit: 4 (pre expiry)",
        "window: 2026-04-21 to 2026-04-30 (UTC days, both included)",
        "due: 2026-05-01T00:00:00.000Z",
        "time left: 6 days, 18:00:00",
    ):
        assert line in text
    over = VisitNotice(
        "city-1", 4, "regular", date(2026, 2, 1), date(2026, 4, 30), 0, at("2026-05-01"), at("2026-05-01")
    )
    assert title(over) == "city-1: maintenance visit 4 (regular) OVERDUE: none done, its window closed on 2026-04-30"
    assert "time left: none, overdue by 2:00:00" in body(over, at("2026-05-01T02:00"))
    one = VisitNotice("s", 1, "monthly", date(2026, 2, 1), date(2026, 2, 28), 1, at("2026-03-01"), at("2026-02-28"))
    assert "within 1 day (" in title(one)
    # Routes see a visit as fault maintenance_visit, clock visit; overdue is a breach.
    rota = NotifyConfig.model_validate(
        {
            "engineers": [{"name": n, "urls": [{"url": "json://x"}]} for n in ("alice", "boss", "ops")],
            "fallback": ["alice"],
            "routes": [
                {"to": ["on_duty"]},
                {"to": ["boss"], "breached": True},
                {"to": ["ops"], "clocks": ["response"]},
                {"to": ["ops"], "faults": ["maintenance_visit"], "breached": False},
            ],
        }
    )
    assert [e.name for e in recipients(rota, warn, at("2026-04-24"))] == ["alice", "ops"]
    assert [e.name for e in recipients(rota, over, at("2026-05-01"))] == ["alice", "boss"]
    assert warn.key != over.key and warn.key[2] == "maintenance_visit 2026-04-30"


def test_the_marks_are_a_setting_of_the_centre_file() -> None:
    assert SitesConfig().visit_marks_days == [7, 0] and SitesConfig().telemetry_daily_keep_days == 400
    assert SitesConfig(visit_marks_days=[0, 14, 3]).visit_marks_days == [14, 3, 0]
    for wrong in ([7, 7], [-1], [367], list(range(11))):
        with pytest.raises(ValueError, match="visit_marks_days"):
            CentreConfig.model_validate(
                {"database": {"dsn": "postgresql://a/b"}, "broker": {"host": "h"}, "sites": {"visit_marks_days": wrong}}
            )


# --- at the centre, through ingest and the liveness turn -----------------------------------------


async def send_assets(
    pool: AsyncConnectionPool, site: str, made_at: str, done_on: dict[int, str], records_visits: bool = True
) -> None:
    """The site's retained assets doc as its gateway sends it (commissioned 2025-11-01: visit 3
    closes 2026-01-31, visit 4 on 2026-04-30), with the visits it recorded, through ingest."""
    topic, payload = site_doc(site, date(2025, 11, 1), ROOT, at(made_at))
    doc = json.loads(payload)
    for v in doc["visits"]:
        v["done_on"] = done_on.get(v["n"])
    if not records_visits:  # a gateway from before visits were recorded
        del doc["visits_done"]
        for v in doc["visits"]:
            del v["done_on"]
    message = OutboxMessage("assets", topic, json.dumps(doc).encode(), retain=True)
    book = batch.SiteBook(ROOT, lambda s: "city")
    incoming = batch.Incoming(message.topic, message.payload, parse.parse(ROOT, topic, message.payload, 1 << 20))
    async with pool.connection() as conn:
        written = await batch.write(conn, [incoming], at(made_at), book)
    assert written.dead == 0, written.reasons


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_visit_closing_soon_is_notified_once_per_mark_and_not_once_done(
    pool: AsyncConnectionPool, migrated: str
) -> None:
    clock = ManualClock(at("2026-04-20T12:00"))
    rota = NotifyConfig.model_validate(
        {"engineers": [{"name": "alice", "urls": [{"url": "json://x"}]}], "fallback": ["alice"]}
    )
    notifier = Notifier(
        rota, {"alice": (Target("alice", "alice json://x", "json://x"),)}, clock
    )  # queues; none sent here
    told: list[tuple[str, int, int]] = []

    def on_visits(visits: object) -> None:
        assert isinstance(visits, list)
        told.extend((v.site, v.visit, v.mark_days) for v in visits)
        commands._notify_visits(notifier, visits)  # as the ingest command wires it

    runners = [LivenessRunner(pool, SitesConfig(), clock) for _ in range(2)]  # two workers taking turns
    for r in runners:
        r.on_visits = on_visits

    def to(moment: datetime) -> None:
        clock.advance((moment - clock.now()).total_seconds())

    async def rounds() -> list[tuple[str, int, int]]:
        before = len(told)
        for r in runners:
            await r.round()
        return told[before:]

    await send_assets(pool, "city-1", "2026-04-20T11:00", {})
    await send_assets(pool, "city-2", "2026-04-20T11:00", {3: "2026-01-20"})
    await send_assets(pool, "old-9", "2026-04-20T11:00", {}, records_visits=False)  # never paged: it cannot say done
    # city-1's visit 3 closed on 31 January, none done: first seen overdue, "overdue" alone is sent.
    assert await rounds() == [("city-1", 3, 0)]
    assert await scalar(migrated, "SELECT count(*) FROM visit_escalations WHERE NOT notified") == 1  # its mark 7
    to(at("2026-04-23T23:59:59"))
    assert await rounds() == []
    to(at("2026-04-24T00:00:00"))  # seven days before visit 4's window closes
    assert await rounds() == [("city-1", 4, 7), ("city-2", 4, 7)]
    clock.advance(600)
    assert await rounds() == []  # judged again, by either worker: not told twice
    await send_assets(pool, "city-1", "2026-04-27T10:00", {4: "2026-04-27"})  # city-1's visit is done
    to(at("2026-05-01T00:00:00"))  # the moment visit 4 is overdue
    assert await rounds() == [("city-2", 4, 0)]
    clock.advance(3600)
    assert await rounds() == []
    assert notifier.counters.accepted == 4 and notifier.counters.duplicates == 0
    assert await scalar(migrated, "SELECT count(*) FROM visit_escalations") == 5
    # Visit 3's records are forgotten once it is history (closed more than 90 days ago).
    to(at("2026-05-02T00:00:00"))
    assert await rounds() == []
    assert await scalar(migrated, "SELECT count(*) FROM visit_escalations WHERE visit_n = 3") == 0
