"""The distribution installs one import package, `alarmgw`, whatever folders the repository
keeps at its top; its data files and the one console command come with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (a build writes into its source folder)."""
    src = tmp_path_factory.mktemp("src") / "alarmgw"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", ".*cache", ".hypothesis"),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        timeout=120,
    )
    return next(out.glob("alarmgw-*.whl"))


def test_the_wheel_holds_one_top_level_package_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"alarmgw"}
    for data in (
        "alarmgw/config/demo-site.yaml",
        "alarmgw/config/profiles/sim-wh100.yaml",
        "alarmgw/diagnostics/faults.yaml",
        "alarmgw/gateway/dashboard/index.html",
        "alarmgw/schemas/ticket-event.schema.json",
        "alarmgw/centre/migrations/0001_ingest.sql",
        "alarmgw/centre/desk/index.html",
    ):
        assert data in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert entry_points.split() == ["[console_scripts]", "alarmgw", "=", "alarmgw.gateway.cli:main"]


def test_installed_it_adds_only_alarmgw_and_imports_as_one_namespace(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    added = {p.name for p in target.iterdir()} - {"bin"}
    assert {a for a in added if not a.endswith(".dist-info")} == {"alarmgw"}
    probe = (
        "import alarmgw.gateway, alarmgw.drivers, alarmgw.diagnostics, alarmgw.simulator, alarmgw.config;"
        "print(alarmgw.gateway.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == str(target / "alarmgw" / "gateway" / "__init__.py")
