"""`alarmgw demo --sites N` as a user runs it: one process with N simulated sites, their
gateways and the service centre; the desk it prints shows every site and their tickets, a
move made at the desk reaches the site's gateway and comes back, and the database made for
the run is gone when it stops."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from typing import Any

import httpx
import psycopg
import pytest

from tests.centre.conftest import ADMIN_DSN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def demo_databases() -> set[str]:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        cur = await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'alarmgw\\_demo\\_%'")
        return {str(r[0]) for r in await cur.fetchall()}


async def until(probe: Any, what: str, timeout_s: float = 60) -> Any:
    """Ask `probe()` every half second until it gives something; fail naming `what`."""
    async with asyncio.timeout(timeout_s):
        while True:
            got = await probe()
            if got:
                return got
            await asyncio.sleep(0.5)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def test_a_fleet_demo_puts_every_site_on_the_desk_and_the_desk_moves_their_tickets() -> None:
    before = await demo_databases()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alarmgw.gateway.cli",
        "demo",
        "--sites",
        "2",
        "--database",
        ADMIN_DSN,
        "--duration",
        "120",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the demo ended without printing the desk's address"
                m = re.search(r"desk: (http://127\.0\.0\.1:\d+/)\s+\(user (\w+), password (\S+)\)", line)
                if m:
                    break
        url, user, password = m[1], m[2], m[3]
        async with httpx.AsyncClient(base_url=url, timeout=10) as desk:
            r = await desk.post("/api/login", json={"name": user, "password": password})
            assert r.status_code == 200, r.text
            desk.headers["Authorization"] = f"Bearer {r.json()['token']}"

            async def both_online() -> bool:
                sites = (await desk.get("/api/sites")).json()["sites"]
                return sorted(s["site"] for s in sites if s["online"]) == ["site-01", "site-02"]

            await until(both_online, "both sites online at the desk")

            async def an_open_ticket() -> dict[str, Any] | None:
                tickets = (await desk.get("/api/tickets", params={"site": "site-01"})).json()["tickets"]
                return next((t for t in tickets if t["state"] == "open"), None)

            ticket = await until(an_open_ticket, "a ticket of site-01 at the desk")
            ref = ticket["ref"]
            r = await desk.post(f"/api/tickets/site-01/{ref}/move", json={"action": "ack", "note": "from the desk"})
            assert r.status_code == 202, r.text

            async def acknowledged() -> bool:
                t = (await desk.get(f"/api/tickets/site-01/{ref}")).json()
                return bool(t["state"] == "acknowledged")

            await until(acknowledged, "the site's ticket acknowledged, as reported back by its gateway")
            assert len(await demo_databases() - before) == 1  # the run's own database, while it runs
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await demo_databases() == before  # dropped at the end
