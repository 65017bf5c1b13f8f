"""The commands engineers run, whichever channel they come by: refusals are typed and
audited as refused, a bug is a failure (logged with its traceback, audited as failed), and
a busy store still gets every remote request an answer."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alarmgw.drivers.mqtt_link import BrokerSpec
from alarmgw.gateway.credentials import User, Users, public_key_text
from alarmgw.gateway.operations import Failed, Operations
from alarmgw.gateway.refusals import Conflict, Forbidden, Invalid, NotFound
from alarmgw.gateway.remote import RemoteDesk
from alarmgw.gateway.remote_auth import make_request
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.store import Store
from tests.conftest import Harness

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

KEY = Ed25519PrivateKey.generate()
ROOT = "alarmgw/test-site"


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


def desk_for(ops: Operations) -> RemoteDesk:
    """A remote desk that is never connected: requests go straight to `handle`."""
    users = Users(users={"eng-1": User(role="engineer", public_key=public_key_text(KEY))})
    return RemoteDesk(ops, BrokerSpec("127.0.0.1", free_port()), ROOT, users)


async def test_a_busy_store_still_answers_every_remote_request(harness: Harness) -> None:
    store = Store(harness.site.store_path, busy_timeout_s=0.05)
    try:
        gw = await harness.start_gateway(store)
        desk = desk_for(Operations(gw.core))
        blocker = sqlite3.connect(harness.site.store_path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # a backup, or another process, holds the file
        try:
            reply = await desk.handle(make_request("eng-1", KEY, ROOT, "status", {}, harness.clock.now()))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert reply["ok"] is False and "try again" in reply["error"]
        reply = await desk.handle(make_request("eng-1", KEY, ROOT, "status", {}, harness.clock.now()))
        assert reply["ok"] is True and reply["result"]["devices"] == len(gw.core.devices)
        await harness.stop_gateway()
    finally:
        store.close()


async def test_hostile_payloads_are_answered_and_the_next_request_is_served(ops: Operations, harness: Harness) -> None:
    """Issue 11, item 2, at the desk itself: each of these raised out of `handle`."""
    desk = desk_for(ops)
    good = json.loads(make_request("eng-1", KEY, ROOT, "status", {}, harness.clock.now()))
    hostile = [
        json.dumps({**good, "sig": "\u00e9" * 64}).encode(),
        json.dumps({**good, "user": "\u00e9ve", "sig": "\u00e9" * 128}).encode(),
        b'{"args": ' * 3000 + b"{}" + b"}" * 3000,
        b"[" * 8000 + b"]" * 8000,
        b'{"user": "eng-1", "nonce": ' + b"1" * 4301 + b"}",
        b'{"user": "eng-1", "args": {"id": ' + b"1" * 4400 + b"}}",
        b" " * (50 * 1024 * 1024) + b"{}",
        json.dumps({**good, "args": {"id": [1] * 5}}).encode(),
        json.dumps({**good, "user": ["eng-1"]}).encode(),
        json.dumps({**good, "ts": 1e308}).encode(),
        json.dumps({**good, "nonce": None}).encode(),
        b"\xc3\x28",
    ]
    for payload in hostile:
        reply = await desk.handle(payload)
        assert reply["ok"] is False and reply["error"], payload[:60]
        fresh = make_request("eng-1", KEY, ROOT, "status", {}, harness.clock.now())
        assert (await desk.handle(fresh))["ok"] is True
    rows = harness.gateway.store.audit.entries()
    assert len([r for r in rows if r["verified"]]) == len(hostile)  # the good ones, one row each
    # one row per kind of refusal this minute (malformed, too large); the rest are counted
    assert sorted(r["detail"].split("]")[0] for r in rows if not r["verified"]) == ["[malformed", "[too_large"]
    desk.ops.flush_refusals()
    assert sum(c["count"] for c in harness.gateway.store.audit.refusal_counts()) == len(hostile)
