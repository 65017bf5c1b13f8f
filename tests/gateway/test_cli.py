"""The `alarmgw` command as a user runs it: separate processes, real signals, real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alarmgw.gateway.runtime import free_port
from tests.conftest import write_site

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

ROOT = Path(__file__).resolve().parents[2]

ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]
SCENARIO = """\
seed: 3
report_interval_s: {repeater: 2, smoke_detector: 2, pir_detector: 2}
faults:
  - {at: 0.5, device: pir-2, fault: tamper}
"""


def alarmgw(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALARMGW, *args], capture_output=True, text=True, timeout=30, check=check)


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll an outside process's observable result until it is truthy or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def tickets(db: Path) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    out = alarmgw("tickets", "list", "--json", "--db", str(db))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return write_site(tmp_path, free_port(), poll=0.5)


@pytest.fixture
def simulator(site: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        [*ALARMGW, "simulate", "-c", str(site), "--scenario", str(scenario)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["event"] == "ready"
    yield proc
    proc.terminate()
    proc.wait(10)


def start_gateway(site: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ALARMGW, "run", "-c", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )


def test_check_config_accepts_the_shipped_examples() -> None:
    root = Path(__file__).parents[2]
    for f in ("config/demo-site.yaml", "config/example-site.yaml"):
        out = alarmgw("check-config", str(root / f))
        assert out.returncode == 0, out.stderr
        assert "ok: site" in out.stdout


def test_bad_site_file_is_one_clear_message_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: {id: s1, area: downtown}\npoll: {intervall_s: 3}\nhosts:\n  - id: h1\n    model: sim-wh100\n"
        "    modbus: {port: 502}\n    devices:\n      - {id: d1, kind: smoke_detector, slot: 1, parent: d7}\n"
    )
    out = alarmgw("check-config", str(bad))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "site.area: Input should be 'city' or 'suburb'" in out.stderr
    assert "poll.intervall_s: unknown key" in out.stderr
    # the run command refuses the same file the same way
    out = alarmgw("run", "-c", str(bad))
    assert out.returncode == 2 and "site.area" in out.stderr


def test_missing_store_and_unknown_ticket_exit_2(tmp_path: Path) -> None:
    out = alarmgw("tickets", "list", "--db", str(tmp_path / "none.db"))
    assert out.returncode == 2 and "no such ticket store" in out.stderr


def test_gateway_killed_and_restarted_does_not_ticket_twice(site: Path, simulator: subprocess.Popen[str]) -> None:
    db = site.parent / "tickets.db"
    gw = start_gateway(site)
    try:
        first = wait_for("the tamper ticket", lambda: tickets(db))
        assert [(t["device"], t["fault"]) for t in first] == [("pir-2", "tamper")]
        os.kill(gw.pid, signal.SIGKILL)
        gw.wait(10)
        gw = start_gateway(site)
        # A fault that starts after the restart proves the new gateway is polling.
        assert simulator.stdin is not None and simulator.stdout is not None
        simulator.stdin.write("inject pir-3 tamper\n")
        simulator.stdin.flush()
        assert json.loads(simulator.stdout.readline())["event"] == "injected"
        # pir-2 and pir-3 share one block read, and tamper raises on first sight: a poll
        # that tickets pir-3 has also judged pir-2 again, so a duplicate would be here now.
        after = wait_for("the second ticket", lambda: (t := tickets(db)) and len(t) >= 2 and t)
        assert sorted((t["device"], t["fault"]) for t in after) == [("pir-2", "tamper"), ("pir-3", "tamper")]
        assert after[0]["id"] == first[0]["id"] and after[0]["opened_at"] == first[0]["opened_at"]
    finally:
        gw.terminate()
        assert gw.wait(10) == 0  # SIGTERM is a clean stop


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_run_polls_on_the_event_loop_asked_for(site: Path, simulator: subprocess.Popen[str], loop: str) -> None:
    db = site.parent / "tickets.db"
    gw = subprocess.Popen([*ALARMGW, "run", "-c", str(site), "--loop", loop], stderr=subprocess.PIPE, text=True)
    try:
        (t,) = wait_for("the tamper ticket", lambda: tickets(db))
        assert (t["device"], t["fault"]) == ("pir-2", "tamper")
    finally:
        gw.terminate()
        _, err = gw.communicate(timeout=10)
    assert gw.returncode == 0, err
    assert f"on the {loop} event loop" in err


def test_run_asked_for_uvloop_where_it_is_not_installed_says_so(site: Path) -> None:
    """`--loop uvloop` on a box without it is a clear error; `auto` falls back to asyncio."""
    hide = (
        "import sys; sys.modules['uvloop'] = None; from alarmgw.gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", hide, "run", "-c", str(site), "--loop", "uvloop"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--loop uvloop: uvloop is not installed (pip install 'alarmgw[fast]'" in out.stderr.replace("\n", "")
    proc = subprocess.Popen([sys.executable, "-c", hide, "run", "-c", str(site)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    proc.terminate()
    proc.communicate(timeout=10)
    assert "on the asyncio event loop" in first


def test_ticket_commands_move_and_refuse(site: Path, simulator: subprocess.Popen[str]) -> None:
    db = site.parent / "tickets.db"
    gw = start_gateway(site)
    try:
        (t,) = wait_for("the tamper ticket", lambda: tickets(db))
    finally:
        gw.terminate()
        gw.wait(10)
    for key in ("opened_at", "raised_at"):
        assert t[key].endswith("Z")
    for name in ("response", "arrival", "repair"):
        assert t["clocks"][name]["due"].endswith("Z")
    assert t["clocks"]["arrival"]["state"] == "running"
    tid = str(t["id"])
    refused = alarmgw("tickets", "arrive", tid, "--db", str(db))
    assert refused.returncode == 1 and "cannot go from open to on_site" in refused.stderr
    for step in ("ack", "dispatch", "arrive", "out-of-service", "in-service", "resolve", "close"):
        # On site the engineer takes the device out for the repair and puts it back: its
        # downtime runs from that mark (until its next reading, which a store alone never has).
        note = () if step.endswith("service") else ("--note", f"{step} done")
        out = alarmgw("tickets", step, tid, "--db", str(db), "--by", "eng-7", *note)
        assert out.returncode == 0, out.stderr
    shown = json.loads(alarmgw("tickets", "show", tid, "--json", "--db", str(db)).stdout)
    assert shown["state"] == "closed"
    assert shown["clocks"]["response"]["state"] == "met"
    assert shown["down_since"] and not shown["out_of_service"] and shown["clocks"]["downtime"]["state"] == "running"
    assert [h["action"] for h in shown["history"]] == [
        "opened",
        "acknowledged",
        "dispatched",
        "on_site",
        "out_of_service",
        "in_service",
        "resolved",
        "closed",
    ]
    closed = alarmgw("tickets", "out-of-service", tid, "--db", str(db))
    assert closed.returncode == 1 and "is closed" in closed.stderr
    assert shown["history"][1]["actor"] == "eng-7"
    # The failure record: what the customer did, recorded by whoever talked to them.
    said = alarmgw(
        "tickets", "user-action", tid, "covered the detector <and> called us", "--by", "desk-2", "--db", str(db)
    )
    assert said.returncode == 0, said.stderr
    empty = alarmgw("tickets", "user-action", tid, "  ", "--db", str(db))
    assert empty.returncode == 2 and "may not be empty" in empty.stderr
    page = site.parent / "record.html"
    rec = alarmgw("tickets", "record", tid, "--html", str(page), "--db", str(db))
    assert rec.returncode == 0, rec.stderr
    lines = dict(line.split(": ", 1) for line in rec.stdout.splitlines() if ": " in line)
    assert lines["measures taken by the user"] == "covered the detector <and> called us"
    assert lines["engineers"] == "eng-7" and lines["location"] and lines["degree of impact"]
    assert lines["type"].startswith("tamper on a pir detector (pir-2)")
    assert lines["downtime"].endswith("not back yet")  # marked out and in, never heard since: a store alone
    assert "covered the detector &lt;and&gt; called us" in page.read_text()
    shown = json.loads(alarmgw("tickets", "show", tid, "--json", "--db", str(db)).stdout)
    assert shown["user_action"] == "covered the detector <and> called us" and shown["history"][-1]["actor"] == "desk-2"
    missing = alarmgw("tickets", "show", "999", "--db", str(db))
    assert missing.returncode == 2 and "no ticket 999" in missing.stderr
    huge = alarmgw("tickets", "ack", str(10**25), "--db", str(db))  # more than SQLite can hold
    assert huge.returncode == 2 and "ticket numbers run from 1 to" in huge.stderr and "Traceback" not in huge.stderr


def test_simulator_answers_bad_commands_and_keeps_running(simulator: subprocess.Popen[str]) -> None:
    assert simulator.stdin is not None and simulator.stdout is not None
    for line, expected in (
        ("reboot now\n", "unknown command"),
        ("inject pir-2 melt\n", "unknown fault 'melt'"),
        ("inject nobody tamper\n", "no simulated device 'nobody'"),
        ("inject pir-2 tamper soon\n", "not a number"),
        ("unplug nowhere\n", "no simulated bus 'nowhere'"),
    ):
        simulator.stdin.write(line)
        simulator.stdin.flush()
        reply = json.loads(simulator.stdout.readline())
        assert reply["event"] == "error" and expected in reply["error"]
    assert simulator.poll() is None


def test_simulator_on_a_taken_port_says_which_host_and_exits_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        site = write_site(tmp_path, taken.getsockname()[1])
        out = alarmgw("simulate", "-c", str(site), "--duration", "1")
    assert out.returncode == 2
    assert "host host-1: cannot listen on 127.0.0.1:" in out.stderr and "Traceback" not in out.stderr


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    site = write_site(tmp_path, free_port(), poll=0.2)  # nothing answers on that port
    proc = subprocess.Popen([*ALARMGW, "--log-json", "run", "-c", str(site)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = json.loads(proc.stderr.readline())  # the start-up line
    proc.terminate()
    _, rest = proc.communicate(timeout=10)
    assert proc.returncode == 0
    lines = [first] + [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert first["level"] == "info" and first["logger"] == "alarmgw.gateway.app" and first["at"].endswith("Z")
    assert any(line["message"].startswith("stats readings=") for line in lines)


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    """systemd's own checker on the shipped unit, its ExecStart pointed at this checkout's
    command (the unit names /opt/alarmgw, which a test machine does not have)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (Debian package systemd) is needed; .ci/run installs it"
    unit = (ROOT / "deploy" / "alarmgw.service").read_text()
    assert "ExecStart=/opt/alarmgw/.venv/bin/alarmgw --log-json run -c /etc/alarmgw/site.yaml" in unit
    here = str(Path(sys.executable).parent / "alarmgw")
    (tmp_path / "alarmgw.service").write_text(unit.replace("/opt/alarmgw/.venv/bin/alarmgw", here))
    out = subprocess.run([analyze, "verify", str(tmp_path / "alarmgw.service")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
    # the checker does speak up about a mistake
    (tmp_path / "bad.service").write_text(unit.replace("KillSignal=SIGTERM", "KillSignall=SIGTERM"))
    out = subprocess.run([analyze, "verify", str(tmp_path / "bad.service")], capture_output=True, text=True)
    assert "KillSignall" in out.stderr


def test_remote_with_a_secret_file_that_is_not_there_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "eng.secret"
    done = alarmgw("remote", "--broker", "mqtt://127.0.0.1:1", "--site", "s", "--user", "eng-1",
                   "--secret-file", str(missing), "status")  # fmt: skip
    assert done.returncode == 2
    assert f"--secret-file {missing}: no such file" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr
    done = alarmgw("remote", "--broker", "mqtt://127.0.0.1:1", "--site", "s", "--user", "eng-1",
                   "--secret-file", str(tmp_path), "status")  # fmt: skip
    assert done.returncode == 2 and "is a folder" in done.stderr and "Traceback" not in done.stderr
