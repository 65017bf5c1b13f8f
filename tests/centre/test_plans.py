"""Plans across sites, from each site's asset register and maintenance plan: the visits due
or overdue (and those opening within the horizon), the warranties ending within it, and the
devices at or near their rated life. Pure tables first, then through a real broker, the
ingest worker, PostgreSQL and the desk."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre.desk_plans import plans
from alarmgw.diagnostics.assets import asset
from alarmgw.diagnostics.maintenance import plan
from alarmgw.gateway.messages import asset_messages
from tests.broker import Mosquitto
from tests.centre.test_desk_api import NOW, desk_pool, open_desk  # noqa: F401  (the fixture)
from tests.centre.workers import fresh_root, publish, scalar, until, worker

ROOT = "alarmgw"


def site_doc(site: str, commissioned: date, root: str = ROOT, at: datetime = NOW) -> tuple[str, bytes]:
    system = asset(site, "site", commissioned)
    assert system.warranty_until is not None
    devices = [
        asset("host-1", "host", commissioned),
        asset("smoke-1", "smoke_detector", commissioned, maker_warranty_months=24),
        asset("pir-9", "pir_detector", date(2020, 1, 1)),  # reused from an older site: near its rated life
    ]
    (m,) = asset_messages(
        f"{root}/{site}", site, at, devices, system.warranty_until, plan(commissioned, system.warranty_until)
    )
    return m.topic, m.payload


def test_plans_across_sites_from_a_table() -> None:
    today = date(2026, 3, 2)
    sites = [(s, json.loads(site_doc(s, c)[1])) for s, c in (("new-1", date(2026, 2, 16)), ("old-2", date(2025, 3, 5)))]
    got = plans(sites, today, days=14, months=6)
    # No visit is recorded at the centre, so the recent ones are overdue; older ones are history.
    assert [(v["site"], v["kind"], v["opens"], v["state"]) for v in got["visits"]] == [  # type: ignore[union-attr]
        ("old-2", "regular", "2025-09-05", "overdue"),  # closed 2025-12-04, within the 90 days shown
        ("old-2", "regular", "2025-12-05", "overdue"),
        ("old-2", "pre_expiry", "2026-02-23", "due"),  # old-2's warranty ends 2026-03-04
        ("new-1", "monthly", "2026-02-16", "due"),
        ("new-1", "monthly", "2026-03-16", "upcoming"),  # opens within the 14 days
    ]
    ending = [(d["site"], d["device"], d["warranty_until"]) for d in got["warranty_ending"]]  # type: ignore[union-attr]
    assert ending == [("old-2", "host-1", "2026-03-04")]  # its smoke detector has the maker's 24 months
    old = [(d["site"], d["device"], d["end_of_life"], d["reached"]) for d in got["end_of_life"]]  # type: ignore[union-attr]
    assert old == [("new-1", "pir-9", "2026-01-01", True), ("old-2", "pir-9", "2026-01-01", True)]
    assert plans(sites, today, days=0, months=0)["warranty_ending"] == []


@pytest.mark.parametrize(
    ("done_on", "state"),
    [
        (None, "overdue"),  # no visit recorded
        ("2025-12-20", "done"),  # inside its window (2025-12-05 to 2026-02-22)
        ("2025-12-04", "overdue"),  # a day before its window: another visit's
        ("2026-02-23", "overdue"),  # after it
    ],
)
def test_a_visit_the_site_recorded_inside_its_window_is_done(done_on: str | None, state: str) -> None:
    doc = json.loads(site_doc("old-2", date(2025, 3, 5))[1])
    regular = next(v for v in doc["visits"] if v["opens"] == "2025-12-05")
    regular["done_on"] = done_on
    got = plans([("old-2", doc)], date(2026, 3, 2), days=14, months=6)
    (visit,) = (v for v in got["visits"] if v["opens"] == "2025-12-05")  # type: ignore[union-attr]
    assert (visit["done_on"], visit["state"]) == (done_on, state)


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_sites_assets_reach_the_desks_plans(
    migrated: str,
    mosquitto: Mosquitto,
    desk_pool: AsyncConnectionPool,  # noqa: F811
) -> None:
    root = fresh_root()
    newer = site_doc("new-1", date(2026, 2, 16), root, at=datetime(2026, 3, 1, tzinfo=UTC))
    older = site_doc("new-1", date(2020, 1, 1), root, at=datetime(2026, 2, 1, tzinfo=UTC))
    await publish(mosquitto.port, [newer], retain=True)
    async with worker(migrated, mosquitto.port, root) as w:  # retained: taken when it subscribes
        await until([w], lambda: w.counters.handled() == 1)
        await publish(mosquitto.port, [older])  # an older register never replaces a newer one
        await until([w], lambda: w.counters.handled() == 2)
    assert (
        await scalar(migrated, "SELECT doc->>'warranty_until' FROM site_assets WHERE site_id = 'new-1'") == "2027-02-15"
    )
    await publish(mosquitto.port, [(newer[0], b"")], retain=True)  # clear the retained message
    desk = await open_desk(desk_pool)
    async with desk.http:
        r = await desk.http.get("/api/plans?days=14", headers=await desk.login("vera"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sites"] == 1 and body["today"] == NOW.date().isoformat()
    assert [(v["site"], v["kind"], v["state"]) for v in body["visits"]] == [
        ("new-1", "monthly", "due"),
        ("new-1", "monthly", "upcoming"),
    ]
