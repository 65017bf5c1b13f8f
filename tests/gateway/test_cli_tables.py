"""What the `alarmgw` command prints for people, as they read it: in an 80-column terminal,
with $COLUMNS, or piped to a file; a table may wrap a cell but never cuts one short."""

from __future__ import annotations

import asyncio
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alarmgw.diagnostics.tickets import Ticket
from alarmgw.gateway.runtime import free_port
from alarmgw.gateway.store import Store
from tests.conftest import Harness, write_site
from tests.gateway.test_remote import site  # noqa: F401  (the fixture: a gateway with its remote desk)

pytestmark = pytest.mark.integration  # real processes, a pseudo-terminal, a broker

ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]
ELLIPSIS = "…"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# The widest words each column holds: the longest fault and state, a breached clock.
TICKETS = [
    ("zb-smoke-12", "smoke_detector", "battery_missing", datetime(2026, 3, 1, 7, 5, 9, tzinfo=UTC)),
    ("rep-north-2", "repeater", "comm_loss", datetime(2026, 3, 2, 23, 41, 17, tzinfo=UTC)),
    ("pir-bay-07", "pir_detector", "tamper", datetime(2026, 3, 3, 12, 0, 58, tzinfo=UTC)),
]
WHO_WHAT_WHEN = [d for d, *_ in TICKETS] + [f"{at:%H:%M:%S}" for *_, at in TICKETS] + ["acknowledged"]


def alarmgw(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """The command with its output piped (as to a file), $COLUMNS set or not."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([*ALARMGW, *args], capture_output=True, text=True, timeout=30, env=env)


def in_terminal(args: Sequence[str], columns: int) -> str:
    """The command on a pseudo-terminal `columns` wide, as someone at a console sees it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen([*ALARMGW, *args], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process has closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(30) == 0, out
    return ANSI.sub("", out.decode().replace("\r\n", "\n"))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A ticket store with tickets of long device names, one acknowledged, one closed."""
    path = tmp_path / "tickets.db"
    with Store(path) as s:
        for device, kind, fault, at in TICKETS:
            s.tickets.write(
                Ticket(None, "site-7", device, kind, fault, fault, "hall", "city", "accessory", "low", at, at),
                "opened",
                at,
            )
    for step in ("ack", "resolve", "close"):
        assert alarmgw("tickets", step, "1", "--db", str(path)).returncode == 0
    assert alarmgw("tickets", "ack", "2", "--db", str(path)).returncode == 0
    return path


def assert_whole(out: str, words: Sequence[str], width: int | None) -> None:
    assert ELLIPSIS not in out, out
    for word in words:
        assert word in out, f"{word!r} is not whole in:\n{out}"
    if width is not None:
        assert max(len(line) for line in out.splitlines()) <= width, out


def test_tickets_list_title_says_which_tickets_it_lists(store: Path) -> None:
    every = alarmgw("tickets", "list", "--db", str(store))
    assert every.returncode == 0, every.stderr
    assert every.stdout.split("\n", 1)[0].strip() == "Tickets"
    assert "zb-smoke-12" in every.stdout  # the closed one is listed, so the title says no "Open"
    live = alarmgw("tickets", "list", "--open", "--db", str(store))
    assert live.stdout.split("\n", 1)[0].strip() == "Open tickets"
    assert "zb-smoke-12" not in live.stdout and "rep-north-2" in live.stdout


def test_tickets_list_cuts_no_id_name_or_time(store: Path) -> None:
    every_word = [*WHO_WHAT_WHEN, "battery_missing", "BREACHED", "not needed"]
    piped = alarmgw("tickets", "list", "--db", str(store))
    assert_whole(piped.stdout, every_word, None)
    # In a file, each ticket is one line: its number, device, fault and time side by side.
    for n, (device, _, fault, at) in enumerate(TICKETS, start=1):
        (row,) = [line for line in piped.stdout.splitlines() if device in line]
        assert re.match(rf"\W*{n}\W", row) and fault in row and f"{at:%H:%M:%S}" in row, row
    wide = alarmgw("tickets", "list", "--db", str(store), columns=100).stdout
    assert_whole(wide, every_word, 100)
    # 80 columns are too few for every word of every clock: those fold; who, what and when do not.
    for out in (
        alarmgw("tickets", "list", "--db", str(store), columns=80).stdout,
        in_terminal(["tickets", "list", "--db", str(store)], 80),
    ):
        assert_whole(out, [*WHO_WHAT_WHEN, "battery_missing"], 80)
        assert "BREACH" in out


def test_a_table_too_narrow_for_its_words_folds_them_and_loses_nothing(store: Path) -> None:
    for n in ("2", "3"):  # closed tickets: their clocks have stopped, so two listings say the same
        for step in ("ack", "resolve", "close"):
            alarmgw("tickets", step, n, "--db", str(store))
    whole = alarmgw("tickets", "list", "--db", str(store)).stdout
    for columns in (40, 60):
        out = alarmgw("tickets", "list", "--db", str(store), columns=columns).stdout
        assert max(len(line) for line in out.splitlines()) <= columns, out
        assert letters(out) == letters(whole), out


def letters(out: str) -> Counter[str]:
    """Every character a table shows, whatever its layout: without spaces and box lines."""
    return Counter(c for c in out if not c.isspace() and not "\u2500" <= c <= "\u257f")


def test_sla_report_fits_a_narrow_terminal(store: Path) -> None:
    args = ["sla-report", "--since", "2026-03-01", "--db", str(store)]
    for columns in (60, 80):
        out = alarmgw(*args, columns=columns)
        assert out.returncode == 0, out.stderr
        assert_whole(out.stdout, ["battery_missing", "comm_loss", "response", "arrival", "repair"], columns)
    assert_whole(in_terminal(args, 60), ["battery_missing", "comm_loss", "response"], 60)


async def test_the_engineers_tool_prints_whole_ticket_times(site: tuple[Harness, dict[str, Any]]) -> None:  # noqa: F811
    h, ctx = site
    h.sim.inject("pir-2", "tamper")
    await h.cycle(1)
    (ticket,) = h.gateway.store.tickets.all()
    opened = ticket.opened_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    shown = {}
    for columns in (None, 80):
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": str(columns)} if columns else {})
        proc = await asyncio.create_subprocess_exec(
            *ALARMGW, "remote", "--broker", f"mqtt://127.0.0.1:{ctx['port']}", "--site", "x", "--root", ctx["root"],
            "--user", "view-1", "--key-file", str(ctx["dir"] / "view-1.key"), "tickets",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        shown[columns] = out.decode()
    assert_whole(shown[None], ["pir-2", "tamper", opened], None)
    # Two ISO 8601 times and seven columns more are wider than 80: the times fold, whole.
    assert ELLIPSIS not in shown[80] and max(len(line) for line in shown[80].splitlines()) <= 80
    assert letters(shown[80]) == letters(shown[None]), shown[80]


def test_simulate_says_which_broker_its_zigbee_devices_publish_to(tmp_path: Path) -> None:
    broker = free_port()
    zigbee = (
        f"device_broker: {{host: 127.0.0.1, port: {broker}}}\n"
        "zigbee2mqtt:\n  - id: zb-bridge\n    base_topic: zigbee2mqtt\n    devices:\n"
        "      - {id: zb-smoke-1, friendly_name: kitchen smoke, kind: smoke_detector}\n"
    )
    site_file = write_site(tmp_path, free_port(), extra=zigbee)
    out = alarmgw("simulate", "-c", str(site_file), "--duration", "0.5")
    assert out.returncode == 0, out.stderr
    ready = json.loads(out.stdout.splitlines()[0])
    assert ready["event"] == "ready" and ready["device_broker"] == f"127.0.0.1:{broker}"
    # A site without MQTT devices has no broker to name.
    plain = alarmgw("simulate", "-c", str(write_site(tmp_path, free_port())), "--duration", "0.5")
    assert "device_broker" not in json.loads(plain.stdout.splitlines()[0])


def test_every_option_of_every_command_is_in_the_readme() -> None:
    """`alarmgw COMMAND --help` and the README's Commands section name the same options."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    commands = readme[readme.index("## Commands") : readme.index("## The site file")]
    top = alarmgw("--help").stdout
    names = re.findall(r"^    ([a-z-]+)\b", top[top.index("COMMAND ...") :], re.MULTILINE)
    assert "tickets" in names and "sla-report" in names
    for name in names:
        assert f"`alarmgw {name}" in commands, f"`alarmgw {name}` is not in the README's Commands"
        helps = [alarmgw(name, "--help").stdout]
        if name == "tickets":
            helps = [alarmgw(name, action, "--help").stdout for action in ("list", "show", "ack")]
        for text in helps:
            for short, option in re.findall(r"(?:(-[a-zA-Z])(?: \S+)?, )?(--[a-z][a-z-]+)", text):
                if option != "--help" and (not short or f"{short} " not in commands):
                    assert option in commands, f"`alarmgw {name}` takes {option}; the README does not say"
    for option in ("-v", "--log-json", "--version"):
        assert f"`{option}`" in commands and option in top


def test_the_demo_s_live_tickets_table_never_cuts_a_name() -> None:
    from rich.console import Console

    from alarmgw.gateway.live import tickets_table
    from alarmgw.gateway.tables import fit_table

    tickets = [
        Ticket(None, "site-7", device, kind, fault, fault, "hall", "city", "accessory", "low", at, at)
        for device, kind, fault, at in TICKETS
    ]
    console = Console(width=80, record=True, file=io.StringIO())
    table = tickets_table(tickets, TICKETS[0][3])
    fit_table(table, console)  # as the live view does
    console.print(table)
    assert_whole(console.export_text(), [t[0] for t in TICKETS], 80)
