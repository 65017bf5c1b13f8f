"""Spare parts at the service centre, over a real PostgreSQL: depots and their stock made and
counted at the desk; a ticket's part reserved when the site's ticket is dispatched, consumed
when it is resolved, released when it closes unresolved or a dispatcher lets it go, each
once whatever is delivered twice or late (through the real parse and batch writer, two
writers at once, and a real broker and ingest worker); the part out on a ticket its depot has
none for, served first when parts come in; low stock; refusals named and audited."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import batch, parse
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.messages import OutboxMessage, ticket_messages
from tests.broker import Mosquitto
from tests.centre.test_desk_api import (  # noqa: F401  (desk_pool: the fixture)
    NOW,
    ROOT,
    Desk,
    RecordingRelay,
    desk_pool,
    gateway_ticket,
    ingest,
    open_desk,
)
from tests.centre.workers import fresh_root, publish, rows_until, worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BATTERY = "battery (CR123A or the model's own)"
LIFE = [TicketState.ACKNOWLEDGED, TicketState.DISPATCHED, TicketState.ON_SITE, TicketState.RESOLVED]


def versions(
    site: str, tid: int, part: str, in_warranty: bool | None = None, dispatched_min_ago: float = 30
) -> list[Ticket]:
    """A ticket's versions: opened, acknowledged, dispatched, on site, resolved, closed."""
    diagnosis = {"cause": "battery at end of life", "fix": "replace the battery", "part": part, "repair": "accessory"}
    t = gateway_ticket(site, tid, "low_battery", "smoke-1", 60, diagnosis=diagnosis, in_warranty=in_warranty)
    out = [t]
    for i, state in enumerate([*LIFE, TicketState.CLOSED]):
        out.append(out[-1].moved(state, NOW - timedelta(minutes=dispatched_min_ago + 10 - 5 * i)))
    return out


def closed_unresolved(t: Ticket) -> Ticket:
    """A dispatched ticket closed without being resolved (the site's own say)."""
    return dataclasses.replace(t, state=TicketState.CLOSED, closed_at=NOW, version=t.version + 1)


def messages(*tickets: Ticket) -> list[OutboxMessage]:
    return [
        m
        for t in tickets
        for m in ticket_messages(
            f"{ROOT}/{t.site_id}", t, "opened" if t.version == 1 else t.state.value, t.last_stamp()
        )
    ]


async def send(pool: AsyncConnectionPool, *tickets: Ticket) -> None:
    """Each version as a worker takes it, one batch each, in the order given."""
    await ingest(pool, messages(*tickets))


_TOKENS: dict[tuple[int, str], dict[str, str]] = {}


@pytest_asyncio.fixture
async def desk(desk_pool: AsyncConnectionPool) -> AsyncIterator[Desk]:  # noqa: F811
    async with desk_pool.connection() as conn:
        await conn.execute("TRUNCATE depots, depot_sites, depot_stock, part_uses, part_moves RESTART IDENTITY")
    _TOKENS.clear()  # each test's desk has users of its own
    d = await open_desk(desk_pool, RecordingRelay(), requests_per_s=10_000)  # the desk's clock stands still
    async with d.http:
        yield d


async def login(desk: Desk, name: str) -> dict[str, str]:
    """A user's headers, logged in once per desk (logins are bounded: ten, then one every two seconds)."""
    key = (id(desk.http), name)
    if key not in _TOKENS:
        _TOKENS[key] = await desk.login(name)
    return _TOKENS[key]


async def line(desk: Desk, depot: str, part: str) -> dict[str, Any]:
    r = await desk.http.get(f"/api/parts/depots/{depot}", headers=await login(desk, "vera"))
    assert r.status_code == 200, r.text
    (got,) = [x for x in r.json()["stock"] if x["part"] == part]
    return dict(got)


async def part_of(desk: Desk, site: str, ref: str) -> dict[str, Any] | None:
    r = await desk.http.get(f"/api/tickets/{site}/{ref}", headers=await login(desk, "vera"))
    assert r.status_code == 200, r.text
    part: dict[str, Any] | None = r.json()["part"]
    return part


async def journal(desk: Desk, **params: str) -> list[tuple[object, ...]]:
    r = await desk.http.get("/api/parts/moves", params=params, headers=await login(desk, "vera"))
    assert r.status_code == 200, r.text
    return [
        (m["kind"], m["quantity"], m["site"], m["ticket"], m["billable"], m["by"]) for m in reversed(r.json()["moves"])
    ]


async def test_a_dispatched_tickets_part_is_reserved_then_consumed_once_whatever_comes_twice_or_late(
    desk: Desk,
) -> None:
    dora, eric = await login(desk, "dora"), await login(desk, "eric")
    assert (await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)).status_code == 201
    r = await desk.http.post(
        "/api/parts/depots/north/receipt", json={"part": BATTERY, "quantity": 2, "low_at": 0}, headers=eric
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "depot": "north", "part": BATTERY, "on_hand": 2, "reserved": 0, "free": 2, "low_at": 0, "low": False,
        "reserved_for": [],
    }  # fmt: skip
    v = versions("city-7", 5, BATTERY, in_warranty=False)
    await send(desk.pool, v[0], v[1])
    assert (await part_of(desk, "city-7", "5")) == {
        "name": BATTERY, "depot": "north", "use": None, "out": False, "free": 2, "billable": None,
        "why": "2 free at depot north",
    }  # fmt: skip
    await send(desk.pool, v[2], v[2], v[1], v[2])  # dispatched, again, the older acknowledgement, again
    assert {k: (await line(desk, "north", BATTERY))[k] for k in ("on_hand", "reserved", "free")} == {
        "on_hand": 2, "reserved": 1, "free": 1,
    }  # fmt: skip
    got = await part_of(desk, "city-7", "5")
    assert got is not None and (got["use"], got["out"], got["billable"]) == ("reserved", False, True)
    await send(desk.pool, v[4], v[3], v[4], v[2], v[5], v[4])  # resolved, then older ones, again, closed
    assert {k: (await line(desk, "north", BATTERY))[k] for k in ("on_hand", "reserved", "free")} == {
        "on_hand": 1, "reserved": 0, "free": 1,
    }  # fmt: skip
    got = await part_of(desk, "city-7", "5")
    assert got is not None and got["use"] == "consumed"
    assert got["why"] == "used from depot north, charged at cost (out of warranty)"
    assert await journal(desk) == [
        ("receipt", 2, None, None, None, "eric"),
        ("reserve", 0, "city-7", "5", True, "centre"),
        ("consume", -1, "city-7", "5", True, "centre"),
    ]
    # In warranty: not billable; the resolution came before the dispatch was seen: taken at once.
    w = versions("city-7", 6, BATTERY, in_warranty=True)
    await send(desk.pool, w[4], w[2])
    assert await journal(desk, site="city-7", kind="consume") == [
        ("consume", -1, "city-7", "5", True, "centre"),
        ("consume", -1, "city-7", "6", False, "centre"),
    ]
    # Unknown warranty, and nothing free any more: the use is recorded, the stock untouched.
    u = versions("city-7", 8, BATTERY)
    await send(desk.pool, u[4])
    assert (await journal(desk, kind="consume"))[-1] == ("consume", 0, "city-7", "8", None, "centre")
    assert (await line(desk, "north", BATTERY))["on_hand"] == 0


async def test_a_ticket_closed_unresolved_or_let_go_by_a_dispatcher_gives_its_part_back(desk: Desk) -> None:
    dora, eric = await login(desk, "dora"), await login(desk, "eric")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.post("/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 3}, headers=eric)
    a, b = versions("city-7", 1, "PSU"), versions("city-8", 1, "PSU")
    await send(desk.pool, *a[:3], *b[:3])
    assert (await line(desk, "north", "PSU"))["reserved"] == 2
    await send(desk.pool, closed_unresolved(a[2]), closed_unresolved(a[2]))
    assert (await line(desk, "north", "PSU"))["reserved"] == 1
    assert (await part_of(desk, "city-7", "1") or {})["use"] == "released"

    url = "/api/tickets/city-8/1/part/release"
    r = await desk.http.post(url, json={"note": "the van had one"}, headers=eric)
    assert r.status_code == 403  # an engineer does not let parts go
    r = await desk.http.post(url, json={"note": "the van had one"}, headers=dora)
    assert r.status_code == 200, r.text
    assert r.json()["part"]["use"] == "released"
    assert (await desk.http.post(url, json={}, headers=dora)).status_code == 409
    r = await desk.http.post("/api/tickets/city-9/1/part/release", json={}, headers=dora)
    assert r.status_code == 404 and "no part is reserved or awaited" in r.json()["detail"]
    await send(desk.pool, *b[3:])  # resolved later: the part let go is not taken again
    assert {k: (await line(desk, "north", "PSU"))[k] for k in ("on_hand", "reserved")} == {"on_hand": 3, "reserved": 0}
    assert await journal(desk) == [
        ("receipt", 3, None, None, None, "eric"),
        ("reserve", 0, "city-7", "1", None, "centre"),
        ("reserve", 0, "city-8", "1", None, "centre"),
        ("release", 0, "city-7", "1", None, "centre"),
        ("release", 0, "city-8", "1", None, "dora"),
    ]
    trail = [(u, a, t, res.split(":")[0]) for u, a, t, res in await desk.audit() if a == "part_release"]
    assert trail == [
        ("eric", "part_release", "city-8/1", "refused"),
        ("dora", "part_release", "city-8/1", "ok"),
        ("dora", "part_release", "city-8/1", "refused"),
        ("dora", "part_release", "city-9/1", "refused"),
    ]


async def test_a_part_out_shows_on_its_ticket_and_parts_received_go_to_the_oldest_dispatch_first(desk: Desk) -> None:
    dora, eric, vera = await login(desk, "dora"), await login(desk, "eric"), await login(desk, "vera")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.put("/api/parts/depots/south", json={}, headers=dora)
    r = await desk.http.post(
        "/api/parts/depots/south/sites", json={"sites": ["city-8", "city-9", "city-8"]}, headers=dora
    )
    assert r.status_code == 200 and r.json() == {"depot": "south", "sites": 2, "not_heard_from": ["city-8", "city-9"]}
    first, second = (
        versions("city-8", 1, "PSU", dispatched_min_ago=40),
        versions("city-9", 1, "PSU", dispatched_min_ago=20),
    )
    await send(desk.pool, first[1])
    got = await part_of(desk, "city-8", "1")
    assert got is not None and (got["depot"], got["out"], got["free"]) == (
        "south",
        True,
        0,
    )  # acknowledged: none to send
    assert got["why"].startswith("part out: none free at depot south; the repair clock cannot be met")
    await send(desk.pool, second[2], first[2])  # the later dispatch arrives first
    body = (await desk.http.get("/api/parts", headers=vera)).json()
    assert [(o["site"], o["ref"], o["use"], o["depot"]) for o in body["out"]] == [
        ("city-8", "1", "waiting", "south"),
        ("city-9", "1", "waiting", "south"),
    ]
    ticket = (await desk.http.get("/api/tickets/city-8/1", headers=vera)).json()
    assert body["out"][0]["repair_due"] == ticket["clocks"]["repair"]["due"]
    assert [(x["depot"], x["part"], x["on_hand"], x["low"]) for x in body["low"]] == [("south", "PSU", 0, True)]
    assert [(d["name"], d["default"], d["sites"]) for d in body["depots"]] == [("north", True, 0), ("south", False, 2)]
    listed = (await desk.http.get("/api/tickets", params={"site": "city-9"}, headers=vera)).json()["tickets"]
    assert [(t["ref"], t["part"]["out"]) for t in listed] == [("1", True)]

    r = await desk.http.post("/api/parts/depots/south/receipt", json={"part": "PSU", "quantity": 1}, headers=eric)
    assert r.status_code == 200, r.text
    assert (r.json()["free"], r.json()["reserved_for"]) == (0, [{"site": "city-8", "ref": "1"}])  # dispatched first
    assert (await part_of(desk, "city-8", "1") or {})["use"] == "reserved"
    assert (await part_of(desk, "city-9", "1") or {})["out"] is True
    # The first ticket's part let go: the waiting one has it at once.
    assert (await desk.http.post("/api/tickets/city-8/1/part/release", json={}, headers=dora)).status_code == 200
    assert (await part_of(desk, "city-9", "1") or {})["use"] == "reserved"
    assert (await desk.http.get("/api/parts", headers=vera)).json()["out"] == []
    assert [m[:4] for m in await journal(desk, depot="south")] == [
        ("receipt", 1, None, None),
        ("reserve", 0, "city-8", "1"),
        ("release", 0, "city-8", "1"),
        ("reserve", 0, "city-9", "1"),
    ]


async def test_a_site_no_depot_serves_is_said_so_and_takes_nothing(desk: Desk) -> None:
    v = versions("city-7", 1, BATTERY)
    await send(desk.pool, *v[:3])
    got = await part_of(desk, "city-7", "1")
    assert got is not None and (got["depot"], got["out"]) == (None, False)
    assert got["why"] == "no depot serves site city-7: map it to one, or name a default depot"
    assert await journal(desk) == []
    assert (await part_of(desk, "city-1", "2")) is None  # a ticket whose diagnosis names no part
    assert (await part_of(desk, "north-4", "c1")) is None  # the centre's own


async def test_the_default_depot_is_one_and_a_site_mapped_elsewhere_leaves_it(desk: Desk) -> None:
    dora = await login(desk, "dora")
    assert (await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)).status_code == 201
    assert (await desk.http.put("/api/parts/depots/south", json={"default": True}, headers=dora)).status_code == 201
    assert (await desk.http.put("/api/parts/depots/south", json={"default": True}, headers=dora)).status_code == 200
    depots = (await desk.http.get("/api/parts", headers=dora)).json()["depots"]
    assert [(d["name"], d["default"]) for d in depots] == [("north", False), ("south", True)]
    await desk.http.post("/api/parts/depots/north/sites", json={"sites": ["city-1"]}, headers=dora)
    one = (await desk.http.get("/api/parts/depots/north", headers=dora)).json()
    assert (one["default"], one["sites"]) == (False, ["city-1"])
    await send(desk.pool, versions("city-1", 9, "PSU")[1], versions("city-2", 9, "PSU")[1])
    assert (await part_of(desk, "city-1", "9") or {})["depot"] == "north"
    assert (await part_of(desk, "city-2", "9") or {})["depot"] == "south"
    r = await desk.http.get("/api/parts/depots/east", headers=dora)
    assert r.status_code == 404 and r.json()["detail"].startswith("no depot 'east' (depots: north, south)")


BAD = [
    # (method, path, body, status, words in the detail)
    ("post", "/api/parts/depots/east/receipt", {"part": "PSU", "quantity": 1}, 404, "no depot 'east'"),
    ("post", "/api/parts/depots/north/receipt", {"part": "battry", "quantity": 1}, 422, "no diagnosis names 'battry'"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": -1}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 0}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 10**30}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": True}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": "3"}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 1.5}, 422, "quantity"),
    ("post", "/api/parts/depots/north/receipt", {"part": "P" * 201, "quantity": 1}, 422, "part"),
    ("post", "/api/parts/depots/north/receipt", {"part": "none", "quantity": 1}, 422, "name the part"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PS\u0000U", "quantity": 1}, 422, "part"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 1, "note": "n" * 501}, 422, "note"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 1, "colour": "red"}, 422, "colour"),
    ("post", "/api/parts/depots/north/receipt", {"part": "PSU", "quantity": 10_000, "low_at": -1}, 422, "low_at"),
    ("post", "/api/parts/depots/north/count", {"part": "PSU", "on_hand": 1}, 409, "are reserved for tickets"),
    ("post", "/api/parts/depots/north/count", {"part": "PSU", "on_hand": 1_000_001}, 422, "on_hand"),
    ("post", "/api/parts/depots/north/count", {"part": "repeater", "on_hand": 1}, 404, "holds no 'repeater'"),
    ("post", "/api/parts/depots/north/threshold", {"part": "repeater", "low_at": 1}, 404, "holds no 'repeater'"),
    ("post", "/api/parts/depots/north/sites", {"sites": []}, 422, "sites"),
    ("post", "/api/parts/depots/north/sites", {"sites": ["../etc"]}, 422, "sites"),
    ("post", "/api/parts/depots/north/sites", {"sites": [f"s{i}" for i in range(1001)]}, 422, "sites"),
    ("put", "/api/parts/depots/no%20such", {}, 422, "depot"),
    ("put", "/api/parts/depots/" + "d" * 65, {}, 422, "depot"),
    ("get", "/api/parts/moves?kind=theft", None, 422, "kind"),
    ("get", "/api/parts/moves?limit=100000", None, 422, "limit"),
]


async def test_wrong_stock_changes_are_refused_naming_what_was_wrong_and_audited(desk: Desk) -> None:
    dora, eric, vera = await login(desk, "dora"), await login(desk, "eric"), await login(desk, "vera")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.post("/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 2}, headers=eric)
    await send(desk.pool, *versions("city-7", 1, "PSU")[:3], *versions("city-8", 1, "PSU")[:3])  # both reserved
    for method, path, body, status, words in BAD:
        r = await desk.http.request(method.upper(), path, json=body, headers=dora)
        assert r.status_code == status, (path, body, r.text)
        assert words in r.text, (path, body, r.text)
    assert (
        await desk.http.post("/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 1}, headers=vera)
    ).status_code == 403
    assert (
        await desk.http.post("/api/parts/depots/north/count", json={"part": "PSU", "on_hand": 3}, headers=eric)
    ).status_code == 403
    # A part no diagnosis names is stocked when said to be new; a count and a threshold correct it.
    r = await desk.http.post(
        "/api/parts/depots/north/receipt", json={"part": "siren", "quantity": 4, "new_part": True}, headers=eric
    )
    assert r.status_code == 200 and r.json()["on_hand"] == 4
    r = await desk.http.post(
        "/api/parts/depots/north/count", json={"part": "siren", "on_hand": 3, "note": "one broken"}, headers=dora
    )
    assert (r.status_code, r.json()["on_hand"]) == (200, 3)
    r = await desk.http.post("/api/parts/depots/north/threshold", json={"part": "siren", "low_at": 3}, headers=dora)
    assert (r.status_code, r.json()["low"]) == (200, True)
    r = await desk.http.post("/api/parts/depots/north/count", json={"part": "PSU", "on_hand": 995_000}, headers=dora)
    assert r.status_code == 200
    r = await desk.http.post("/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 10_000}, headers=eric)
    assert r.status_code == 422 and "at most 1000000" in r.json()["detail"]
    assert (await line(desk, "north", "PSU"))["on_hand"] == 995_000  # the refused one changed nothing
    trail = [(u, a, t, res.split(":")[0]) for u, a, t, res in await desk.audit() if a.startswith(("part_", "depot"))]
    assert trail[:2] == [("dora", "depot", "depot/north", "ok"), ("eric", "part_receipt", "depot/north", "ok")]
    refused = [(a, res) for _u, a, _t, res in trail if res == "refused"]
    assert refused[:6] == [
        ("part_receipt", "refused"),  # unknown depot
        ("part_receipt", "refused"),  # unknown part
        ("part_count", "refused"),  # below what is reserved
        ("part_count", "refused"),  # a part the depot does not hold
        ("part_threshold", "refused"),
        ("part_receipt", "refused"),  # a viewer
    ]
    assert ("dora", "part_count", "depot/north", "ok") in trail and (
        "dora",
        "part_threshold",
        "depot/north",
        "ok",
    ) in trail
    assert trail[-1] == ("eric", "part_receipt", "depot/north", "refused")  # past the most a depot holds


async def test_a_part_that_goes_low_is_said_once_by_the_batch_that_made_it_low(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    dora, eric = await login(desk, "dora"), await login(desk, "eric")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.post(
        "/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 3, "low_at": 1}, headers=eric
    )
    book = batch.SiteBook(ROOT, lambda s: "city")
    lows = []
    for site in ("city-7", "city-8", "city-9"):
        for m in messages(*versions(site, 1, "PSU")[:3]):
            async with desk.pool.connection() as conn:
                written = await batch.write(
                    conn,
                    [batch.Incoming(m.topic, m.payload, parse.parse(ROOT, m.topic, m.payload, 1 << 20))],
                    NOW,
                    book,
                )
            lows += [low.describe() for low in written.parts_low]
    assert lows == ["depot north: PSU is low (1 free, low at 1)"]  # the second reservation; the third is low already
    with caplog.at_level(logging.WARNING):
        r = await desk.http.post("/api/parts/depots/north/receipt", json={"part": "PSU", "quantity": 5}, headers=eric)
        assert r.json()["low"] is False
        r = await desk.http.post("/api/parts/depots/north/count", json={"part": "PSU", "on_hand": 4}, headers=dora)
        assert (r.json()["free"], r.json()["low"]) == (1, True)
    assert "depot north: PSU is low (1 free, low at 1)" in caplog.text


async def test_two_writers_delivering_the_same_versions_at_once_move_each_part_once(desk: Desk) -> None:
    dora, eric = await login(desk, "dora"), await login(desk, "eric")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.post("/api/parts/depots/north/receipt", json={"part": BATTERY, "quantity": 20}, headers=eric)
    book = batch.SiteBook(ROOT, lambda s: "city")
    tickets = [versions(f"city-{i}", i, BATTERY) for i in range(1, 11)]

    async def writer(order: list[Ticket]) -> None:
        for m in messages(*order):
            incoming = [batch.Incoming(m.topic, m.payload, parse.parse(ROOT, m.topic, m.payload, 1 << 20))]
            async with desk.pool.connection() as conn:
                await batch.write(conn, incoming, NOW, book)

    dispatched = [t[2] for t in tickets]
    resolved = [t[4] for t in tickets]
    await asyncio.gather(writer(dispatched + resolved), writer(list(reversed(dispatched + resolved))), writer(resolved))
    got = await line(desk, "north", BATTERY)
    assert (got["on_hand"], got["reserved"]) == (10, 0)
    kinds = [m[0] for m in await journal(desk, limit="1000")]
    assert (kinds.count("reserve"), kinds.count("consume")) == (10, 10)


async def test_through_the_broker_and_an_ingest_worker_a_repeated_dispatch_reserves_once(
    desk: Desk, mosquitto: Mosquitto, migrated: str
) -> None:
    dora, eric = await login(desk, "dora"), await login(desk, "eric")
    await desk.http.put("/api/parts/depots/north", json={"default": True}, headers=dora)
    await desk.http.post("/api/parts/depots/north/receipt", json={"part": BATTERY, "quantity": 2}, headers=eric)
    root = fresh_root()
    v = versions("site-1", 3, BATTERY, in_warranty=False)
    stream = [
        dataclasses.replace(m, topic=m.topic.replace(ROOT, root, 1)) for m in messages(v[1], v[2], v[2], v[1], v[2])
    ]
    dsn = migrated  # the database the desk's pool is on
    async with worker(dsn, mosquitto.port, root):
        await publish(mosquitto.port, stream)
        got = await rows_until(dsn, "SELECT string_agg(state, ',') FROM part_uses WHERE site_id = 'site-1'", "reserved")
        assert got == "reserved"
        await publish(
            mosquitto.port,
            [dataclasses.replace(m, topic=m.topic.replace(ROOT, root, 1)) for m in messages(v[4], v[3], v[4])],
        )
        got = await rows_until(dsn, "SELECT string_agg(state, ',') FROM part_uses WHERE site_id = 'site-1'", "consumed")
        assert got == "consumed"
    assert await journal(desk, site="site-1") == [
        ("reserve", 0, "site-1", "3", True, "centre"),
        ("consume", -1, "site-1", "3", True, "centre"),
    ]
