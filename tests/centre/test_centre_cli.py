"""The centre as its operator runs it: `alarmgw centre user add`, `alarmgw centre desk` and
`alarmgw centre ingest` as separate processes, against a real PostgreSQL, a real mosquitto and
a real SMTP server: a user logs in to the desk, and an escalation a site publishes reaches the
engineer on duty by mail."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from alarmgw.gateway.runtime import free_port
from tests.broker import Mosquitto
from tests.centre.test_notify import Mailbox, smtp  # noqa: F401  (the fixture: a real SMTP server)
from tests.centre.uplink import escalation_message

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def centre_file(folder: Path, dsn: str, broker: int, desk: int, extra: str = "") -> Path:
    path = folder / "centre.yaml"
    path.write_text(
        f"database: {{dsn: '{dsn}'}}\n"
        f"broker: {{host: 127.0.0.1, port: {broker}}}\n"
        f"ingest: {{client_id: cli-{folder.name[-12:]}, batch_wait_s: 0.05}}\n"
        f"desk: {{port: {desk}}}\n" + extra
    )
    return path


def alarmgw(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alarmgw.gateway.cli", *args], cwd=ROOT, input=stdin, capture_output=True, text=True
    )


def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "alarmgw.gateway.cli", *args], cwd=ROOT, stdout=out, stderr=out)


def stopped(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


async def test_a_user_added_from_the_command_line_logs_in_to_the_desk(
    tmp_path: Path, pg: str, mosquitto: Mosquitto
) -> None:
    port = free_port()
    config = centre_file(tmp_path, pg, mosquitto.port, port)
    added = alarmgw("centre", "user", "add", "disp-1", "--role", "dispatcher", "-c", str(config), stdin="a long pass\n")
    assert added.returncode == 0, added.stderr
    assert "disp-1 (dispatcher)" in added.stdout
    again = alarmgw("centre", "user", "add", "disp-1", "-c", str(config), stdin="a long pass\n")
    assert again.returncode == 2 and "disp-1" in again.stderr
    desk = start("centre", "desk", "-c", str(config), log=tmp_path / "desk.log")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await http.get("/api/openapi.json")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "desk.log").read_text()
                await asyncio.sleep(0.1)
            assert (await http.get("/api/tickets")).status_code == 401
            login = await http.post("/api/login", json={"name": "disp-1", "password": "a long pass"})
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            listed = await http.get("/api/tickets", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200, listed.text
    finally:
        assert stopped(desk) == 0, (tmp_path / "desk.log").read_text()


async def test_an_escalation_from_a_site_reaches_the_engineer_on_duty_by_mail(
    tmp_path: Path,
    pg: str,
    mosquitto: Mosquitto,
    smtp: tuple[Mailbox, int],  # noqa: F811
) -> None:
    box, smtp_port = smtp
    (tmp_path / "smtp.pass").write_text("p@ss/w:rd\n")
    notify = (
        "notify:\n"
        "  timezone: UTC\n"
        "  engineers:\n"
        "    - name: alice\n"
        "      urls:\n"
        f"        - url: 'mailto://alarms:{{secret}}@127.0.0.1:{smtp_port}?from=centre@example.com&to=alice@example.com'\n"
        "          secret_file: smtp.pass\n"
        "  shifts:\n"
        "    - {engineers: [alice], start: '00:00', end: '00:00'}\n"
    )
    config = centre_file(tmp_path, pg, mosquitto.port, free_port(), notify)
    worker = start("centre", "ingest", "-c", str(config), "--worker", "1", log=tmp_path / "ingest.log")
    try:
        deadline = time.monotonic() + 20
        while "subscribed" not in (tmp_path / "ingest.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "ingest.log").read_text()
            await asyncio.sleep(0.1)
        site = f"cli-{os.getpid()}"
        m = escalation_message(site, ticket_id=7, mark_s=600.0)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            for _ in range(2):  # delivered twice (at least once): paged once
                await client.publish(m.topic, m.payload, qos=1)
        deadline = time.monotonic() + 30
        while not box.messages:
            assert time.monotonic() < deadline, (tmp_path / "ingest.log").read_text()
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert len(box.messages) == 1
        mail = box.messages[0]
        assert mail["To"] == "alice@example.com" and site in str(mail["Subject"])
    finally:
        assert stopped(worker) == 0, (tmp_path / "ingest.log").read_text()
