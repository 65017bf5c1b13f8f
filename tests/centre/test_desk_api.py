"""The desk's HTTP API against a real PostgreSQL filled through the real ingest path (the
gateway's own messages, parsed and written as a worker does), over httpx's ASGI transport."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre import batch, db, desk_auth, liveness, parse
from alarmgw.centre.desk_api import DeskConfig, RelayRefused, build_app, make_server
from alarmgw.clock import ManualClock, iso
from alarmgw.diagnostics.tickets import Ticket, TicketState
from alarmgw.gateway.messages import OutboxMessage, telemetry_messages, ticket_messages
from alarmgw.model import Reading

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ROOT = "alarmgw"
PASSWORD = "correct horse battery"
AREAS = {"north-1": "suburb", "north-2": "suburb", "north-3": "suburb", "north-4": "suburb"}
# The open tickets, nearest breach first: (site, ref, minutes to the nearest breach).
EXPECTED_ORDER = [
    ("city-2", "4", -10),  # tamper, response 10 min late
    ("city-1", "1", 10),  # low battery, response due in 10 min
    ("north-4", "c1", 20),  # the centre's own: the site went dark 40 min ago
    ("north-1", "1", 55),  # mains loss, three suburb sites within minutes: an incident
    ("north-2", "1", 56),
    ("north-3", "1", 57),
    ("city-1", "2", 90),  # acknowledged (response met): arrival due 2 h after detection
]


def gateway_ticket(site: str, tid: int, fault: str, device: str, opened_min_ago: float, **kw: object) -> Ticket:
    opened = NOW - timedelta(minutes=opened_min_ago)
    return Ticket(
        tid,
        site,
        device,
        kw.pop("kind", "smoke_detector"),  # type: ignore[arg-type]
        fault,
        fault.replace("_", " ").capitalize(),
        "hall ceiling",
        AREAS.get(site, "city"),  # type: ignore[arg-type]
        "accessory" if fault == "low_battery" else "equipment",
        "high",
        opened,
        opened + timedelta(seconds=10),
        **kw,  # type: ignore[arg-type]
    )


def moved(t: Ticket, *moves: tuple[TicketState, float]) -> list[Ticket]:
    """The ticket's versions: as opened, then after each (state, minutes ago) move."""
    out = [t]
    for state, ago in moves:
        out.append(out[-1].moved(state, NOW - timedelta(minutes=ago)))
    return out


def fleet() -> list[list[Ticket]]:
    diagnosis = {"cause": "battery at end of life", "fix": "replace the battery", "confidence": "high"}
    return [
        moved(
            gateway_ticket("city-1", 3, "low_battery", "smoke-1", 14_400, evidence={"battery_v": 2.6}),
            (TicketState.ACKNOWLEDGED, 14_390),
            (TicketState.RESOLVED, 14_300),
            (TicketState.CLOSED, 14_200),
        ),
        moved(
            gateway_ticket("city-1", 1, "low_battery", "smoke-1", 50, evidence={"battery_v": 2.41}, diagnosis=diagnosis)
        ),
        moved(
            gateway_ticket("city-1", 2, "comm_loss", "pir-2", 30, kind="pir_detector"), (TicketState.ACKNOWLEDGED, 20)
        ),
        moved(gateway_ticket("city-2", 4, "tamper", "pir-1", 70, kind="pir_detector")),
        moved(
            gateway_ticket("city-2", 3, "tamper", "pir-1", 200, kind="pir_detector"),
            (TicketState.ACKNOWLEDGED, 190),
            (TicketState.RESOLVED, 180),
            (TicketState.CLOSED, 170),
        ),
        *(moved(gateway_ticket(f"north-{i}", 1, "mains_loss", "main-panel", 6 - i, kind="psu")) for i in (1, 2, 3)),
    ]


async def ingest(pool: AsyncConnectionPool, messages: list[OutboxMessage]) -> None:
    """Each message as a worker takes it: parsed, then written in its own batch."""
    book = batch.SiteBook(ROOT, lambda s: AREAS.get(s, "city"))
    async with pool.connection() as conn:
        for m in messages:
            incoming = batch.Incoming(m.topic, m.payload, parse.parse(ROOT, m.topic, m.payload, 1 << 20))
            written = await batch.write(conn, [incoming], NOW, book)
            assert written.dead == 0, written.reasons


async def seed(pool: AsyncConnectionPool) -> None:
    """Six sites, the tickets of `fleet`, telemetry of one detector, a site gone dark."""
    messages = []
    for versions in fleet():
        for i, t in enumerate(versions):
            messages += ticket_messages(f"{ROOT}/{t.site_id}", t, "opened" if i == 0 else t.state.value, t.last_stamp())
    reading = Reading("smoke-1", NOW - timedelta(minutes=1), {"battery_v": 2.38, "rssi_dbm": -75, "tamper": False})
    messages += telemetry_messages(f"{ROOT}/city-1", "city-1", [reading])
    messages += [OutboxMessage("status", f"{ROOT}/north-4/status", b"online")]
    messages += [OutboxMessage("status", f"{ROOT}/city-2/status", b"offline")]
    await ingest(pool, messages)
    dark = liveness.dark_ticket("north-4", "suburb", NOW - timedelta(minutes=40), NOW, 1, "silent for 300 s")
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO centre_tickets (site_id, fault, state, fault_active, opened_at, dark_since, version,"
            " ticket, site_open, history) VALUES (%s, %s, 'open', true, %s, %s, 1, %s, '[]', %s)",
            (
                "north-4",
                liveness.FAULT,
                dark.opened_at,
                dark.opened_at,
                json.dumps(liveness.ticket_doc(dark, NOW)),
                json.dumps([{"at": "2026-03-02T09:20:00.000Z", "action": "opened", "by": "centre", "note": ""}]),
            ),
        )
    for name, role in (("vera", "viewer"), ("eric", "engineer"), ("dora", "dispatcher")):
        await desk_auth.add_user(pool, name, role, PASSWORD, NOW)


@dataclass
class RecordingRelay:
    """Stands where the signed-command relay will be: records each move; refuses on demand."""

    moves: list[tuple[str, int, str, str, str, datetime]] = field(default_factory=list)
    refuse: str | None = None

    async def move(self, site: str, ticket_id: int, action: str, engineer: str, note: str, made_at: datetime) -> None:
        if self.refuse:
            raise RelayRefused(self.refuse)
        self.moves.append((site, ticket_id, action, engineer, note, made_at))


@pytest_asyncio.fixture
async def desk_pool(migrated: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open pool on the migrated database, the desk's tables emptied, the fleet seeded."""
    pool = db.pool(migrated, 4)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute("TRUNCATE desk_users, desk_tokens, desk_audit, desk_assignments")
        await seed(pool)
        yield pool
    finally:
        await pool.close()


@dataclass
class Desk:
    http: httpx.AsyncClient
    clock: ManualClock
    pool: AsyncConnectionPool
    relay: RecordingRelay | None

    async def login(self, name: str) -> dict[str, str]:
        r = await self.http.post("/api/login", json={"name": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"authorization": f"Bearer {r.json()['token']}"}

    async def audit(self) -> list[tuple[str, str, str, str]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT user_name, action, target, result FROM desk_audit ORDER BY id")
            return [(str(a), str(b), str(c), str(d)) for a, b, c, d in await cur.fetchall()]


async def open_desk(pool: AsyncConnectionPool, relay: RecordingRelay | None = None, **cfg: object) -> Desk:
    clock = ManualClock(NOW)
    app = build_app(pool, DeskConfig.model_validate(cfg), clock, relay)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return Desk(httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1"), clock, pool, relay)


@pytest_asyncio.fixture
async def desk(desk_pool: AsyncConnectionPool) -> AsyncIterator[Desk]:
    d = await open_desk(desk_pool, RecordingRelay())
    async with d.http:
        yield d


async def test_login_gives_a_token_that_expires_and_every_try_is_audited(desk: Desk) -> None:
    r = await desk.http.post("/api/login", json={"name": "vera", "password": "wrong password"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong name or password"
    r = await desk.http.post("/api/login", json={"name": "nobody", "password": PASSWORD})
    assert r.status_code == 401
    headers = await desk.login("vera")
    r = await desk.http.get("/api/me", headers=headers)
    assert r.json()["name"] == "vera" and r.json()["role"] == "viewer"
    desk.clock.advance(8 * 3600 + 1)  # past the default lifetime
    r = await desk.http.get("/api/me", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert await desk.audit() == [
        ("vera", "login", "", "refused: wrong name or password"),
        ("nobody", "login", "", "refused: wrong name or password"),
        ("vera", "login", "", "ok"),
    ]
    async with desk.pool.connection() as conn:  # only the hash is kept
        cur = await conn.execute(
            "SELECT count(*) FROM desk_tokens WHERE token_sha256 = %s", (headers["authorization"][7:].encode(),)
        )
        assert await cur.fetchone() == (0,)


async def test_logout_ends_the_token(desk: Desk) -> None:
    headers = await desk.login("eric")
    assert (await desk.http.post("/api/logout", headers=headers)).status_code == 200
    assert (await desk.http.get("/api/tickets", headers=headers)).status_code == 401


async def test_every_path_but_the_login_wants_a_token_before_reading_a_body(desk: Desk) -> None:
    spec = (await desk.http.get("/api/openapi.json")).json()
    assert "/api/tickets/{site}/{ref}/assign" in spec["paths"]
    for path, methods in spec["paths"].items():
        url = path.replace("{site}", "city-1").replace("{ref}", "1")
        for method in methods:
            if path == "/api/login":
                continue
            desk.clock.advance(0.1)  # more paths than one client's burst: the rate bound refills between them
            r = await desk.http.request(method.upper(), url, content=b"x" * 100_000)  # over the body cap
            assert r.status_code == 401, (method, path, r.status_code)
    r = await desk.http.get("/api/tickets", headers={"authorization": "Bearer " + "A" * 43})
    assert r.status_code == 401


async def test_open_tickets_come_nearest_breach_first_gateway_and_centre_alike(desk: Desk) -> None:
    body = (await desk.http.get("/api/tickets", headers=await desk.login("vera"))).json()
    got = [(t["site"], t["ref"], round(t["to_breach_s"] / 60)) for t in body["tickets"]]
    assert got == EXPECTED_ORDER
    assert body["total"] == len(EXPECTED_ORDER)
    first = body["tickets"][0]
    assert first["clocks"]["response"]["state"] == "breached"  # published running, late by now
    assert first["clocks"]["response"]["remaining_s"] == -600
    battery = body["tickets"][1]
    assert battery["diagnosis"]["cause"] == "battery at end of life"
    assert battery["area"] == "city" and battery["opened_at"] == "2026-03-02T09:10:00.000Z"
    dark = body["tickets"][2]
    assert dark["source"] == "centre" and dark["fault"] == "site_offline" and dark["area"] == "suburb"


async def test_filters_narrow_the_list(desk: Desk) -> None:
    headers = await desk.login("vera")

    async def refs(**params: str) -> list[tuple[str, str]]:
        r = await desk.http.get("/api/tickets", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return [(t["site"], t["ref"]) for t in r.json()["tickets"]]

    assert await refs(area="suburb") == [("north-4", "c1"), ("north-1", "1"), ("north-2", "1"), ("north-3", "1")]
    assert await refs(site="city-1") == [("city-1", "1"), ("city-1", "2")]
    assert await refs(fault="tamper") == [("city-2", "4")]
    assert await refs(state="acknowledged") == [("city-1", "2")]
    assert await refs(engineer="eric") == []
    assert await refs(area="suburb", fault="mains_loss", limit="2") == [("north-1", "1"), ("north-2", "1")]
    r = await desk.http.get("/api/tickets", params={"limit": "0"}, headers=headers)
    assert r.status_code == 422


async def test_a_ticket_shows_its_history_and_its_devices_battery_and_signal(desk: Desk) -> None:
    headers = await desk.login("vera")
    t = (await desk.http.get("/api/tickets/city-1/1", headers=headers)).json()
    assert [h["action"] for h in t["history"]] == ["opened"]
    series = t["trend"]["series"]
    assert [v for _, v in series["battery_v"]] == [2.6, 2.41, 2.38]  # an old ticket, this one, the latest reading
    assert series["rssi_dbm"] == [["2026-03-02T09:59:00.000Z", -75.0]]
    assert t["trend"]["sources"] == ["ticket evidence", "latest telemetry"]
    acked = (await desk.http.get("/api/tickets/city-1/2", headers=headers)).json()
    assert [(h["action"], h["state"]) for h in acked["history"]] == [
        ("opened", "open"),
        ("acknowledged", "acknowledged"),
    ]
    closed = (await desk.http.get("/api/tickets/city-2/3", headers=headers)).json()
    assert closed["state"] == "closed" and len(closed["history"]) == 4
    dark = (await desk.http.get("/api/tickets/north-4/c1", headers=headers)).json()
    assert dark["history"][0]["by"] == "centre"
    assert (await desk.http.get("/api/tickets/city-1/99", headers=headers)).status_code == 404
    assert (await desk.http.get("/api/tickets/city-1/c99", headers=headers)).status_code == 404
    assert (await desk.http.get("/api/tickets/city-1/x1", headers=headers)).status_code == 422
    assert (await desk.http.get("/api/tickets/city-1/" + "9" * 30, headers=headers)).status_code == 422


async def test_sites_say_online_last_heard_devices_in_fault_and_open_tickets(desk: Desk) -> None:
    body = (await desk.http.get("/api/sites", headers=await desk.login("vera"))).json()
    sites = {s["site"]: s for s in body["sites"]}
    assert body["total"] == 6
    assert sites["city-2"]["status"] == "offline" and not sites["city-2"]["online"]
    assert sites["north-4"]["status"] == "online" and sites["north-4"]["dark"] and not sites["north-4"]["online"]
    assert sites["city-1"]["open_tickets"] == 2 and sites["city-1"]["devices_in_fault"] == 2
    assert sites["city-2"]["open_tickets"] == 1 and sites["north-4"]["open_tickets"] == 1
    assert sites["city-1"]["last_heard_at"] == "2026-03-02T10:00:00.000Z"
    assert [s["site"] for s in body["sites"]][:3] == ["city-2", "north-4", "city-1"]  # dark, then never heard


async def test_a_storm_of_one_fault_in_one_area_is_one_incident_line(desk: Desk) -> None:
    body = (await desk.http.get("/api/incidents", headers=await desk.login("vera"))).json()
    assert [i["line"] for i in body["incidents"]] == ["mains loss, suburb, 3 sites, 3 open"]
    assert body["incidents"][0]["tickets"] == [{"site": f"north-{i}", "ref": "1"} for i in (1, 2, 3)]
    assert body["singles"] == 4


async def test_sla_share_met_by_fault_and_as_csv(desk: Desk) -> None:
    headers = await desk.login("vera")
    r = await desk.http.get("/api/sla", params={"since": "2026-03-01"}, headers=headers)
    groups = r.json()["groups"]
    assert groups["tamper"]["response"] == {
        "met": 1, "breached": 1, "running": 0, "not_needed": 0, "share_met": 0.5,
    }  # fmt: skip
    assert groups["comm_loss"]["response"]["share_met"] == 1.0
    assert groups["low_battery"]["response"] == {
        "met": 0,
        "breached": 0,
        "running": 1,
        "not_needed": 0,
        "share_met": None,
    }  # fmt: skip  (the ticket of ten days ago is before `since`)
    r = await desk.http.get("/api/sla", params={"since": "2026-02-01", "by": "site", "format": "csv"}, headers=headers)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["group", "clock", "met", "breached", "running", "not_needed", "share_met"]
    assert ["city-1", "response", "2", "0", "1", "0", "1.0000"] in rows
    for bad in ({"since": "2026-13-01"}, {"since": "2027-01-01"}, {"since": "2026-03-01", "by": "colour"}, {}):
        assert (await desk.http.get("/api/sla", params=bad, headers=headers)).status_code == 422, bad


async def test_a_dispatcher_assigns_and_the_plan_shows_against_the_arrival_clock(desk: Desk) -> None:
    plan = {"engineer": "eric", "planned_arrival": "2026-03-02T12:30:00+02:00"}  # 10:30 UTC
    for who in ("vera", "eric"):
        r = await desk.http.post("/api/tickets/city-1/2/assign", json=plan, headers=await desk.login(who))
        assert r.status_code == 403, who
    dora = await desk.login("dora")
    r = await desk.http.post("/api/tickets/city-1/2/assign", json=plan, headers=dora)
    assert r.status_code == 200, r.text
    p = r.json()["plan"]
    assert p["planned_arrival"] == "2026-03-02T10:30:00.000Z" and p["arrival_due"] == "2026-03-02T11:30:00.000Z"
    assert p["margin_s"] == 3600 and p["assigned_by"] == "dora"
    r = await desk.http.get("/api/tickets", params={"engineer": "eric"}, headers=dora)
    assert [(t["site"], t["ref"]) for t in r.json()["tickets"]] == [("city-1", "2")]
    late = {"engineer": "dora", "planned_arrival": "2026-03-02T12:00:00Z"}
    r = await desk.http.post("/api/tickets/city-1/2/assign", json=late, headers=dora)
    assert r.json()["plan"]["engineer"] == "dora" and r.json()["plan"]["margin_s"] == -1800
    refused = [
        ("city-1/99", plan, 404),
        ("city-2/3", plan, 409),  # closed
        ("city-1/2", {"engineer": "vera", "planned_arrival": "2026-03-02T11:00:00Z"}, 422),  # a viewer
        ("city-1/2", {"engineer": "eric", "planned_arrival": "2026-06-02T11:00:00Z"}, 422),  # months away
        ("city-1/2", {"engineer": "eric", "planned_arrival": "2026-03-02T11:00:00"}, 422),  # no offset
        ("city-1/2", {"engineer": "eric"}, 422),
    ]
    for target, body, status in refused:
        r = await desk.http.post(f"/api/tickets/{target}/assign", json=body, headers=dora)
        assert r.status_code == status, (target, body, r.text)
    trail = await desk.audit()
    assigns = [(u, t, res.split(":")[0]) for u, a, t, res in trail if a == "assign"]
    assert assigns == [
        ("vera", "city-1/2", "refused"),
        ("eric", "city-1/2", "refused"),
        ("dora", "city-1/2", "ok"),
        ("dora", "city-1/2", "ok"),
        ("dora", "city-1/99", "refused"),
        ("dora", "city-2/3", "refused"),
        ("dora", "city-1/2", "refused"),
        ("dora", "city-1/2", "refused"),
    ]  # the last two bodies never reach the route: pydantic refuses them


async def test_moves_go_to_the_site_through_the_relay(desk: Desk) -> None:
    assert desk.relay is not None
    eric = await desk.login("eric")
    r = await desk.http.post("/api/tickets/city-1/1/move", json={"action": "ack", "note": "on it"}, headers=eric)
    assert r.status_code == 202, r.text
    assert desk.relay.moves == [("city-1", 1, "ack", "eric", "on it", NOW)]
    r = await desk.http.post("/api/tickets/city-1/1/move", json={"action": "close"}, headers=eric)
    assert r.status_code == 409 and "may: ack" in r.json()["detail"]
    # The centre's own ticket (a site gone dark) is moved at the centre, at once, not relayed.
    r = await desk.http.post("/api/tickets/north-4/c1/move", json={"action": "ack", "note": "calling"}, headers=eric)
    assert r.status_code == 200, r.text
    moved = r.json()["ticket"]
    assert moved["state"] == "acknowledged" and moved["clocks"]["response"]["stopped_at"] == iso(NOW)
    assert moved["history"][-1] == {"at": iso(NOW), "action": "acknowledged", "by": "eric", "note": "calling"}
    assert len(desk.relay.moves) == 1
    r = await desk.http.post("/api/tickets/north-4/c1/move", json={"action": "ack"}, headers=eric)
    assert r.status_code == 409 and "may: dispatch, resolve" in r.json()["detail"]
    desk.relay.refuse = "unknown user eric"
    r = await desk.http.post("/api/tickets/city-1/1/move", json={"action": "ack"}, headers=eric)
    assert r.status_code == 409 and r.json()["detail"] == "the site refused: unknown user eric"
    r = await desk.http.post("/api/tickets/city-1/1/move", json={"action": "ack"}, headers=await desk.login("vera"))
    assert r.status_code == 403
    r = await desk.http.post("/api/tickets/city-1/1/move", json={"action": "explode"}, headers=eric)
    assert r.status_code == 422
    moves = [(u, a, res.split(":")[0]) for u, a, _t, res in await desk.audit() if a != "login"]
    assert moves == [("eric", "ack", "ok"), ("eric", "close", "refused"), ("eric", "ack", "ok"),
                     ("eric", "ack", "refused"), ("eric", "ack", "refused"),
                     ("vera", "move", "refused")]  # fmt: skip


async def test_with_no_relay_a_move_says_so(desk_pool: AsyncConnectionPool) -> None:
    d = await open_desk(desk_pool, None)
    async with d.http:
        r = await d.http.post("/api/tickets/city-1/1/move", json={"action": "ack"}, headers=await d.login("eric"))
    assert r.status_code == 503 and "no relay" in r.json()["detail"]


async def test_bad_requests_get_clear_answers(desk: Desk) -> None:
    dora = await desk.login("dora")
    url = "/api/tickets/city-1/2/assign"
    r = await desk.http.post(url, content=b"{not json", headers={**dora, "content-type": "application/json"})
    assert r.status_code == 422
    r = await desk.http.post(
        url, json={"engineer": "eric", "planned_arrival": "2026-03-02T11:00:00Z", "x": 1}, headers=dora
    )
    assert r.status_code == 422
    r = await desk.http.post(url, content=b"{" + b" " * 20_000 + b"}", headers=dora)
    assert r.status_code == 413 and "16384" in r.json()["detail"]
    r = await desk.http.post("/api/login", content=b"[" * 10_000)
    assert r.status_code == 422
    r = await desk.http.get("/api/tickets", headers={**dora, "host": "evil.example"})
    assert r.status_code == 421
    r = await desk.http.get("/api/tickets", params={"site": "x" * 101}, headers=dora)
    assert r.status_code == 422
    r = await desk.http.get("/api/tickets", params={"engineer": "a\x00b"}, headers=dora)  # PostgreSQL takes no NUL
    assert r.status_code == 422
    for body in (
        {"engineer": "er\x00ic", "planned_arrival": "2026-03-02T11:00:00Z"},
        {"engineer": "eric", "planned_arrival": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC
    ):
        assert (await desk.http.post(url, json=body, headers=dora)).status_code == 422, body
    r = await desk.http.post("/api/login", json={"name": "do\x00ra", "password": PASSWORD})
    assert r.status_code == 422
    r = await desk.http.get("/")
    assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
    assert (await desk.http.get("/desk/desk.js")).headers["content-type"].startswith("text/javascript")
    assert (await desk.http.get("/desk/..%2Fdesk_api.py")).status_code == 404


async def test_a_client_that_floods_is_told_to_wait(desk_pool: AsyncConnectionPool) -> None:
    d = await open_desk(desk_pool, None, requests_per_s=1)
    async with d.http:
        answers = [(await d.http.get("/api/openapi.json")).status_code for _ in range(25)]
    assert answers[:20] == [200] * 20 and set(answers[20:]) == {429}  # the burst, then no refill: time stands still


async def test_add_user_refuses_bad_names_roles_passwords_and_a_name_taken(desk_pool: AsyncConnectionPool) -> None:
    for name, role, password in (
        ("bad name", "viewer", PASSWORD),
        ("ok", "admin", PASSWORD),
        ("ok", "viewer", "short"),
        ("eric", "viewer", PASSWORD),
    ):
        with pytest.raises(desk_auth.UserError):
            await desk_auth.add_user(desk_pool, name, role, password, NOW)
    user = await desk_auth.add_user(desk_pool, "new", "engineer", PASSWORD)
    assert replace(user) == desk_auth.User("new", desk_auth.Role.ENGINEER)
    async with desk_pool.connection() as conn:
        cur = await conn.execute("SELECT password_hash FROM desk_users WHERE name = 'new'")
        row = await cur.fetchone()
    assert row is not None and str(row[0]).startswith("$argon2id$")


async def test_a_port_already_taken_is_an_error_at_once(desk_pool: AsyncConnectionPool) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = DeskConfig(port=taken.getsockname()[1])
        with pytest.raises(OSError):
            make_server(build_app(desk_pool, config, ManualClock(NOW)), config)


async def test_the_audit_trail_is_for_dispatchers(desk: Desk) -> None:
    r = await desk.http.get("/api/audit", headers=await desk.login("eric"))
    assert r.status_code == 403
    r = await desk.http.get("/api/audit", params={"limit": "2"}, headers=await desk.login("dora"))
    assert [(a["user"], a["action"], a["result"]) for a in r.json()["audit"]] == [
        ("dora", "login", "ok"),
        ("eric", "login", "ok"),
    ]


async def test_a_database_that_does_not_answer_is_a_503_in_seconds() -> None:
    pool = db.pool("postgresql://postgres@127.0.0.1:1/nothing", 1)
    await pool.open(wait=False)
    try:
        d = await open_desk(pool, None, db_wait_s=0.3)
        async with d.http:
            r = await d.http.get("/api/tickets", headers={"authorization": "Bearer " + "A" * 43})
            assert r.status_code == 503 and "does not answer" in r.json()["detail"]
            r = await d.http.post("/api/login", json={"name": "dora", "password": PASSWORD})
            assert r.status_code == 503 and "does not answer" in r.json()["detail"]
    finally:
        await pool.close(timeout=1)


async def test_password_guessing_from_one_address_is_slowed_down(desk: Desk) -> None:
    wrong = {"name": "dora", "password": "guess guess"}
    answers = [(await desk.http.post("/api/login", json=wrong)).status_code for _ in range(11)]
    assert answers == [401] * 10 + [429]
    desk.clock.advance(4)  # the refused try counted too: two turns of two seconds
    assert (await desk.http.post("/api/login", json=wrong)).status_code == 401
    assert (await desk.http.post("/api/login", json=wrong)).status_code == 429
