"""`alarmgw diagnose` as an engineer runs it: a history file exported from a site, the
command in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a process of its own

ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]


def alarmgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALARMGW, *args], capture_output=True, text=True, timeout=30)


def test_diagnose_explains_a_battery_from_its_history_and_refuses_garbage(tmp_path: Path) -> None:
    history = tmp_path / "smoke-03.jsonl"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    readings = []
    for i in range(40):  # 10 days, four readings a day, the battery falling slowly
        at = start + timedelta(hours=6 * i)
        readings.append({"at": f"{at:%Y-%m-%dT%H:%M:%SZ}", "battery_v": round(2.9 - 0.005 * i, 3), "rssi_dbm": -70})
    lines = [json.dumps(r) for r in readings]
    history.write_text("\n".join(lines) + "\n")
    done = alarmgw("diagnose", "--history", str(history), "--fault", "low_battery", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cause"]

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"this is not a history\n\x00\x01\x02\n")
    refused = alarmgw("diagnose", "--history", str(garbage), "--fault", "low_battery", "--json")
    assert refused.returncode == 2
    assert str(garbage) in refused.stderr.replace("\n", "") and "Traceback" not in refused.stderr
    assert refused.stdout == ""
