"""How close a poll is to the floor: alarmgw against a bare pymodbus loop on the same work.

The work: N Modbus units behind one Modbus TCP endpoint (pymodbus's own server, in this
process; ids 1..N, and since a unit id is at most 247, past 247 units one more endpoint per
247), each read every second as one block of 10 holding registers.
- floor: a bare asyncio loop on pymodbus's AsyncModbusTcpClient, one connection (per endpoint), reading
  each unit's block once a second and throwing the values away (a child process);
- alarmgw: `alarmgw run` on a site file of N hosts, one per unit, each with a register
  profile of one 10-register slot (decode, rules, fault table, store, and metrics: the
  HTTP API is on, on a loopback port, since the metrics are kept only for it),
  once on asyncio's own event loop and once on uvloop (when it is installed).
Windows alternate (floor, alarmgw on asyncio, alarmgw on uvloop, floor ...), each a fresh process: after a
warm-up, the process's own CPU (utime + stime from /proc/PID/stat) over the window and the
reads it made in it (the floor counts its own; alarmgw's `requests` from its stats line on
SIGUSR1), and its resident memory at the window's end (VmRSS). Medians over the windows.
The last line: floor_cpu_s_per_1000=X alarmgw_cpu_s_per_1000=Y ratio=R rss_mb=M rss_floor_mb=F
loop=L asyncio_cpu_s_per_1000=A ratio_asyncio=RA uvloop_cpu_s_per_1000=U ratio_uvloop=RU, where Y,
R and M are alarmgw's on the loop `alarmgw run` takes by default (L: uvloop where installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSimulatorContext,
)
from pymodbus.server import ModbusTcpServer

REGISTERS = 10
MAX_UNIT = 247  # Modbus unit ids are 1..247
TICKS = os.sysconf("SC_CLK_TCK")

PROFILE = """\
name: floor-10
description: one slot of 10 holding registers per unit (the floor benchmark's work)
function: holding
slot_base: 0
slot_registers: 10
max_read_registers: 10
max_gap_registers: 0
layouts:
  host:
    fields:
      status: {offset: 0, type: bits, flags: {present: 0, tamper: 1, battery_low: 2, mains_fail: 3}}
      battery_v: {offset: 1, type: u16, scale: 0.001}
      rf_errors: {offset: 6, type: u16}
  default:
    fields:
      status: {offset: 0, type: bits, flags: {present: 0}}
"""

FLOOR = """\
import asyncio, sys, time
from pymodbus.client import AsyncModbusTcpClient

async def main(ports, units):
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2) for p in ports]
    for client in clients:
        if not await client.connect():
            raise SystemExit(f"cannot connect to {client.comm_params.port}")
    reads, start = 0, time.monotonic()
    while True:
        for u in range(units):
            reply = await clients[u // 247].read_holding_registers(0, count=10, device_id=u % 247 + 1)
            if reply.isError():
                raise SystemExit(f"unit {u + 1}: {reply}")
            reads += 1
        print(reads, flush=True)
        start += 1.0
        await asyncio.sleep(max(0.0, start - time.monotonic()))

asyncio.run(main([int(p) for p in sys.argv[1].split(",")], int(sys.argv[2])))
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def alive(proc: asyncio.subprocess.Process, what: str, log: Path | None = None) -> int:
    """The process's pid, or a clear exit if it has ended."""
    if proc.returncode is None and Path(f"/proc/{proc.pid}/stat").exists():
        return proc.pid
    tail = f":\n{log.read_text()[-2000:]}" if log is not None and log.exists() else ""
    raise SystemExit(f"{what} ended early (exit {proc.returncode}){tail}")


def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()


def rss_mb(pid: int) -> float:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(found.group(1)) / 1024 if found else float("nan")


def site_file(folder: Path, ports: list[int], units: int) -> Path:
    from alarmgw.gateway.credentials import token_entry
    from alarmgw.gateway.runtime import free_port

    tokens = folder / "api-tokens.yaml"
    tokens.write_text(f"tokens:\n  {token_entry('bench', 'viewer', 'bench-token-0123456789abcdef')}\n")
    tokens.chmod(0o600)
    (folder / "profiles").mkdir(exist_ok=True)
    (folder / "profiles" / "floor-10.yaml").write_text(PROFILE)
    hosts = "".join(
        f"  - {{id: unit-{u + 1}, model: floor-10, modbus: "
        f"{{address: 127.0.0.1, port: {ports[u // MAX_UNIT]}, unit: {u % MAX_UNIT + 1}}}}}\n"
        for u in range(units)
    )
    path = folder / "site.yaml"
    path.write_text(
        "site: {id: floor, area: city}\n"
        f"store: {{path: {folder / 'floor.db'}}}\n"
        "profiles_dir: profiles\n"
        "poll: {interval_s: 1, timeout_s: 1, retries: 0}\n"
        f"http: {{port: {free_port()}, tokens_file: {tokens.name}}}\n"
        f"hosts:\n{hosts}"
    )
    return path


async def serve(units: int) -> tuple[list[ModbusTcpServer], list[int]]:
    """One endpoint per 247 units (the most unit ids one address can tell apart), on free ports."""
    values = [1, 13000, 0, 0, 0, 0, 0, 0, 0, 0]  # present, 13.0 V
    servers, ports = [], []
    for first in range(0, units, MAX_UNIT):
        n = min(MAX_UNIT, units - first)
        devices: dict[int, ModbusDeviceContext | ModbusSimulatorContext] = {
            u: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, list(values)))  # type: ignore[no-untyped-call]
            for u in range(1, n + 1)
        }
        server = ModbusTcpServer(ModbusServerContext(devices=devices, single=False), address=("127.0.0.1", 0))
        await server.listen()
        assert server.transport is not None
        servers.append(server)
        ports.append(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    return servers, ports


async def window_floor(ports: list[int], units: int, warmup_s: float, window_s: float) -> tuple[float, int, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOR, ",".join(map(str, ports)), str(units), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    last = 0

    async def follow() -> None:
        nonlocal last
        assert proc.stdout is not None
        async for line in proc.stdout:
            last = int(line)

    reader = asyncio.create_task(follow())
    try:
        await asyncio.sleep(warmup_s)
        c0, r0 = cpu_s(alive(proc, "the floor loop")), last
        await asyncio.sleep(window_s)
        pid = alive(proc, "the floor loop")
        c1, r1, mem = cpu_s(pid), last, rss_mb(pid)
    finally:
        stop(proc)
        await proc.wait()
        reader.cancel()
    if proc.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"the floor loop ended with {proc.returncode}")
    return c1 - c0, r1 - r0, mem


async def window_alarmgw(site: Path, loop: str, warmup_s: float, window_s: float) -> tuple[float, int, float, str]:
    log = site.parent / f"run-{time.monotonic_ns()}.log"
    for old in site.parent.glob("floor.db*"):
        old.unlink()
    with log.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alarmgw.gateway.cli",
            "run",
            "-c",
            str(site),
            "--loop",
            loop,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        await asyncio.sleep(warmup_s)
        c0 = cpu_s(alive(proc, "alarmgw run", log))
        proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(window_s)
        pid = alive(proc, "alarmgw run", log)
        c1, mem = cpu_s(pid), rss_mb(pid)
        proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(0.5)
        text = log.read_text()
        lines = [dict(re.findall(r"(\w+)=(\d+)", line)) for line in re.findall(r" stats (.*)", text)]
        if len(lines) < 2 or "requests" not in lines[-1]:
            raise SystemExit(f"alarmgw gave no stats lines:\n{text[-2000:]}")
        delta = {k: int(lines[-1][k]) - int(lines[-2].get(k, 0)) for k in ("requests", "poll_errors", "link_failures")}
        note = f"{delta['poll_errors']} poll errors, {delta['link_failures']} link failures"
        return c1 - c0, delta["requests"], mem, note
    finally:
        stop(proc)
        await proc.wait()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=50, help="Modbus units behind the endpoint (default 50)")
    ap.add_argument("--windows", type=int, default=3, help="windows of each (default 3)")
    ap.add_argument("--window-s", type=float, default=20.0, help="seconds measured per window (default 20)")
    ap.add_argument("--warmup-s", type=float, default=5.0, help="seconds before measuring (default 5)")
    args = ap.parse_args()
    if args.units < 1:
        ap.error("--units must be at least 1")
    servers, ports = await serve(args.units)
    print(
        f"{args.units} units behind 127.0.0.1:{','.join(map(str, ports))}"
        f" (pymodbus {__import__('pymodbus').__version__} server), each read "
        f"every second as one block of {REGISTERS} holding registers; {args.windows} windows of each, alternating, "
        f"{args.window_s:g} s measured after {args.warmup_s:g} s; CPU of the polling process from /proc; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])
    floor: list[tuple[float, float]] = []
    gw: dict[str, list[tuple[float, float]]] = {loop: [] for loop in loops}
    with tempfile.TemporaryDirectory(prefix="alarmgw-floor-") as tmp:
        site = site_file(Path(tmp), ports, args.units)
        try:
            for w in range(args.windows):
                cpu, reads, mem = await window_floor(ports, args.units, args.warmup_s, args.window_s)
                floor.append((1000 * cpu / max(reads, 1), mem))
                print(
                    f"window {w + 1} floor:   {reads} reads, {cpu:.2f} CPU s, {floor[-1][0]:.3f} s/1000, {mem:.1f} MiB",
                    flush=True,
                )
                for loop in loops:
                    cpu, reads, mem, note = await window_alarmgw(site, loop, args.warmup_s, args.window_s)
                    gw[loop].append((1000 * cpu / max(reads, 1), mem))
                    print(
                        f"window {w + 1} alarmgw on {loop}: {reads} reads, {cpu:.2f} CPU s,"
                        f" {gw[loop][-1][0]:.3f} s/1000, {mem:.1f} MiB ({note})",
                        flush=True,
                    )
        finally:
            for server in servers:
                await server.shutdown()  # type: ignore[no-untyped-call]
    print(f"load at the end {os.getloadavg()[0]:.2f} (other work on the machine shows here)")
    f = statistics.median(x for x, _ in floor)
    rss_floor = statistics.median(m for _, m in floor)
    cpu = {loop: statistics.median(x for x, _ in runs) for loop, runs in gw.items()}
    default = loops[-1]  # `alarmgw run` takes uvloop where it is installed
    rss = statistics.median(m for _, m in gw[default])
    each = " ".join(f"{loop}_cpu_s_per_1000={c:.3f} ratio_{loop}={c / f:.2f}" for loop, c in cpu.items())
    print(
        f"floor_cpu_s_per_1000={f:.3f} alarmgw_cpu_s_per_1000={cpu[default]:.3f} ratio={cpu[default] / f:.2f}"
        f" rss_mb={rss:.1f} rss_floor_mb={rss_floor:.1f} loop={default} {each}"
    )


if __name__ == "__main__":
    asyncio.run(main())
