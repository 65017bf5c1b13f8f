"""The monthly service report of one site: its arithmetic from tables (months, the clocks'
shares, downtime clipped to the month across month ends and a leap February, visits, devices
at their rated life, readings), the page it prints, and the report at the desk and on the
command line against a real PostgreSQL filled through the real ingest path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import desk_report
from alarmgw.centre.desk_api import DeskConfig, build_app
from alarmgw.centre.service_report import (
    MAX_CHARTS,
    Down,
    Facts,
    Month,
    ReportError,
    build,
    clock_counts,
    downtime_within,
    end_of_life,
    summary_lines,
    visits,
)
from alarmgw.centre.service_report_page import render_html, render_pdf
from alarmgw.clock import ManualClock, iso
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.messages import OutboxMessage, telemetry_messages, ticket_messages
from alarmgw.model import Reading
from tests.centre.test_desk_api import NOW, ROOT, Desk, desk_pool, ingest  # noqa: F401  (the fixture)
from tests.centre.test_plans import site_doc

FEB = Month(2026, 2)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- months --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end", "last_day"),
    [
        ("2026-11", "2026-11-01", "2026-12-01", "2026-11-30"),
        ("2026-12", "2026-12-01", "2027-01-01", "2026-12-31"),  # into the next year
        ("2028-02", "2028-02-01", "2028-03-01", "2028-02-29"),  # a leap February
        ("2026-02", "2026-02-01", "2026-03-01", "2026-02-28"),
    ],
)
def test_a_month_is_its_utc_days(text: str, start: str, end: str, last_day: str) -> None:
    m = Month.parse(text)
    assert (m.start, m.end, m.last_day) == (at(start), at(end), date.fromisoformat(last_day))
    assert str(m) == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", "", "november", "1969-12"])
def test_a_malformed_month_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ReportError, match=re.escape(repr(text)) + ".*YYYY-MM"):
        Month.parse(text)


def test_a_month_that_has_not_begun_has_no_report_and_the_default_is_last_month() -> None:
    now = at("2027-01-15T08:00:00")
    Month(2027, 1).check(now)  # this month: to date
    with pytest.raises(ReportError, match="2027-02 has not begun"):
        Month(2027, 2).check(now)
    assert Month.before(now) == Month(2026, 12)
    assert Month.before(at("2026-03-01T00:00:00")) == Month(2026, 2)


# --- the clocks' shares ---------------------------------------------------------------------


def clock(due: str, state: str, stopped: str | None = None) -> dict[str, object]:
    return {"due": due, "state": state, "remaining_s": 0.0, "stopped_at": stopped, "provisional": False}


REPORT_NOW = at("2026-03-02T10:00:00")
CLOCK_TABLE: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    (
        "acknowledged on time, fixed remotely",
        {
            "response": clock("2026-02-03T09:00:00Z", "met", "2026-02-03T08:30:00Z"),
            "arrival": clock("2026-02-03T10:00:00Z", "not_needed", "2026-02-03T09:00:00Z"),
            "repair": clock("2026-02-04T08:00:00Z", "met", "2026-02-03T09:00:00Z"),
        },
        {"response": "met", "arrival": "not_needed", "repair": "met"},
    ),
    (
        "nobody came: stored as running, judged past due",
        {
            "response": clock("2026-02-27T23:00:00Z", "running"),
            "arrival": clock("2026-02-28T00:00:00Z", "running"),
            "repair": clock("2026-03-03T00:00:00Z", "running"),  # not due yet at REPORT_NOW
        },
        {"response": "breached", "arrival": "breached", "repair": "running"},
    ),
    (
        "late on site, down for 2.5 h during the repair",
        {
            "response": clock("2026-02-10T10:00:00Z", "met", "2026-02-10T09:20:00Z"),
            "arrival": clock("2026-02-10T11:00:00Z", "breached", "2026-02-10T11:30:00Z"),
            "repair": clock("2026-02-13T11:30:00Z", "met", "2026-02-10T12:40:00Z"),
            "downtime": clock("2026-02-10T11:00:00Z", "breached", "2026-02-10T12:30:00Z"),
        },
        {"response": "met", "arrival": "breached", "repair": "met", "downtime": "breached"},
    ),
    ("a doc without clocks", {}, {}),
]


def test_clock_counts_and_the_share_met_of_those_decided() -> None:
    got = clock_counts([c for _, c, _ in CLOCK_TABLE], REPORT_NOW)
    assert list(got) == ["response", "arrival", "repair", "downtime"]  # in the order they run
    assert got["response"] == {"met": 2, "breached": 1, "running": 0, "not_needed": 0, "share_met": 0.6667}
    assert got["arrival"] == {"met": 0, "breached": 2, "running": 0, "not_needed": 1, "share_met": 0.0}
    assert got["repair"] == {"met": 2, "breached": 0, "running": 1, "not_needed": 0, "share_met": 1.0}
    assert got["downtime"] == {"met": 0, "breached": 1, "running": 0, "not_needed": 0, "share_met": 0.0}
    assert clock_counts([CLOCK_TABLE[1][1]], at("2026-02-27T22:30:00"))["response"]["share_met"] is None  # none decided
    assert clock_counts([], REPORT_NOW) == {}


# --- downtime clipped to the month ------------------------------------------------------------

H = 3600.0
DOWNTIME_TABLE = [
    # (down since, back at, month, now, seconds inside the month)
    ("2028-02-28T23:00", "2028-03-01T01:00", "2028-02", "2028-04-01T00:00", 25 * H),  # leap day inside
    ("2028-02-28T23:00", "2028-03-01T01:00", "2028-03", "2028-04-01T00:00", 1 * H),
    ("2028-02-28T23:00", "2028-03-01T01:00", "2028-01", "2028-04-01T00:00", 0.0),
    ("2026-02-28T23:00", "2026-03-01T01:00", "2026-02", "2026-04-01T00:00", 1 * H),  # no leap day
    ("2026-12-31T23:00", "2027-01-01T02:00", "2026-12", "2027-02-01T00:00", 1 * H),  # across the year's end
    ("2026-12-31T23:00", "2027-01-01T02:00", "2027-01", "2027-02-01T00:00", 2 * H),
    ("2026-01-31T23:30", "2026-02-01T00:45", "2026-02", "2026-03-02T10:00", 0.75 * H),
    ("2026-02-10T10:00", "2026-02-10T12:30", "2026-02", "2026-03-02T10:00", 2.5 * H),
    ("2026-01-10T10:00", "2026-01-10T12:30", "2026-02", "2026-03-02T10:00", 0.0),  # over before the month
    # still down: up to now, or to the month's end
    ("2028-02-28T23:00", None, "2028-02", "2028-03-01T00:30", 25 * H),
    ("2028-02-28T23:00", None, "2028-03", "2028-03-01T00:30", 0.5 * H),
    ("2026-11-30T22:00", None, "2026-11", "2026-11-30T23:00", 1 * H),  # the month to date
    ("2026-11-30T22:00", None, "2026-12", "2026-11-30T23:00", 0.0),
]


@pytest.mark.parametrize(("since", "back", "month", "now", "seconds"), DOWNTIME_TABLE)
def test_downtime_inside_a_month(since: str, back: str | None, month: str, now: str, seconds: float) -> None:
    d = Down("1", "host-1", at(since), at(back) if back else None)
    m = Month.parse(month)
    assert downtime_within(d, m.start, m.end, at(now)).total_seconds() == seconds


# --- visits, devices, readings -------------------------------------------------------------------


def assets_doc(**extra: object) -> dict[str, Any]:
    """A site commissioned 2025-11-01 as its gateway sends it (monthly visits Nov-Jan, then
    a regular one from 1 February)."""
    doc: dict[str, Any] = json.loads(site_doc("city-1", date(2025, 11, 1))[1])
    doc.update(extra)
    return doc


def test_visits_of_the_month_with_the_days_the_site_recorded() -> None:
    doc = assets_doc()
    assert visits(doc, FEB, date(2026, 3, 2))["recorded"] == []  # the site recorded none this month
    del doc["visits_done"]
    assert visits(doc, FEB, date(2026, 3, 2))["recorded"] is None  # a gateway that records none: "none recorded"
    plan = visits(doc, FEB, date(2026, 3, 2))["planned"]
    assert [(v["n"], v["kind"], v["opens"], v["state"]) for v in plan] == [(4, "regular", "2026-02-01", "due")]  # type: ignore[index]
    doc["visits"][3]["done_on"] = "2026-02-12"
    doc["visits"][2]["done_on"] = "2026-01-20"  # January's: not this month's
    doc["visits_done"] = [
        {"started_at": "2026-02-12T09:00:00.000Z", "finished_at": "2026-02-12T11:15:00.000Z", "by": "eric"}
        | {"tested": ["smoke-1", "pir-9"], "untested": [], "failed": ["pir-9"]},
        {"started_at": "2026-01-20T09:00:00.000Z", "finished_at": None, "by": "eric", "tested": 3},
    ]
    got = visits(doc, FEB, date(2026, 3, 2))
    assert [(v["n"], v["done_on"], v["state"]) for v in got["planned"]] == [(4, "2026-02-12", "done")]  # type: ignore[index]
    assert got["recorded"] == [
        {"started_at": "2026-02-12T09:00:00.000Z", "finished_at": "2026-02-12T11:15:00.000Z", "by": "eric"}
        | {"tested": {"count": 2, "devices": ["smoke-1", "pir-9"]}, "untested": {"count": 0, "devices": []}}
        | {"failed": {"count": 1, "devices": ["pir-9"]}}
    ]
    # Done after the month: as of the month's last day it was still due.
    doc["visits"][3]["done_on"] = "2026-03-01"
    assert visits(doc, FEB, date(2026, 3, 2))["planned"][0]["state"] == "due"  # type: ignore[index]
    assert visits(None, FEB, date(2026, 3, 2)) == {"planned": [], "recorded": None, "register": False}


def test_devices_at_or_near_their_rated_life_at_the_months_end() -> None:
    doc = assets_doc()
    doc["devices"].append(
        {"device": "rep-7", "kind": "repeater", "commissioned_on": "2020-06-01"}
        | {"warranty_until": "2021-05-31", "end_of_life": "2026-06-01"}
    )
    got = end_of_life(doc, FEB)
    rows = [(d["device"], d["end_of_life"], d["reached"], d["in_warranty"]) for d in got["devices"]]
    assert rows == [("pir-9", "2026-01-01", True, False), ("rep-7", "2026-06-01", False, False)]
    assert end_of_life(doc, Month(2025, 6))["devices"] == []  # pir-9's end was more than six months away
    assert end_of_life(None, FEB) == {"within_months": 6, "devices": [], "total": 0}


def facts(**kw: Any) -> Facts:
    base: dict[str, Any] = {
        "site": "city-1",
        "area": "city",
        "month": FEB,
        "now": REPORT_NOW,
        "tickets": [],
        "tickets_total": 0,
        "down": [],
        "assets": None,
        "latest": [],
    }
    return Facts(**(base | kw))


def test_readings_of_the_month_lowest_first_and_the_charts_bounded() -> None:
    latest = [
        (f"smoke-{i:02d}", at("2026-02-20T10:00"), {"battery_pct": 100 - i, "rssi_dbm": -60, "tamper": False})
        for i in range(MAX_CHARTS + 2)
    ]
    latest.append(("smoke-march", at("2026-03-01T00:00"), {"battery_pct": 5}))  # next month's: not this one's
    evidence = {
        "ref": "9",
        "device": "smoke-00",
        "opened_at": "2026-02-03T08:00:00.000Z",
        "evidence": {"battery_pct": 61},
    }
    report = build(facts(latest=latest, tickets=[evidence], tickets_total=1))
    seen = report["readings"]
    assert seen["total"] == MAX_CHARTS + 2 and seen["charted"] == MAX_CHARTS  # type: ignore[index]
    order = [d["device"] for d in seen["devices"]]  # type: ignore[index]
    assert order[:2] == ["smoke-00", f"smoke-{MAX_CHARTS + 1:02d}"]  # the lowest battery first (61 %, then 75 %)
    smoke0 = next(d for d in seen["devices"] if d["device"] == "smoke-00")  # type: ignore[index]
    assert smoke0["battery_pct"] == {"min": 61.0, "last": 100.0, "last_at": "2026-02-20T10:00:00.000Z", "count": 2}
    assert report["truncated"] == ["charts"]


def test_build_and_summary_of_a_month() -> None:
    down = [Down("12", "host-1", at("2026-01-31T23:30"), at("2026-02-01T00:45"))]
    docs = [
        {"ref": str(i), "fault": f, "device": "pir-2", "clocks": c}
        for i, (f, (_, c, _)) in enumerate(
            zip(["tamper", "tamper", "comm_loss", "mains_loss"], CLOCK_TABLE, strict=True)
        )
    ]
    report = build(facts(tickets=docs, tickets_total=5, down=down))
    assert report["tickets"]["by_fault"] == {"comm_loss": 1, "mains_loss": 1, "tamper": 2}  # type: ignore[index]
    assert [t["clocks"] for t in report["tickets"]["list"]] == [e for _, _, e in CLOCK_TABLE]  # type: ignore[index]
    assert report["downtime"]["total_s"] == 2700.0  # type: ignore[index]
    assert report["truncated"] == ["tickets"]  # 4 of 5
    assert report["complete"] is True and report["from"] == "2026-02-01T00:00:00.000Z"
    lines = summary_lines(report)
    assert lines[0] == "service report: site city-1, 2026-02 (UTC), as of 2026-03-02 10:00 UTC"
    assert "  response: 2 met, 1 breached, 0 running, 0 not needed: 67% met" in lines
    assert "downtime: 45 min over 1 ticket(s)" in lines
    assert "maintenance visits: 0 planned in the month, 0 done; none recorded" in lines


# --- the page ------------------------------------------------------------------------------


@pytest.mark.timeout(60)  # matplotlib's first import builds its font cache
def test_the_page_is_one_escaped_file_that_runs_and_fetches_nothing() -> None:
    hostile = '<script>alert("x")</script>'
    latest = [(f"pir-{i}{hostile}", at("2026-02-20T10:00"), {"battery_v": 2.9, "rssi_dbm": -70}) for i in range(3)]
    tickets = [{"ref": "1", "fault": hostile, "device": hostile, "opened_at": "2026-02-03T08:00:00.000Z"}]
    report = build(facts(site=f"city-1{hostile}", latest=latest, tickets=tickets, tickets_total=1))
    page = render_html(report)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"\b(src|href)=\"(?!#)", page)  # nothing to fetch; only in-page references
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    assert page.count("<svg") == 3 and "<?xml" not in page and "<!DOCTYPE svg" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # each chart's ids are its own
    for ref in re.findall(r'href="#([^"]+)"|url\(#([^)]+)\)', page):
        assert (ref[0] or ref[1]) in ids
    assert "@page" in page and "break-inside: avoid" in page
    assert render_html(report, charts=False).count("<svg") == 0
    pdf = render_pdf(page)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000


# --- at the desk and on the command line --------------------------------------------------------


def ticket(tid: int, fault: str, device: str, kind: str, opened: str, **kw: Any) -> Ticket:
    o = at(opened)
    repair = "accessory" if fault == "low_battery" else "equipment"
    return Ticket(tid, "city-1", device, kind, fault, fault, "hall", "city", repair, "high", o, o, **kw)  # type: ignore[arg-type]


def versions(t: Ticket, *moves: tuple[TicketState, str], down: tuple[str, str] | None = None) -> list[Ticket]:
    out = [t]
    for state, when in moves:
        out.append(out[-1].moved(state, at(when)))
        if down is not None and state is TicketState.ON_SITE:
            out.append(replace(out[-1], down_since=at(down[0]), back_at=at(down[1]), version=out[-1].version + 1))
    return out


async def seed_february(pool: AsyncConnectionPool) -> None:
    """city-1's February beside the fleet of test_desk_api (whose ticket 3 of city-1, a low
    battery of smoke-1, opened on 20 February): three more tickets, one of them down for 2.5 h
    during its repair, one opened in January and down across midnight into February, readings,
    and the site's register and plan with the visits it recorded."""
    fleet = [
        versions(
            ticket(10, "tamper", "pir-2", "pir_detector", "2026-02-03T08:00", evidence={"rssi_dbm": -80}),
            (TicketState.ACKNOWLEDGED, "2026-02-03T08:30"),
            (TicketState.DISPATCHED, "2026-02-03T08:40"),
            (TicketState.ON_SITE, "2026-02-03T11:00"),
            (TicketState.RESOLVED, "2026-02-03T12:00"),
        ),
        versions(ticket(11, "comm_loss", "rep-1", "repeater", "2026-02-27T22:00")),
        versions(
            ticket(13, "mains_loss", "host-1", "host", "2026-02-10T09:00"),
            (TicketState.ACKNOWLEDGED, "2026-02-10T09:20"),
            (TicketState.DISPATCHED, "2026-02-10T09:25"),
            (TicketState.ON_SITE, "2026-02-10T10:30"),
            (TicketState.RESOLVED, "2026-02-10T13:15"),
            down=("2026-02-10T10:40", "2026-02-10T13:10"),
        ),
        versions(
            ticket(12, "mains_loss", "host-1", "host", "2026-01-31T22:00"),
            (TicketState.ACKNOWLEDGED, "2026-01-31T22:10"),
            (TicketState.DISPATCHED, "2026-01-31T22:15"),
            (TicketState.ON_SITE, "2026-01-31T23:00"),
            (TicketState.RESOLVED, "2026-02-01T01:00"),
            down=("2026-01-31T23:30", "2026-02-01T00:45"),
        ),
    ]
    messages = []
    for vs in fleet:
        for i, t in enumerate(vs):
            messages += ticket_messages(f"{ROOT}/city-1", t, "opened" if i == 0 else t.state.value, t.last_stamp())
    reading = Reading("pir-2", at("2026-02-25T06:00"), {"battery_pct": 40, "rssi_dbm": -88, "tamper": False})
    messages += telemetry_messages(f"{ROOT}/city-1", "city-1", [reading])
    topic, payload = site_doc("city-1", date(2025, 11, 1), ROOT, at("2026-02-01T00:00"))
    messages.append(OutboxMessage("assets", topic, payload, retain=True))
    await ingest(pool, messages)
    # The days and reports of the visits, as a gateway that records its visits sends them.
    recorded = {
        "visits_done": [
            {"started_at": "2026-02-12T09:00:00.000Z", "finished_at": "2026-02-12T11:15:00.000Z", "by": "eric"}
            | {"tested": ["smoke-1", "pir-9", "host-1"], "untested": [], "failed": ["pir-9"]}
        ]
    }
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE site_assets SET doc = jsonb_set(doc, '{visits,3,done_on}', '\"2026-02-12\"') || %s::jsonb"
            " WHERE site_id = 'city-1'",
            (json.dumps(recorded),),
        )


@pytest_asyncio.fixture
async def report_desk(desk_pool: AsyncConnectionPool) -> AsyncIterator[Desk]:  # noqa: F811
    await seed_february(desk_pool)
    clock = ManualClock(NOW)
    app = build_app(desk_pool, DeskConfig.model_validate({}), clock)
    if not any(getattr(r, "path", "") == "/api/sites/{site}/report" for r in app.routes):
        app.include_router(desk_report.router)  # until desk_api takes the router in itself
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield Desk(http, clock, desk_pool, None)


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_the_desk_reports_a_sites_month(report_desk: Desk) -> None:
    desk = report_desk
    headers = await desk.login("vera")  # a viewer may read it
    r = await desk.http.get("/api/sites/city-1/report?month=2026-02", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["site"], body["area"], body["month"], body["as_of"]) == ("city-1", "city", "2026-02", iso(NOW))
    t = body["tickets"]
    assert t["total"] == 4 and t["by_fault"] == {"comm_loss": 1, "low_battery": 1, "mains_loss": 1, "tamper": 1}
    assert [x["ref"] for x in t["list"]] == ["10", "13", "3", "11"]  # by detection time
    assert t["clocks"] == {
        "response": {"met": 3, "breached": 1, "running": 0, "not_needed": 0, "share_met": 0.75},
        "arrival": {"met": 1, "breached": 2, "running": 0, "not_needed": 1, "share_met": 0.3333},
        "repair": {"met": 3, "breached": 0, "running": 1, "not_needed": 0, "share_met": 1.0},
        "downtime": {"met": 0, "breached": 1, "running": 0, "not_needed": 0, "share_met": 0.0},
    }
    down = body["downtime"]
    assert [(d["ref"], d["in_month_s"]) for d in down["tickets"]] == [("12", 2700.0), ("13", 9000.0)]
    assert down["total_s"] == 11700.0 and down["promise_s"] == 3600.0
    v = body["visits"]
    assert [(p["n"], p["done_on"], p["state"]) for p in v["planned"]] == [(4, "2026-02-12", "done")]
    assert v["recorded"][0]["failed"] == {"count": 1, "devices": ["pir-9"]}
    assert [(d["device"], d["reached"]) for d in body["end_of_life"]["devices"]] == [("pir-9", True)]
    seen = {d["device"]: d for d in body["readings"]["devices"]}
    assert set(seen) == {"pir-2", "smoke-1"}  # smoke-1's latest reading is March's: its ticket's evidence counts
    # pir-2's from the daily history (its one reading of the month), smoke-1's from its ticket's evidence
    assert seen["pir-2"]["rssi_dbm"] == {"min": -88.0, "last": -88.0, "last_at": "2026-02-25T06:00:00.000Z", "count": 1}
    assert seen["pir-2"]["daily"]["rssi_dbm"] == [["2026-02-25", -88.0, -88.0, -88.0, 1]]
    assert seen["smoke-1"]["battery_v"]["min"] == 2.6 and "daily" not in seen["smoke-1"]
    assert body["readings"]["sources"] == [
        "daily minimum, maximum and last reading",
        "ticket evidence at detection",
        "latest reading",
    ]
    assert body["truncated"] == []

    r = await desk.http.get("/api/sites/city-1/report?month=2026-02&format=html", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="service-report-city-1-2026-02.html"'
    assert "Service report — February 2026" in r.text and r.text.count("<svg") == 2 and "<script" not in r.text
    assert "3 h 15 min" in r.text  # the month's downtime
    r = await desk.http.get("/api/sites/city-1/report?month=2026-02&format=pdf", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")

    r = await desk.http.get("/api/sites/city-1/report?month=2026-03", headers=headers)  # the month to date
    assert r.status_code == 200 and r.json()["complete"] is False
    for url, status, detail in [
        ("/api/sites/nowhere-9/report?month=2026-02", 404, "no site nowhere-9 at the centre"),
        ("/api/sites/city-1/report?month=2026-13", 422, "month '2026-13' is not a month as YYYY-MM (e.g. 2026-11)"),
        ("/api/sites/city-1/report?month=Feb", 422, "month 'Feb' is not a month as YYYY-MM (e.g. 2026-11)"),
        ("/api/sites/city-1/report?month=2026-04", 422, "month 2026-04 has not begun (it is 2026-03-02 UTC)"),
    ]:
        r = await desk.http.get(url, headers=headers)
        assert (r.status_code, r.json()["detail"]) == (status, detail), url
    assert (await desk.http.get("/api/sites/city-1/report", headers=headers)).status_code == 422
    assert (
        await desk.http.get("/api/sites/city-1/report?month=2026-02&format=doc", headers=headers)
    ).status_code == 422
    assert (await desk.http.get("/api/sites/city-1/report?month=2026-02")).status_code == 401


ROOT_DIR = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_the_command_line_prints_the_report_and_writes_the_page_and_its_pdf(
    tmp_path: Path,
    migrated: str,
    desk_pool: AsyncConnectionPool,  # noqa: F811
) -> None:
    await seed_february(desk_pool)
    config = tmp_path / "centre.yaml"
    config.write_text(f"database: {{dsn: '{migrated}'}}\nbroker: {{host: 127.0.0.1}}\n")

    def alarmgw(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "alarmgw.gateway.cli", "centre", "report", *args, "-c", str(config)]
        return subprocess.run(cmd, cwd=ROOT_DIR, capture_output=True, text=True, timeout=50)

    page, pdf = tmp_path / "feb.html", tmp_path / "feb.pdf"
    done = alarmgw("city-1", "--month", "2026-02", "--json", "--html", str(page), "--pdf", str(pdf))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["month"] == "2026-02" and report["tickets"]["total"] == 4 and report["complete"] is True
    assert page.read_text().count("<svg") == 2 and pdf.read_bytes().startswith(b"%PDF-")
    summary = alarmgw("city-1", "--month", "2026-02")
    assert (
        summary.returncode == 0
        and "tickets opened: 4 (comm_loss 1, low_battery 1, mains_loss 1, tamper 1)" in summary.stdout
    )
    unknown = alarmgw("nowhere-9", "--month", "2026-02")
    assert unknown.returncode == 2 and "no site 'nowhere-9' at the centre" in unknown.stderr
    future = alarmgw("city-1", "--month", "2999-01")
    assert future.returncode == 2 and "2999-01 has not begun" in future.stderr
    malformed = alarmgw("city-1", "--month", "2026-1")
    assert malformed.returncode == 2 and "'2026-1' is not a month as YYYY-MM" in malformed.stderr
