"""`alarmgw demo --sites N`: N simulated sites, each with its gateway, and the service centre
(an ingest worker and the desk) in one process, on a real MQTT 5 broker and PostgreSQL.

Each site is a copy of the packaged demo site written out as a site file (its own id, area,
simulator ports and Zigbee2MQTT base topic; its uplink and remote desk on the broker), with a
scenario of its own seed, so faults differ from site to site. The centre file is written
beside them. An engineer's key pair (`demo`) lets moves made at the desk reach the sites as
signed remote commands; the desk's user `demo` (dispatcher) gets a password made for the run.
Everything lives in a temporary folder and a database made for the run, dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import yaml

from alarmgw.simulator.scenario import load_scenario

from .app import Gateway
from .credentials import new_key_pair, user_entry, write_private_key
from .demo import builtin
from .runtime import DEMO_DATABASE, DemoError, free_port, run_until_stopped
from .site_file import load_site
from .wiring import simulator_for

DEMO_USER = "demo"  # the desk's dispatcher, and the engineer whose key signs the desk's moves
CENTRE_USER = "centre"  # the centre itself, a viewer at the sites: it asks for their tickets
MOSQUITTO_PATHS = ("mosquitto", "/usr/sbin/mosquitto")


def site_file(folder: Path, n: int, broker: tuple[str, int]) -> Path:
    """The demo site as site `site-NN`, written to `folder/site-NN.yaml` (its users file beside it)."""
    doc = yaml.safe_load(builtin("demo-site.yaml").read_text())
    site_id = f"site-{n:02d}"
    doc["site"].update(id=site_id, name=f"{doc['site']['name']} #{n}", area="city" if n % 2 else "suburb")
    doc["store"] = {"path": f"{site_id}.db"}
    host, port = broker
    doc["device_broker"] = {"host": host, "port": port}
    doc["zigbee2mqtt"][0]["base_topic"] = f"zigbee2mqtt-{site_id}"
    for h in doc["hosts"]:
        if "modbus" in h:
            h["modbus"]["port"] = free_port()
    doc["uplink"] = {"broker": {"host": host, "port": port}, "telemetry_interval_s": 30}
    doc["remote"] = {"users_file": "engineers.yaml"}
    path = folder / f"{site_id}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def centre_file(folder: Path, dsn: str, broker: tuple[str, int], sites: int, desk_port: int) -> Path:
    host, port = broker
    doc = {
        "database": {"dsn": dsn},
        "broker": {"host": host, "port": port},
        "ingest": {"client_id": f"demo-centre-{secrets.token_hex(3)}", "batch_wait_s": 0.1, "log_every_s": 300},
        # Telemetry every 30 s: a site that says nothing for 90 s is dark.
        "sites": {
            "offline_after_s": 90,
            "check_interval_s": 5,
            "areas": {f"site-{n:02d}": "city" if n % 2 else "suburb" for n in range(1, sites + 1)},
        },
        "desk": {"port": desk_port},
        "relay": {"keys_dir": "keys", "retry_s": 5},
    }
    path = folder / "centre.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[tuple[str, int]]:
    """A mosquitto of the demo's own on a free loopback port (MQTT 5 shared subscriptions)."""
    exe = next((p for p in (shutil.which(n) or n for n in MOSQUITTO_PATHS) if Path(p).is_file()), None)
    if exe is None:
        raise DemoError("no mosquitto found: install it (apt-get install mosquitto) or give --broker HOST:PORT")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
        f"log_dest file {folder / 'mosquitto.log'}\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"mosquitto exited at start (exit code {proc.returncode})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise DemoError(f"mosquitto did not listen on 127.0.0.1:{port} within 10 s")


async def _until_listening(port: int, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str) -> AsyncIterator[str]:
    """A database made for the run on the server `admin_dsn` reaches, dropped at the end."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"alarmgw_demo_{secrets.token_hex(4)}"
    try:
        admin = await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise DemoError(
            f"no PostgreSQL at {admin_dsn}: {first}; start one (sudo ./scripts/postgres) or give --database DSN"
        ) from exc
    async with admin:
        await admin.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield make_conninfo(admin_dsn, dbname=name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


async def fleet_demo(
    sites: int, duration: float | None, database: str | None, broker: str | None, desk_port: int = 0
) -> int:
    from alarmgw.centre import commands
    from alarmgw.centre.config import load_centre
    from alarmgw.centre.db import connect, migrate, pool
    from alarmgw.centre.desk_auth import add_user

    folder = Path(tempfile.mkdtemp(prefix="alarmgw-fleet-demo-"))
    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            where = stack.enter_context(mosquitto(folder))
        else:
            host, _, port = broker.rpartition(":")
            where = (host or "127.0.0.1", int(port))
        dsn = await stack.enter_async_context(scratch_database(database or DEMO_DATABASE))

        (folder / "keys").mkdir(mode=0o700)
        lines = []
        for name, role in ((DEMO_USER, "engineer"), (CENTRE_USER, "viewer")):
            pem, public = new_key_pair()
            write_private_key(folder / "keys" / f"{name}.key", pem)
            lines.append(f"  {user_entry(name, role, public)}\n")  # type: ignore[arg-type]
        users = folder / "engineers.yaml"
        users.touch(mode=0o600)
        users.write_text("users:\n" + "".join(lines))
        loaded = [load_site(site_file(folder, n, where)) for n in range(1, sites + 1)]
        desk_port = desk_port or free_port()
        centre = load_centre(centre_file(folder, dsn, where, sites, desk_port))

        password = secrets.token_urlsafe(12)
        async with await connect(dsn) as conn:
            await migrate(conn)
        async with pool(dsn, 1) as p:
            await add_user(p, DEMO_USER, "dispatcher", password)

        base = load_scenario(builtin("scenarios/demo.yaml"))
        runs: list[Callable[[], Awaitable[object]]] = []
        for n, site in enumerate(loaded, start=1):
            scenario = base.model_copy(update={"seed": (base.seed or 0) + n})
            await stack.enter_async_context(simulator_for(site, scenario))
            gw = await stack.enter_async_context(Gateway(site))
            runs.append(gw.run)
        runs.append(lambda: commands.ingest(centre, 1, signals=False))
        runs.append(lambda: commands.desk(centre, signals=False))

        async def announce() -> None:
            """The desk's address once it answers, so the first click finds it."""
            await _until_listening(desk_port)
            print(
                f"fleet demo: {sites} simulated sites and their gateways, the service centre on the broker "
                f"{where[0]}:{where[1]} and a database made for the run; files in {folder}",
                flush=True,
            )
            print(f"desk: http://127.0.0.1:{desk_port}/  (user {DEMO_USER}, password {password})", flush=True)

        runs.append(announce)
        await run_until_stopped(runs, duration)
    shutil.rmtree(folder, ignore_errors=True)
    return 0
