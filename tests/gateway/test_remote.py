"""Remote diagnosis through a real mosquitto: the engineer's tool (a separate process)
against a gateway polling the simulator."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alarmgw.gateway.remote_auth import make_request
from alarmgw.gateway.runtime import free_port
from tests.broker import Mosquitto
from tests.conftest import Harness, harness_for, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

ENGINEER, VIEWER = "a-long-engineer-secret-1234", "a-long-viewer-secret-5678"


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Harness, dict[str, Any]]]:
    (tmp_path / "engineers.yaml").write_text(
        f"users:\n  eng-1: {{role: engineer, secret: {ENGINEER}}}\n  view-1: {{role: viewer, secret: {VIEWER}}}\n"
    )
    (tmp_path / "eng.secret").write_text(ENGINEER)
    (tmp_path / "view.secret").write_text(VIEWER)
    root = f"alarmgw/{tmp_path.name}"
    extra = (
        f"uplink:\n  broker: {{host: 127.0.0.1, port: {mosquitto.port}}}\n  topic_root: {root}\n"
        "  telemetry_interval_s: null\nremote: {users_file: engineers.yaml}\n"
    )
    path = write_site(tmp_path, free_port(), extra=extra)
    async with harness_for(path, start=datetime.now(UTC)) as h:
        gw = await h.start_gateway()
        assert gw.remote is not None
        async with asyncio.timeout(10):
            await gw.remote.subscribed.wait()
        ctx = {"root": root, "port": mosquitto.port, "dir": tmp_path}
        yield h, ctx


async def tool(ctx: dict[str, Any], user: str, *args: str) -> tuple[int, Any, str]:
    """The engineer's tool, as a separate process, while this loop keeps the gateway running."""
    secret = ctx["dir"] / ("eng.secret" if user == "eng-1" else "view.secret")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alarmgw.gateway.cli",
        "remote",
        "--broker",
        f"mqtt://127.0.0.1:{ctx['port']}",
        "--site",
        "x",
        "--root",
        ctx["root"],
        "--user",
        user,
        "--secret-file",
        str(secret),
        "--json",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, json.loads(out) if out.strip() else None, err.decode()


async def raw(ctx: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """A request as any MQTT client could send it: for replays and forgeries."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = f"{ctx['root']}/cmd/reply/test"
    props.CorrelationData = b"c1"
    async with aiomqtt.Client("127.0.0.1", ctx["port"], protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(props.ResponseTopic, qos=1)
        await c.publish(f"{ctx['root']}/cmd", payload, qos=1, properties=props)
        async with asyncio.timeout(10):
            async for m in c.messages:
                return json.loads(bytes(m.payload))  # type: ignore[arg-type]
    raise AssertionError("no answer")


async def test_engineer_session(site: tuple[Harness, dict[str, Any]]) -> None:
    h, ctx = site
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)

    code, reply, err = await tool(ctx, "view-1", "tickets")
    assert code == 0 and reply["ok"], (reply, err)
    (t,) = reply["result"]
    assert (t["device"], t["fault"], t["state"]) == ("pir-2", "tamper", "open")
    assert t["diagnosis"]["cause"].startswith("cover or mounting opened") and t["diagnosis"]["repair"] == "accessory"

    code, reply, err = await tool(ctx, "view-1", "ack", str(t["id"]), "--note", "calling the user")
    assert code == 1 and not reply["ok"] and "view-1 (viewer) may not ack" in reply["error"]

    code, reply, _ = await tool(ctx, "eng-1", "ack", str(t["id"]), "--note", "user says a cleaner knocked it")
    assert code == 0 and reply["result"]["state"] == "acknowledged"
    assert reply["result"]["clocks"]["response"]["state"] == "met"
    assert h.gateway.store.tickets.get(t["id"]).acknowledged_at is not None

    code, reply, _ = await tool(ctx, "eng-1", "device", "pir-2")
    assert code == 0 and reply["result"]["latest"]["values"]["tamper"] is True and reply["result"]["history"]

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alarmgw.gateway.cli",
        "sla-report",
        "--since",
        h.clock.now().date().isoformat(),
        "--json",
        "--db",
        str(h.site.store_path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    response = json.loads(out)["faults"]["tamper"]["response"]
    assert (response["met"], response["breached"], response["share_met"]) == (1, 0, 1.0)

    log = h.gateway.store.audit.entries()
    assert [(a["user"], a["command"], a["result"]) for a in log] == [
        ("view-1", "tickets", "done"),
        ("view-1", "ack", "refused"),
        ("eng-1", "ack", "done"),
        ("eng-1", "device", "done"),
    ]
    history = h.gateway.store.tickets.log(t["id"])
    assert history[-1]["actor"] == "eng-1" and "cleaner" in history[-1]["note"]


async def test_replayed_forged_stale_and_unknown_requests_are_refused(site: tuple[Harness, dict[str, Any]]) -> None:
    h, ctx = site
    signed = make_request("eng-1", ENGINEER, "status", {}, datetime.now(UTC))
    assert (await raw(ctx, signed))["ok"]
    replay = await raw(ctx, signed)
    assert not replay["ok"] and "replayed" in replay["error"]

    forged = make_request("eng-1", "not-the-secret-at-all-000", "status", {}, datetime.now(UTC))
    assert "bad signature" in (await raw(ctx, forged))["error"]

    stale = make_request("eng-1", ENGINEER, "status", {}, datetime.now(UTC) - timedelta(minutes=10))
    assert "stale request" in (await raw(ctx, stale))["error"]

    shell = make_request("eng-1", ENGINEER, "shell", {"cmd": "rm -rf /"}, datetime.now(UTC))
    assert "unknown command 'shell'" in (await raw(ctx, shell))["error"]

    assert "not JSON" in (await raw(ctx, b"\x00garbage"))["error"]

    # ids no store can hold, or no number at all: refused, and the desk goes on answering
    for bad in (10**30, -1, "7; DROP TABLE tickets"):
        huge = make_request("eng-1", ENGINEER, "ack", {"id": bad}, datetime.now(UTC))
        assert "must be a whole number from 1 to" in (await raw(ctx, huge))["error"]
    assert (await raw(ctx, make_request("eng-1", ENGINEER, "status", {}, datetime.now(UTC))))["ok"]

    results = [(a["command"], a["result"]) for a in h.gateway.store.audit.entries()]
    assert results == [
        ("status", "done"),
        ("status", "refused"),
        ("status", "refused"),
        ("status", "refused"),
        ("shell", "refused"),
        ("?", "refused"),
        ("ack", "refused"),
        ("ack", "refused"),
        ("ack", "refused"),
        ("status", "done"),
    ]
    with pytest.raises(Exception, match="append-only"):
        h.gateway.store.connection.execute("DELETE FROM audit")


async def test_engineer_runs_a_self_test_through_the_broker(site: tuple[Harness, dict[str, Any]]) -> None:
    h, ctx = site
    code, reply, err = await tool(ctx, "eng-1", "selftest", "smoke-1")
    assert code == 0, (reply, err)
    assert reply["result"]["passed"] is True and reply["result"]["self_test_age_s"] <= 1
    h.sim.inject("smoke-2", "sensor_fault")
    code, reply, _ = await tool(ctx, "eng-1", "selftest", "smoke-2")
    assert code == 0 and reply["result"]["passed"] is False
    code, reply, _ = await tool(ctx, "view-1", "selftest", "smoke-1")
    assert code == 1 and "needs the engineer role" in reply["error"]
    code, reply, _ = await tool(ctx, "eng-1", "selftest", "nobody")
    assert code == 1 and "no device 'nobody'" in reply["error"]
