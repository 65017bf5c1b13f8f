"""The gateway polling the simulator's Modbus TCP server on loopback, on a manual clock."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from alarmgw.clock import ManualClock, iso
from alarmgw.diagnostics.escalation import Escalation
from alarmgw.diagnostics.tickets import TicketState
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.runtime import HttpError, free_port
from alarmgw.gateway.site_file import load_site
from alarmgw.gateway.store import Store
from alarmgw.simulator.modbus_server import ModbusHostServer
from tests.conftest import POLL_S, Harness, harness_for, http_extra, write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


async def test_healthy_site_opens_no_ticket(harness: Harness) -> None:
    gw = await harness.start_gateway()
    await harness.cycle(30)
    assert harness.tickets() == []
    assert gw.core.readings_seen == 31 * 10  # host + 9 devices per poll, one merged read
    assert gw.core.links[0].requests == 31


async def test_low_battery_is_one_ticket_after_its_debounce(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("smoke-1", "low_battery")
    first_seen = harness.clock.now() + timedelta(seconds=POLL_S)
    await harness.cycle(2)
    assert harness.tickets() == []  # 2 of the 3 readings the rule wants
    await harness.cycle(1)
    (t,) = harness.tickets()
    assert (t.device_id, t.fault, t.state, t.repair_class) == ("smoke-1", "low_battery", TicketState.OPEN, "accessory")
    assert t.opened_at == first_seen  # the clock starts at detection, not at the debounce
    assert t.evidence["battery_v"] < 2.6
    assert (t.contact_id, t.sia) == (384, ("XT", "XR"))
    await harness.cycle(10)
    assert len(harness.tickets()) == 1


async def test_tamper_is_one_ticket_on_the_next_poll(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("pir-2", "tamper", duration=12)
    await harness.cycle(1)
    (t,) = harness.tickets()
    assert (t.device_id, t.fault, t.contact_id) == ("pir-2", "tamper", 383)
    await harness.cycle(12)  # cover shut again: restored, not closed
    (t,) = harness.tickets()
    assert not t.fault_active and t.restored_at is not None and t.state is TicketState.OPEN


async def test_flapping_detector_is_one_ticket(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("pir-3", "tamper", flap=7, duration=200)
    await harness.cycle(60)
    (t,) = harness.tickets()
    assert t.device_id == "pir-3" and t.fault == "tamper"


async def test_silent_repeater_is_one_ticket_listing_its_detectors(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("rep-2", "silent")
    # The host judges the repeater lost once its link age passes the 30 s window; the
    # gateway needs that on 2 polls. Work out from the model which poll that is.
    t_sim = harness.sim.elapsed_s
    polls_to_loss = next(
        k
        for k in range(1, 100)
        if harness.sim.site.link_age(harness.sim.site.devices["rep-2"], t_sim + k * POLL_S) > 30
    )
    await harness.cycle(polls_to_loss)
    assert harness.tickets() == []
    await harness.cycle(1)
    (t,) = harness.tickets()
    assert (t.device_id, t.fault, t.contact_id) == ("rep-2", "comm_loss", 333)
    assert set(t.affected) == {"smoke-2", "smoke-3", "pir-1"}
    assert t.impact.startswith("high: 3 devices")
    await harness.cycle(30)  # the detectors' own windows run out too: listed, not ticketed
    (t,) = harness.tickets()
    assert set(t.casualties) == {"smoke-2", "smoke-3", "pir-1"}


async def test_restart_on_the_same_store_does_not_ticket_twice(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("pir-2", "tamper")
    harness.sim.inject("smoke-1", "low_battery")
    await harness.cycle(4)
    before = {(t.id, t.device_id, t.fault) for t in harness.tickets()}
    assert {(d, f) for _, d, f in before} == {("pir-2", "tamper"), ("smoke-1", "low_battery")}
    await harness.stop_gateway()  # as abrupt as it gets in-process: no drain, no goodbye
    await harness.start_gateway()
    await harness.cycle(10)
    after = harness.tickets()
    assert {(t.id, t.device_id, t.fault) for t in after} == before
    assert all(t.occurrences == 1 and t.fault_active for t in after)


async def test_host_that_stops_answering_is_one_ticket_then_restores(harness: Harness) -> None:
    await harness.start_gateway()
    harness.sim.inject("host-1", "offline", duration=4 * POLL_S)
    await harness.cycle(3)
    (t,) = harness.tickets()
    assert (t.device_id, t.fault, t.contact_id) == ("host-1", "comm_loss", 354)
    assert t.impact.startswith("critical") and len(t.affected) == 9
    await harness.cycle(10)
    (t,) = harness.tickets()
    assert not t.fault_active


async def test_killed_modbus_server_is_reconnected(harness: Harness) -> None:
    gw = await harness.start_gateway()
    server = harness.sim.servers[0]
    await server.stop()
    await harness.cycle(3)
    (t,) = harness.tickets()
    assert (t.device_id, t.fault) == ("host-1", "comm_loss")
    # A power-cycled host comes back on the same port: the link must find it again.
    reborn = ModbusHostServer(server.endpoints, harness.sim.site, harness.clock, harness.sim.t0)
    await reborn.start()
    try:
        await harness.cycle(15)  # long enough for the backoff to allow a new connection
        (t,) = harness.tickets()
        assert not t.fault_active
        assert gw.core.links[0].reconnects >= 2
        assert gw.core.latest["smoke-1"].values["present"] is True
    finally:
        await reborn.stop()


async def test_acknowledge_stops_the_response_clock(harness: Harness) -> None:
    gw = await harness.start_gateway()
    harness.sim.inject("pir-2", "tamper")
    await harness.cycle(1)
    (t,) = harness.tickets()
    assert isinstance(gw.clock, ManualClock)
    gw.clock.advance(40 * 60)
    acked = gw.core.move(t.id or 0, TicketState.ACKNOWLEDGED, actor="eng-1")
    gw.clock.advance(3 * 3600)
    response, arrival, _ = acked.clocks(gw.clock.now())
    assert response.state == "met" and arrival.state == "breached"
    assert [h["action"] for h in gw.store.tickets.log(t.id or 0)] == ["opened", "acknowledged"]


async def test_devices_with_their_own_interval_get_their_own_poll_job(tmp_path: Path) -> None:
    site_file = write_site(tmp_path, 1502)
    text = site_file.read_text().replace("location: corridor}", "location: corridor, poll_interval_s: 30}")
    site_file.write_text(text)
    async with Gateway(load_site(site_file), clock=ManualClock()) as gw:
        jobs = {j.name: j.interval_s for j in gw.core.jobs}
        assert jobs == {
            "host-1@5s": 5.0,
            "host-1@30s": 30.0,
            "history-prune@1h": 3600.0,
            "escalation@60s": 60.0,
            "watch@5s": 5.0,
        }


async def test_a_locked_store_delays_a_fault_but_reports_it_once_with_its_detection_time(tmp_path: Path) -> None:
    # An uplink that nobody listens on: its messages wait in the outbox, where we read them.
    extra = f"uplink: {{broker: {{host: 127.0.0.1, port: {free_port()}}}}}\n"
    async with harness_for(write_site(tmp_path, free_port(), extra=extra)) as harness:
        store = Store(harness.site.store_path, busy_timeout_s=0.05)
        try:
            gw = await harness.start_gateway(store)
            first_seen = harness.clock.now() + timedelta(seconds=POLL_S)
            blocker = sqlite3.connect(harness.site.store_path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # e.g. a backup holding the file
            harness.sim.inject("pir-2", "tamper")
            try:
                await harness.cycle(2)
                assert gw.core.record_failures == 2  # tried on both polls, polling went on
                assert gw.stats()["unrecorded"] == 1
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await harness.cycle(1)
            (t,) = harness.tickets()
            assert (t.device_id, t.fault, t.opened_at) == (
                "pir-2",
                "tamper",
                first_seen,
            )  # the clock did not start late
            faults = [json.loads(m.payload) for _, m in store.outbox.batch(1000) if m.kind == "fault"]
            assert [(f["device"], f["fault"], f["state"], f["at"]) for f in faults] == [
                ("pir-2", "tamper", "raised", iso(first_seen))
            ]  # reported once, not once per try
            await harness.stop_gateway()
        finally:
            store.close()


async def test_every_new_ticket_carries_a_diagnosis_from_history(harness: Harness) -> None:
    await harness.start_gateway()
    await harness.cycle(3)
    harness.sim.inject("smoke-1", "low_battery")
    await harness.cycle(3)
    (t,) = harness.tickets()
    # The simulator's low_battery is a fall of half a volt within seconds: not wear.
    assert t.cause == "battery voltage dropped suddenly (a bad cell or the wrong battery type)"
    assert t.diagnosis["part"].startswith("battery") and t.repair_class == "accessory"
    assert "fell" in str(t.diagnosis["fix"]) and t.diagnosis["confidence"] == "high"
    assert t.diagnosis["evidence"]["samples"] >= 2  # type: ignore[index]


async def test_escalations_fire_once_at_each_mark_and_survive_a_restart(harness: Harness) -> None:
    gw = await harness.start_gateway()
    harness.sim.inject("pir-2", "tamper")
    await harness.cycle(1)
    (t,) = harness.tickets()
    async with gw.core.changes.subscribe() as events:
        harness.clock.advance(31 * 60)  # past the 30-minutes-before-due mark of the response
        await gw.core.escalate()
        await gw.core.escalate()  # nothing new the second time
        published = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
        (e,) = [c for c in published if isinstance(c, Escalation)]
        assert (e.ticket_id, e.clock, e.mark_s) == (t.id, "response", 1800.0)
    gw.core.move(t.id or 0, TicketState.ACKNOWLEDGED, actor="eng-1")
    harness.clock.advance(30 * 60)  # the response would now be late, but it was met
    await gw.core.escalate()
    sent = gw.store.escalations.sent()
    assert sent == {(t.id, "response", 1800.0)}
    await harness.stop_gateway()
    gw = await harness.start_gateway()
    harness.clock.advance(35 * 60)  # arrival: 30 min before its 2 h
    await gw.core.escalate()
    assert gw.store.escalations.sent() == {(t.id, "response", 1800.0), (t.id, "arrival", 1800.0)}


async def test_a_gateway_that_fails_to_start_closes_what_it_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        site = load_site(write_site(tmp_path, free_port(), extra=http_extra(tmp_path, taken.getsockname()[1])))
        with pytest.raises(HttpError) as failed:
            await Gateway.open(site)
        # The failed start is still referenced from the traceback here, yet holds nothing.
        assert failed.value is not None
        held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if _is_link(fd)]
        assert [h for h in held if h.startswith(str(site.store_path))] == []


def _is_link(fd: str) -> bool:
    return os.path.islink(f"/proc/self/fd/{fd}")
