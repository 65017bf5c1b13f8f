"""Customers' complaints at the desk: recorded with the customer, site, channel, text and the
tickets they concern; acknowledged and resolved against their clocks; every step in the
complaint's history and the audit trail; refused when wrong; a report of the clocks met."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from alarmgw.clock import iso
from tests.centre.test_desk_api import NOW, Desk, desk_pool, open_desk  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

COMPLAINT = {
    "site": "city-1",
    "customer": "Riverside Logistics, Ms Adeyemi",
    "channel": "phone",
    "text": "The engineer came a day late and the siren\nstill sounds at night.",
    "tickets": ["1", "c1"],
}


@pytest_asyncio.fixture
async def desk(desk_pool: AsyncConnectionPool) -> AsyncIterator[Desk]:  # noqa: F811
    d = await open_desk(desk_pool, None, complaints={"acknowledge_within_h": 4, "resolve_within_days": 2})
    async with d.http:
        yield d


async def test_a_complaint_is_recorded_acknowledged_and_resolved_against_its_clocks(desk: Desk) -> None:
    eric, vera = await desk.login("eric"), await desk.login("vera")
    r = await desk.http.post("/api/complaints", json=COMPLAINT, headers=vera)
    assert r.status_code == 403  # a viewer reads, does not record
    received = NOW - timedelta(hours=1)
    r = await desk.http.post("/api/complaints", json={**COMPLAINT, "received_at": iso(received)}, headers=eric)
    assert r.status_code == 201, r.text
    c = r.json()
    assert (c["site"], c["channel"], c["tickets"], c["recorded_by"]) == ("city-1", "phone", ["1", "c1"], "eric")
    assert c["text"] == COMPLAINT["text"]
    assert c["clocks"]["acknowledge"] == {
        "due": iso(received + timedelta(hours=4)),
        "state": "running",
        "remaining_s": 3 * 3600.0,
        "stopped_at": None,
    }
    url = f"/api/complaints/{c['id']}"
    r = await desk.http.post(f"{url}/resolve", json={"note": "apologised"}, headers=eric)
    assert r.status_code == 409 and "acknowledge it first" in r.json()["detail"]
    desk.clock.advance(3600)
    r = await desk.http.post(f"{url}/acknowledge", json={"note": "called her back"}, headers=eric)
    assert r.status_code == 200 and r.json()["clocks"]["acknowledge"]["state"] == "met"
    assert (await desk.http.post(f"{url}/acknowledge", json={}, headers=eric)).status_code == 409
    r = await desk.http.post(f"{url}/resolve", json={"note": "  "}, headers=eric)
    assert r.status_code == 422 and "how it was resolved" in r.json()["detail"]
    desk.clock.advance(3 * 86400)  # past the 2 days allowed
    eric, vera = await desk.login("eric"), await desk.login("vera")  # a login lasts a shift
    listed = (await desk.http.get("/api/complaints", headers=vera)).json()["complaints"]
    assert [x["id"] for x in listed] == [c["id"]] and listed[0]["clocks"]["resolve"]["state"] == "breached"
    r = await desk.http.post(f"{url}/resolve", json={"note": "siren replaced, visit fee waived"}, headers=eric)
    assert r.status_code == 200
    done = r.json()
    assert (done["resolution"], done["clocks"]["resolve"]["state"]) == ("siren replaced, visit fee waived", "breached")
    assert [h["action"] for h in done["history"]] == ["recorded", "acknowledge", "resolve"]
    assert (await desk.http.get("/api/complaints", headers=vera)).json()["complaints"] == []  # none open
    assert len((await desk.http.get("/api/complaints?open=false", headers=vera)).json()["complaints"]) == 1
    report = (await desk.http.get(f"/api/complaints/report?since={NOW.date()}", headers=vera)).json()
    assert report["complaints"] == 1
    assert report["clocks"]["acknowledge"] == {"met": 1.0, "breached": 0.0, "running": 0.0, "share_met": 1.0}
    assert report["clocks"]["resolve"]["share_met"] == 0.0
    trail = [(u, a, res.split(":")[0]) for u, a, t, res in await desk.audit() if t.startswith("complaint/")]
    assert trail == [
        ("eric", "complaint", "ok"),
        ("eric", "resolve", "refused"),
        ("eric", "acknowledge", "ok"),
        ("eric", "acknowledge", "refused"),
        ("eric", "resolve", "refused"),
        ("eric", "resolve", "ok"),
    ]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"channel": "carrier pigeon"}, "channel"),
        ({"site": "../etc"}, "site"),
        ({"tickets": ["17; DROP TABLE"]}, "not a ticket ref"),
        ({"text": ""}, "text"),
        ({"text": "x" * 4001}, "text"),
        ({"customer": "bell\x07"}, "customer"),
        ({"received_at": "2026-03-02T10:00:00"}, "UTC offset"),
        ({"received_at": iso(NOW + timedelta(days=1))}, "not in the future"),
        ({"received_at": iso(NOW - timedelta(days=31))}, "within the last 30 days"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_wrong_complaint_is_refused_saying_what_is_wrong(
    desk: Desk, change: dict[str, object], says: str
) -> None:
    r = await desk.http.post("/api/complaints", json={**COMPLAINT, **change}, headers=await desk.login("dora"))
    assert r.status_code == 422, r.text
    assert says in r.text
    assert (await desk.http.get("/api/complaints/999", headers=await desk.login("vera"))).status_code == 404


async def test_text_no_encoding_carries_is_refused_not_a_crash(desk: Desk) -> None:
    """A lone surrogate in a field that fails validation once made the refusal itself fail (500)."""
    headers = {**await desk.login("dora"), "content-type": "application/json"}
    body = json.dumps({**COMPLAINT, "channel": "\ud800"})  # sent as the escape \ud800
    r = await desk.http.post("/api/complaints", content=body.encode(), headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "channel"]
