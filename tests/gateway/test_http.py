"""The HTTP API and Prometheus metrics through a real uvicorn server on loopback, driven by
a real HTTP client, against a gateway polling the simulator."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alarmgw.clock import iso
from alarmgw.gateway.config import HttpConfig
from alarmgw.gateway.runtime import free_port
from tests.conftest import ENGINEER_TOKEN, VIEWER_TOKEN, Harness, harness_for, http_extra, write_site
from tests.gateway.test_http_limits import serving

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

VIEW = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
ENG = {"Authorization": f"Bearer {ENGINEER_TOKEN}"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    path = write_site(tmp_path, free_port(), extra=http_extra(tmp_path))
    async with harness_for(path, start=datetime.now(UTC)) as h:
        gw = await h.start_gateway()
        assert gw.http is not None
        async with httpx.AsyncClient(base_url=gw.http.url, timeout=10) as client:
            yield h, client


async def test_every_route_wants_a_known_token(api: tuple[Harness, httpx.AsyncClient]) -> None:
    _, client = api
    for path in ("/api/site", "/api/devices", "/api/faults", "/api/tickets", "/api/tickets/1", "/metrics"):
        r = await client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        r = await client.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401, path
    r = await client.post("/api/tickets/1/ack", json={"note": "x"})
    assert r.status_code == 401


async def test_served_on_loopback_by_default(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, _ = api
    assert HttpConfig(tokens_file=Path("t.yaml")).bind == "127.0.0.1"
    assert h.gateway.http is not None
    assert h.gateway.http.sock.getsockname()[0] == "127.0.0.1"


async def test_site_devices_faults_and_tickets_with_their_clocks(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    site = (await client.get("/api/site", headers=VIEW)).json()
    assert (site["site"], site["devices"], site["open_tickets"]) == ("test-site", 10, 0)
    assert site["at"] == iso(h.clock.now())

    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    devices = {d["id"]: d for d in (await client.get("/api/devices", headers=VIEW)).json()}
    assert devices["pir-2"]["faults"] == ["tamper"]
    assert (devices["smoke-1"]["parent"], devices["smoke-1"]["host"]) == ("rep-1", "host-1")
    latest = h.gateway.core.latest["smoke-1"]
    assert devices["smoke-1"]["latest"]["values"]["battery_v"] == latest.values["battery_v"]
    assert devices["smoke-1"]["latest"]["values"]["rssi_dbm"] == latest.values["rssi_dbm"]

    (fault,) = (await client.get("/api/faults", headers=VIEW)).json()
    (ticket,) = (await client.get("/api/tickets", headers=VIEW)).json()
    assert (fault["device"], fault["fault"], fault["ticket"]) == ("pir-2", "tamper", ticket["id"])
    assert ticket["actions"] == ["ack"]
    assert set(ticket["clocks"]) == {"response", "arrival", "repair"}
    response = ticket["clocks"]["response"]
    assert response["state"] == "running"
    assert response["due"] == iso(h.tickets()[0].opened_at + timedelta(hours=1))
    one = (await client.get(f"/api/tickets/{ticket['id']}", headers=VIEW)).json()
    assert one["id"] == ticket["id"] and one["device"] == "pir-2"
    detail = (await client.get("/api/devices/pir-2", headers=VIEW)).json()
    assert detail["id"] == "pir-2" and isinstance(detail["history"], list)
    # the asset register: the test site was commissioned on 2026-01-01
    assert (detail["commissioned_on"], detail["warranty_until"], detail["end_of_life"]) == (
        "2026-01-01",
        "2026-12-31",
        "2032-01-01",
    )
    assert detail["in_warranty"] == (h.clock.now().date() <= date(2026, 12, 31))


async def test_the_users_measures_are_recorded_by_an_engineer(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    (t,) = h.tickets()
    url = f"/api/tickets/{t.id}/user_action"
    assert (await client.post(url, headers=VIEW, json={"text": "reset it"})).status_code == 403
    assert (await client.post(url, headers=ENG, json={"text": ""})).status_code == 422
    assert (await client.post(url, headers=ENG, json={"text": "x" * 1001})).status_code == 422
    # Text no encoding can carry (a lone surrogate) is refused naming the field, not a crash.
    body = b'{"text": "\\ud800' + b"x" * 1001 + b'"}'
    lone = await client.post(url, headers={**ENG, "content-type": "application/json"}, content=body)
    assert lone.status_code == 422 and lone.json()["detail"][0]["loc"] == ["body", "text"], lone.text
    r = await client.post(url, headers=ENG, json={"text": "the customer reset the panel"})
    assert r.status_code == 200, r.text
    assert (r.json()["user_action"], r.json()["version"]) == ("the customer reset the panel", t.version + 1)
    assert h.gateway.store.tickets.log(t.id or 0)[-1]["action"] == "user_action"
    assert (await client.post("/api/tickets/999/user_action", headers=ENG, json={"text": "x"})).status_code == 404


async def test_engineer_moves_a_ticket_and_it_is_audited(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    (t,) = h.tickets()

    r = await client.post(f"/api/tickets/{t.id}/ack", headers=VIEW, json={"note": "mine"})
    assert r.status_code == 403 and "needs the engineer role" in r.json()["detail"]
    r = await client.post(f"/api/tickets/{t.id}/ack", headers=ENG, json={"note": "called the customer"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["actions"]) == ("acknowledged", ["dispatch", "resolve"])
    assert r.json()["clocks"]["response"]["state"] == "met"
    moved = h.gateway.store.tickets.get(t.id)
    assert moved.acknowledged_at is not None and iso(moved.acknowledged_at) == iso(h.clock.now())
    acks = [(e["actor"], e["note"]) for e in h.gateway.store.tickets.log(t.id) if e["action"] == "acknowledged"]
    assert acks == [("eng-1", "called the customer")]

    r = await client.post(f"/api/tickets/{t.id}/ack", headers=ENG, json={})
    assert r.status_code == 409 and "acknowledged" in r.json()["detail"]
    assert (await client.post("/api/tickets/999/ack", headers=ENG)).status_code == 404
    assert (await client.get("/api/tickets/999", headers=VIEW)).status_code == 404
    for bad in ("0", "99999999999999999999999999", "-3", "seven"):  # outside what a store can hold
        assert (await client.post(f"/api/tickets/{bad}/ack", headers=ENG)).status_code == 422, bad
    assert (await client.post(f"/api/tickets/{t.id}/reboot", headers=ENG)).status_code in (404, 422)
    r = await client.post(f"/api/tickets/{t.id}/dispatch", headers=ENG, json={"note": "x" * 501})
    assert r.status_code == 422
    r = await client.post(f"/api/tickets/{t.id}/dispatch", headers=ENG, content=b"{not json")
    assert r.status_code == 422
    assert h.gateway.store.tickets.get(t.id).state.value == "acknowledged"  # nothing moved by bad requests

    log = h.gateway.store.audit.entries()
    assert [(a["user"], a["command"], a["result"], a["channel"]) for a in log] == [
        ("view-1", "ack", "refused", "http"),
        ("eng-1", "ack", "done", "http"),
        ("eng-1", "ack", "refused", "http"),
        ("eng-1", "ack", "refused", "http"),
        ("view-1", "ticket", "refused", "http"),
    ]


async def test_engineer_polls_a_device_now(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    before = h.gateway.core.jobs[0].runs
    r = await client.post("/api/devices/smoke-1/poll", headers=ENG)
    assert r.status_code == 200, r.text
    assert r.json()["polled"]["device"] == "smoke-1"
    assert h.gateway.core.jobs[0].runs == before  # a request, not a tick of the schedule
    assert (await client.post("/api/devices/nope/poll", headers=ENG)).status_code == 404
    assert (await client.post("/api/devices/smoke-1/poll", headers=VIEW)).status_code == 403


async def test_openapi_documents_every_route_and_the_token(api: tuple[Harness, httpx.AsyncClient]) -> None:
    _, client = api
    r = await client.get("/api/openapi.json")  # without a token: it describes the API, it holds no data
    assert r.status_code == 200
    doc = r.json()
    assert {"/api/site", "/api/devices", "/api/faults", "/api/tickets", "/api/tickets/{ticket_id}/{action}"} <= set(
        doc["paths"]
    )
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    ticket = doc["components"]["schemas"]["TicketOut"]
    assert {"opened_at", "clocks", "actions"} <= set(ticket["required"])
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op.get("security"), f"{path} is not behind the token"


async def test_answers_match_their_documented_schemas(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    h.sim.inject("rep-2", "silent")  # a root-cause ticket with casualties, and faults behind it
    h.sim.inject("pir-2", "tamper")
    await h.cycle(14)
    assert any(t.casualties for t in h.tickets())
    doc = (await client.get("/api/openapi.json")).json()
    for path, method in [
        ("/api/site", "get"),
        ("/api/devices", "get"),
        ("/api/devices/smoke-1", "get"),
        ("/api/faults", "get"),
        ("/api/tickets", "get"),
        (f"/api/tickets/{h.tickets()[0].id}", "get"),
        ("/api/whoami", "get"),
    ]:
        template = path if path in doc["paths"] else re.sub(r"/[^/]+$", "/{" + path.split("/")[2][:-1] + "_id}", path)
        schema = doc["paths"][template][method]["responses"]["200"]["content"]["application/json"]["schema"]
        answer = (await client.get(path, headers=VIEW)).json()
        assert answer, path
        jsonschema.validate(answer, {**schema, "components": doc["components"]})


@pytest.mark.timeout(180)
async def test_nothing_a_client_sends_makes_the_api_fail(tmp_path: Path) -> None:
    """schemathesis, as a separate process, sends what the OpenAPI document allows and what it
    does not (huge numbers, odd strings, broken bodies): no answer may be a server error, a
    status the document does not list, or a body that breaks its documented schema. (It asks
    faster than `http.requests_per_s` allows by default: the limit is raised, so that its
    requests reach the routes instead of being answered 429.)"""
    async with serving(tmp_path, requests_per_s=10_000) as (h, _):
        h.sim.inject("pir-2", "tamper")
        await h.cycle(1)
        assert h.gateway.http is not None
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{h.gateway.http.url}api/openapi.json",
            "--header",
            f"Authorization: Bearer {ENGINEER_TOKEN}",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 150)
        assert proc.returncode == 0, out.decode()[-4000:]
        assert h.gateway.store.tickets.all()  # and nothing it sent lost a ticket


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_prometheus_metrics(api: tuple[Harness, httpx.AsyncClient]) -> None:
    h, client = api
    h.sim.inject("pir-2", "tamper")
    await h.cycle(2)
    r = await client.get("/metrics", headers=VIEW)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = metrics(r.text)
    job = h.gateway.core.jobs[0].name
    assert m[("alarmgw_polls_total", (("job", job),))] == h.gateway.core.jobs[0].runs >= 3
    assert m[("alarmgw_poll_duration_seconds_count", (("job", job),))] == h.gateway.core.jobs[0].runs
    assert m[("alarmgw_poll_errors_total", (("job", job),))] == 0
    assert m[("alarmgw_link_requests_total", (("link", "host-1"),))] > 0
    assert m[("alarmgw_link_connected", (("link", "host-1"),))] == 1
    assert m[("alarmgw_open_ticket_clocks", (("clock", "response"), ("state", "running")))] == 1
    assert m[("alarmgw_open_tickets", ())] == 1
    assert m[("alarmgw_active_faults", (("fault", "tamper"),))] == 1
    assert m[("alarmgw_ticket_open_delay_seconds_count", ())] == 1
    assert ("alarmgw_outbox_depth", ()) in m
    assert m[("alarmgw_outbox_evicted_total", ())] == 0 and m[("alarmgw_outbox_overflowing", ())] == 0
    assert m[("alarmgw_unrecorded_changes", ())] == 0
    assert m[("alarmgw_task_restarts_total", (("task", "http"),))] == 0

    (t,) = h.tickets()
    await client.post(f"/api/tickets/{t.id}/ack", headers=ENG)
    h.clock.advance(2 * 3600)  # the arrival clock (2 h, city) runs out
    m = metrics((await client.get("/metrics", headers=VIEW)).text)
    assert m[("alarmgw_open_ticket_clocks", (("clock", "response"), ("state", "met")))] == 1
    assert m[("alarmgw_open_ticket_clocks", (("clock", "arrival"), ("state", "breached")))] == 1


async def test_metrics_can_be_public(tmp_path: Path) -> None:
    path = write_site(tmp_path, free_port(), extra=http_extra(tmp_path, metrics_public=True))
    async with harness_for(path) as h:
        gw = await h.start_gateway()
        assert gw.http is not None
        async with httpx.AsyncClient(base_url=gw.http.url) as client:
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/api/site")).status_code == 401


async def test_run_refuses_a_taken_port_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = write_site(tmp_path, free_port(), extra=http_extra(tmp_path, port=port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alarmgw.gateway.cli", "run", "-c", str(path), stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert f"cannot serve the API on 127.0.0.1:{port}" in err.decode()


async def test_api_token_command_makes_a_token_the_gateway_accepts(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alarmgw.gateway.cli",
        "api-token",
        "tech-1",
        "--role",
        "engineer",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    lines = out.decode().splitlines()
    token = lines[1].strip()
    entry = lines[3].strip()
    assert entry.startswith("tech-1: {role: engineer, sha256: ")
    (tmp_path / "api-tokens.yaml").write_text(f"tokens:\n  {entry}\n")
    path = write_site(tmp_path, free_port(), extra=f"http: {{port: {free_port()}, tokens_file: api-tokens.yaml}}\n")
    async with harness_for(path) as h:
        gw = await h.start_gateway()
        assert gw.http is not None
        async with httpx.AsyncClient(base_url=gw.http.url) as client:
            r = await client.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
            assert r.json() == {"name": "tech-1", "role": "engineer"}
