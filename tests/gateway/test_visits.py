"""A maintenance visit end to end: the gateway polling the simulator on a manual clock while
an engineer opens covers, walks past detectors and runs a self-test; the report says which
devices were tested, and what the visit leaves behind is ticketed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alarmgw.diagnostics.tickets import TicketState
from alarmgw.gateway.refusals import Conflict
from tests.conftest import POLL_S, Harness

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser


def _verdicts(report: dict[str, object]) -> dict[str, str]:
    return {d["device"]: d["verdict"] for d in report["devices"]}  # type: ignore[attr-defined, index]


async def test_a_visit_proves_what_was_tested_and_tickets_what_it_leaves(harness: Harness) -> None:
    gw = await harness.start_gateway()
    core = gw.core
    row = core.start_visit("eng-7", hours=4)
    with pytest.raises(Conflict, match="runs already"):
        core.start_visit("eng-8", hours=1)
    harness.sim.inject("pir-2", "tamper", duration=3 * POLL_S)  # cover opened, closed again
    harness.sim.inject("pir-3", "tamper")  # ... and this one left open
    harness.sim.inject("pir-1", "test_alarm", duration=2 * POLL_S)  # a walk test
    harness.sim.inject("smoke-2", "low_battery")  # a fault no visit causes: a ticket
    await harness.cycle(12)  # a cover counts as shut after 30 s
    passed = await core.self_test("smoke-1")
    assert passed["values"]["sensor_fault"] is False
    await harness.cycle(2)
    tickets = {(t.device_id, t.fault) for t in harness.tickets()}
    assert tickets == {("smoke-2", "low_battery")}  # covers opened during the visit: findings
    done = core.finish_visit("eng-7")
    report = done.report
    assert report is not None and report["visit"] == row.id and report["ended"] == "finished"
    verdicts = _verdicts(report)
    assert verdicts["pir-2"] == "tested"  # cover opened and closed
    assert verdicts["pir-1"] == "tested"  # test alarm
    assert verdicts["smoke-1"] == "tested"  # self-test passed
    assert verdicts["pir-3"] == "failed"  # cover left open
    assert verdicts["smoke-2"] == "failed"  # low battery
    assert verdicts["smoke-3"] == "untested" and verdicts["host-1"] == "untested"
    assert report["counts"] == {"tested": 3, "untested": 5, "failed": 2}  # 10 devices, the bus left out
    # The cover left open is a fault like any other once the visit is over, detected at its end.
    (left,) = [t for t in harness.tickets() if t.device_id == "pir-3"]
    assert (left.fault, left.state, left.opened_at) == ("tamper", TicketState.OPEN, done.finished_at)
    # Outside a visit, a cover opened tickets again.
    harness.sim.inject("pir-2", "tamper")
    await harness.cycle(2)
    assert ("pir-2", "tamper") in {(t.device_id, t.fault) for t in harness.tickets()}


async def test_a_visit_nobody_finishes_ends_by_itself(harness: Harness) -> None:
    gw = await harness.start_gateway()
    gw.core.start_visit("eng-7", hours=0.01)  # 36 s
    harness.sim.inject("pir-2", "tamper")
    await harness.cycle(10)
    (done,) = gw.store.visits.done()
    assert done.ended == "expired" and done.finished_by == "gateway"
    assert _verdicts(done.report or {})["pir-2"] == "failed"
    assert [(t.device_id, t.fault) for t in harness.tickets()] == [("pir-2", "tamper")]


async def test_findings_survive_a_restart(harness: Harness) -> None:
    gw = await harness.start_gateway()
    gw.core.start_visit("eng-7", hours=4)
    harness.sim.inject("pir-1", "test_alarm", duration=2 * POLL_S)
    await harness.cycle(4)
    await harness.stop_gateway()
    gw = await harness.start_gateway()
    assert gw.core.visit.running
    await harness.cycle(1)
    report = gw.core.finish_visit("eng-7").report
    assert _verdicts(report or {})["pir-1"] == "tested"


def alarmgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alarmgw.gateway.cli", *args], capture_output=True, text=True, timeout=60
    )


async def test_the_command_line_starts_and_finishes_a_visit_the_gateway_follows(harness: Harness) -> None:
    site = str(harness.site.path)
    gw = await harness.start_gateway()
    started = alarmgw("maintenance", "start", "--by", "eng-7", "-c", site)
    assert started.returncode == 0, started.stderr
    again = alarmgw("maintenance", "start", "--by", "eng-7", "-c", site)
    assert again.returncode == 1 and "runs already" in again.stderr
    await harness.cycle(1)
    assert gw.core.visit.running  # the gateway took it up
    harness.sim.inject("pir-2", "tamper", duration=2 * POLL_S)
    await harness.cycle(10)  # shut for 30 s: closed
    status = json.loads(alarmgw("maintenance", "status", "-c", site, "--json").stdout)
    assert status["started_by"] == "eng-7" and status["findings"]["pir-2"]["cover_closed_at"]
    page = Path(harness.site.path).parent / "visit.html"
    finished = alarmgw("maintenance", "finish", "--by", "eng-7", "-c", site, "--html", str(page))
    assert finished.returncode == 0, finished.stderr
    assert "pir-2" in finished.stdout and "<h1>Maintenance visit 1 at site test-site</h1>" in page.read_text()
    await harness.cycle(1)
    assert not gw.core.visit.running
    report = json.loads(alarmgw("maintenance", "report", "1", "-c", site, "--json").stdout)
    assert _verdicts(report)["pir-2"] == "tested"
    assert alarmgw("maintenance", "finish", "--by", "x", "-c", site).returncode == 1
    assert alarmgw("maintenance", "start", "--by", "x", "--hours", "99", "-c", site).returncode == 2


def test_a_visit_recorded_in_its_window_marks_the_plan_done(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from alarmgw.diagnostics.maintenance import plan
    from alarmgw.gateway.messages import asset_messages
    from alarmgw.gateway.site_file import load_site
    from alarmgw.gateway.store import Store
    from tests.conftest import write_site
    from tests.gateway.test_payloads import check

    site = write_site(tmp_path, 1502)  # commissioned 2026-01-01
    at = datetime(2026, 2, 10, 9, tzinfo=UTC)  # inside the second monthly window
    with Store(load_site(site).store_path) as store:
        row = store.visits.start("eng-7", at, at + timedelta(hours=4))
        store.visits.finish(row.id, at + timedelta(hours=2), "eng-7", "finished", {}, {"counts": {"tested": 4}})
        done = store.visits.done()
    shown = alarmgw("maintenance", "plan", "-c", str(site), "--on", "2026-03-15", "--json")
    assert shown.returncode == 0, shown.stderr
    states = [v["state"] for v in json.loads(shown.stdout)["visits"][:3]]
    assert states == ["overdue", "done", "due"]
    # ... and the centre hears of it with the plan.
    visits = plan(datetime(2026, 1, 1).date(), datetime(2026, 12, 31).date())
    (message,) = asset_messages("r", "test-site", at, [], None, visits, done)
    doc = json.loads(message.payload)
    check("assets", doc)
    assert [v["done_on"] for v in doc["visits"][:3]] == [None, "2026-02-10", None]
    assert doc["visits_done"] == [
        {
            "visit": 1,
            "started_at": "2026-02-10T09:00:00.000Z",
            "finished_at": "2026-02-10T11:00:00.000Z",
            "by": "eng-7",
            "ended": "finished",
            "tested": 4,
            "untested": 0,
            "failed": 0,
        }
    ]
