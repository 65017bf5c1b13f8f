"""The house's one-way imports, read from the code itself: the site core builds no front end;
drivers and diagnostics know nothing of the gateway; the simulator never imports the gateway
or a service centre."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # real peers: sockets, brokers, processes, a browser

ROOT = Path(__file__).resolve().parents[2]

FRONT_ENDS = (
    "alarmgw.gateway.app",
    "alarmgw.gateway.cli",
    "alarmgw.gateway.demo",
    "alarmgw.gateway.fleet_demo",
    "alarmgw.gateway.ha_discovery",
    "alarmgw.gateway.http_api",
    "alarmgw.gateway.http_guard",
    "alarmgw.gateway.http_server",
    "alarmgw.gateway.influx",
    "alarmgw.gateway.live",
    "alarmgw.gateway.metrics",
    "alarmgw.gateway.operations",
    "alarmgw.gateway.remote",
    "alarmgw.gateway.remote_auth",
    "alarmgw.gateway.remote_cli",
    "alarmgw.gateway.uplink",
    "fastapi",
    "uvicorn",
    "influxdb_client",
    "prometheus_client",
)


def test_the_site_core_imports_no_front_end() -> None:
    probe = "import sys, alarmgw.gateway.core; print('\\n'.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60, cwd=ROOT
    ).stdout.split()
    assert "alarmgw.gateway.core" in loaded
    assert sorted(m for m in loaded if m in FRONT_ENDS or m.split(".")[0] in FRONT_ENDS) == []


def imports_of(folder: str) -> dict[str, set[str]]:
    """file -> the absolute modules it imports (relative imports stay inside the folder)."""
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def test_imports_run_one_way() -> None:
    forbidden = {
        "drivers": ("alarmgw.gateway", "alarmgw.diagnostics", "alarmgw.simulator", "alarmgw.centre"),
        "diagnostics": ("alarmgw.gateway", "alarmgw.drivers", "alarmgw.simulator", "alarmgw.centre"),
        "simulator": ("alarmgw.gateway", "alarmgw.centre"),
        # The service centre shares the model, diagnostics, drivers and schemas, never the gateway.
        "centre": ("alarmgw.gateway", "alarmgw.simulator"),
        "alarmgw": ("alarmgw.gateway", "alarmgw.drivers", "alarmgw.diagnostics", "alarmgw.simulator"),
    }
    wrong = [
        f"{file} imports {name}"
        for folder, banned in forbidden.items()
        for file, names in imports_of(folder).items()
        for name in names
        if name.startswith(banned)
    ]
    assert wrong == []


# What a site that does not use a part never loads: its memory is the box's, not the part's.
UNUSED_BY_A_MODBUS_SITE = (
    "aiomqtt",
    "paho",
    "cryptography",
    "prometheus_client",
    "rich",
    "fastapi",
    "uvicorn",
    "influxdb_client",
    "psycopg",
    "pysiaalarm",
    "jsonschema",
)


def test_a_gateway_loads_only_what_its_site_uses(tmp_path: Path) -> None:
    """`alarmgw run` on a Modbus site with no uplink, HTTP, InfluxDB or remote engineers:
    the command line and a gateway opened on the site load none of those parts."""
    from tests.conftest import write_site

    site = write_site(tmp_path, 1502)
    probe = (
        "import asyncio, sys\n"
        "import alarmgw.gateway.cli\n"
        "from alarmgw.gateway.app import Gateway\n"
        "from alarmgw.gateway.site_file import load_site\n"
        "async def main():\n"
        f"    gw = await Gateway.open(load_site({str(site)!r}))\n"
        "    await gw.aclose()\n"
        "asyncio.run(main())\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path
    ).stdout.split()
    assert "alarmgw.gateway.core" in loaded
    assert sorted({m.split(".")[0] for m in loaded} & set(UNUSED_BY_A_MODBUS_SITE)) == []
