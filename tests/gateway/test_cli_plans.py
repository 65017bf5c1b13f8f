"""`alarmgw assets` and `alarmgw maintenance plan` as a user runs them, on a site file: each
device's warranty (the promise's 12 months or the maker's longer one, a device's own before
its host's and its kind's), its rated life, what is due, and the visits owed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from alarmgw.gateway.runtime import free_port
from tests.conftest import write_site
from tests.gateway.test_cli import ALARMGW

pytestmark = pytest.mark.integration  # a process per command


def alarmgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ALARMGW, *args], capture_output=True, text=True, timeout=30)


def site_with_assets(folder: Path) -> Path:
    path = write_site(
        folder,
        free_port(),
        extra="assets: {warranty_months: {smoke_detector: 24}, rated_life_years: {pir_detector: 10}}\n"
        "maintenance: {regular_months: 4}\n",
    )
    return path


def test_assets_lists_every_device_with_its_dates_and_what_is_due(tmp_path: Path) -> None:
    path = site_with_assets(tmp_path)
    r = alarmgw("assets", "-c", str(path), "--on", "2026-12-20", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    by_kind = {a["kind"]: a for a in doc["assets"]}
    # commissioned 2026-01-01 (the test site): the promise's 12 months, a smoke detector's 24
    assert by_kind["host"]["warranty_until"] == "2026-12-31" and by_kind["host"]["in_warranty"] is True
    assert by_kind["smoke_detector"]["warranty_until"] == "2027-12-31"
    assert by_kind["pir_detector"]["end_of_life"] == "2036-01-01"  # rated for 10 years here
    assert by_kind["repeater"]["end_of_life"] == "2032-01-01"  # 6 by default
    assert "bus" not in by_kind
    ending = json.loads(alarmgw("assets", "-c", str(path), "--on", "2026-12-20", "--expiring", "30", "--json").stdout)
    assert "smoke_detector" not in {a["kind"] for a in ending["assets"]}  # 24 months: not ending
    assert {"host", "repeater", "pir_detector"} <= {a["kind"] for a in ending["assets"]}
    after = json.loads(alarmgw("assets", "-c", str(path), "--on", "2027-01-01", "--json").stdout)
    host = next(a for a in after["assets"] if a["kind"] == "host")
    assert (host["in_warranty"], host["parts_billable"]) == (False, True)
    table = alarmgw("assets", "-c", str(path), "--on", "2027-01-01")
    assert "no: parts at" in table.stdout and "cost" in table.stdout  # wrapped in 80 columns


def test_the_maintenance_plan_and_a_site_without_a_commissioning_day(tmp_path: Path) -> None:
    path = site_with_assets(tmp_path)
    r = alarmgw("maintenance", "plan", "-c", str(path), "--on", "2026-03-10", "--json")
    assert r.returncode == 0, r.stderr
    visits = json.loads(r.stdout)["visits"]
    assert [(v["kind"], v["opens"], v["closes"], v["state"]) for v in visits] == [
        ("monthly", "2026-01-01", "2026-01-31", "overdue"),
        ("monthly", "2026-02-01", "2026-02-28", "overdue"),
        ("monthly", "2026-03-01", "2026-03-31", "due"),
        ("regular", "2026-04-01", "2026-07-31", "upcoming"),
        ("regular", "2026-08-01", "2026-11-30", "upcoming"),
        ("regular", "2026-12-01", "2026-12-21", "upcoming"),
        ("pre_expiry", "2026-12-22", "2026-12-31", "upcoming"),
    ]
    path.write_text(path.read_text().replace(", commissioned_on: 2026-01-01", ""))
    r = alarmgw("maintenance", "plan", "-c", str(path))
    assert r.returncode == 2 and "site.commissioned_on is not set" in r.stderr
