"""The desk served by uvicorn over a real PostgreSQL, spoken to over real sockets: schemathesis
(a separate process) sends what the OpenAPI document allows and what it does not (odd strings,
huge numbers, broken bodies), and nothing makes the desk fail; a refused request's body does
not break its connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from alarmgw.centre.desk_api import DeskConfig, build_app, make_server, serve
from alarmgw.clock import ManualClock
from alarmgw.gateway.runtime import free_port
from tests.centre.test_desk_api import NOW, PASSWORD, RecordingRelay, desk_pool

pytestmark = pytest.mark.integration

__all__ = ["desk_pool"]


@contextlib.asynccontextmanager
async def serving(pool: AsyncConnectionPool) -> AsyncIterator[str]:
    # The rate limit is raised so that schemathesis's requests reach the routes, not a 429.
    config = DeskConfig(port=free_port(), requests_per_s=10_000)
    relay = RecordingRelay()  # moves answer 202 rather than the 503 of a desk without a relay
    server, sock = make_server(build_app(pool, config, ManualClock(NOW), relay), config, "warning")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_a_request_refused_before_its_body_leaves_the_connection_usable(desk_pool: AsyncConnectionPool) -> None:
    async with serving(desk_pool) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"engineer": "eric", "planned_arrival": "2026-03-02T11:00:00Z"}'
        head = "POST /api/tickets/city-1/2/assign HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        writer.write(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        writer.write(b"GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 401"), first
        rest = await asyncio.wait_for(reader.readuntil(b'"openapi"'), 5)  # the same connection answers again
        assert b"HTTP/1.1 200" in rest
        writer.close()
        await writer.wait_closed()


@pytest.mark.timeout(240)
async def test_nothing_a_client_sends_makes_the_desk_fail(desk_pool: AsyncConnectionPool) -> None:
    async with serving(desk_pool) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            r = await client.post("/api/login", json={"name": "dora", "password": PASSWORD})
            token = r.json()["token"]
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{url}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--exclude-path",
            "/api/logout",  # it would end the token the rest of the run uses
            "--checks",
            "not_a_server_error",
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
        out, _ = await asyncio.wait_for(proc.communicate(), 200)
        assert proc.returncode == 0, out.decode()[-4000:]
        async with desk_pool.connection() as conn:  # the token held: its actions reached the routes
            cur = await conn.execute("SELECT count(*) FROM desk_audit WHERE action <> 'login'")
            row = await cur.fetchone()
        assert row is not None and int(row[0]) > 10, out.decode()[-2000:]
        async with httpx.AsyncClient(base_url=url) as client:  # and the desk still answers
            r = await client.get("/api/tickets", headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 200


async def test_serve_answers_until_cancelled_and_then_lets_the_port_go(desk_pool: AsyncConnectionPool) -> None:
    config = DeskConfig(port=free_port())
    task = asyncio.create_task(serve(desk_pool, config, ManualClock(NOW), log_level="warning"))
    await asyncio.sleep(0)  # one turn: serve binds and listens before its first await
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{config.port}") as client:
            r = await client.get("/")
            assert r.status_code == 200 and b"alarmgw desk" in r.content
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert task.cancelled()
    with socket.socket() as again:  # the port is free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", config.port))
