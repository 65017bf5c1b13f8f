"""The commands engineers run, whichever channel they come by: refusals are typed and
audited as refused, a bug is a failure (logged with its traceback, audited as failed), and
a busy store still gets every remote request an answer."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator

import pytest

from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.gateway.credentials import User, Users
from alarmgw.gateway.operations import Failed, Operations
from alarmgw.gateway.refusals import Conflict, Forbidden, Invalid, NotFound
from alarmgw.gateway.remote import RemoteDesk
from alarmgw.gateway.remote_auth import make_request
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.store import Store
from tests.conftest import Harness

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

SECRET = "a-long-engineer-secret-1234"


@pytest.fixture
async def ops(harness: Harness) -> AsyncIterator[Operations]:
    gw = await harness.start_gateway()
    yield Operations(gw.core)


async def test_refusals_are_typed_and_audited(ops: Operations, harness: Harness) -> None:
    cases = [
        ("viewer", "ack", {"id": 1}, Forbidden),
        ("engineer", "reboot", {}, Forbidden),
        ("engineer", "device", {"id": "smoke-99"}, NotFound),
        ("engineer", "ticket", {"id": 99}, NotFound),
        ("engineer", "ticket", {"id": "x"}, Invalid),
        ("engineer", "poll", {}, Invalid),
    ]
    for role, command, args, refusal in cases:
        with pytest.raises(refusal):
            await ops.perform("someone", role, command, args, "http")  # type: ignore[arg-type]
    harness.sim.inject("pir-2", "tamper")
    await harness.cycle(1)
    (t,) = harness.tickets()
    await ops.perform("eng-1", "engineer", "ack", {"id": t.id}, "http")
    with pytest.raises(Conflict):
        await ops.perform("eng-1", "engineer", "ack", {"id": t.id}, "http")
    results = [e["result"] for e in harness.gateway.store.audit.entries()]
    assert results == ["refused"] * len(cases) + ["done", "refused"]


async def test_a_bug_is_a_failure_not_a_refusal(
    ops: Operations, harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, list[str]]:
        raise KeyError("smoke-1")  # e.g. a lookup gone wrong inside the gateway

    monkeypatch.setattr(harness.gateway.core, "active_faults", broken)
    with pytest.raises(Failed, match="internal error: KeyError") as failed:
        await ops.perform("eng-1", "engineer", "faults", {}, "mqtt")
    assert failed.value.why == "failed"  # not "not_found": the requester is not told a lie
    (entry,) = harness.gateway.store.audit.entries()
    assert (entry["command"], entry["result"]) == ("faults", "failed")
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.exc_info is not None and logged.exc_info[0] is KeyError  # the traceback is kept


async def test_a_busy_store_still_answers_every_remote_request(harness: Harness) -> None:
    store = Store(harness.site.store_path, busy_timeout_s=0.05)
    try:
        gw = await harness.start_gateway(store)
        users = Users(users={"eng-1": User(role="engineer", secret=SECRET)})
        desk = RemoteDesk(Operations(gw.core), BrokerSpec("127.0.0.1", free_port()), "r", users)
        blocker = sqlite3.connect(harness.site.store_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # a backup, or another process, holds the file
        try:
            reply = await desk.handle(make_request("eng-1", SECRET, "status", {}, harness.clock.now()))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert reply["ok"] is False and "try again" in reply["error"]
        reply = await desk.handle(make_request("eng-1", SECRET, "status", {}, harness.clock.now()))
        assert reply["ok"] is True and reply["result"]["devices"] == len(gw.core.devices)
        await harness.stop_gateway()
    finally:
        store.close()
