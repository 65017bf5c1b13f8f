"""`alarmgw demo` as a user runs it: a separate process that prints the dashboard's address,
which serves the page and the API while the demo's faults become tickets."""

from __future__ import annotations

import asyncio
import re
import sys

import httpx
import pytest

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


async def test_demo_serves_the_dashboard_and_prints_its_address() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alarmgw.gateway.cli",
        "demo",
        "--plain",
        "--duration",
        "40",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await proc.stdout.readline()).decode()
                assert line, "the demo ended without printing the dashboard's address"
                m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)#token=(\S+)", line)
                if m:
                    break
        url, token = m[1], m[2]
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            page = await client.get("/")
            assert page.status_code == 200 and "dashboard.js" in page.text
            assert (await client.get("/api/whoami", headers=auth)).json() == {"name": "demo", "role": "engineer"}
            site = (await client.get("/api/site", headers=auth)).json()
            assert site["site"] == "demo-site" and site["devices"] == 28
            async with asyncio.timeout(30):  # the demo's story opens its first tickets in seconds
                while not (await client.get("/api/tickets", headers=auth)).json():  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.5)
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "holds a secret" not in err.decode()  # the demo's own token file is private
