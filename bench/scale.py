"""Scale benchmark: a 5,000-device site simulated and polled, as two separate processes.

What it does: writes a site file of HOSTS simulated wireless hosts (each its own Modbus TCP
server on a loopback port) with DETECTORS detectors each, and a scenario that opens the
cover (tamper) of FAULTS random detectors at random moments after a warm-up. It starts
`alarmgw simulate` and `alarmgw run` as separate processes, lets them run for DURATION
seconds, and reads:

- gateway CPU seconds (user + system, /proc/PID/stat) per 1,000 device readings, over the
  window from the end of the warm-up to the end of the run (start-up excluded); the reading
  counts come from the gateway's own counters (SIGUSR1 logs them);
- the gateway's peak resident memory (VmHWM, /proc/PID/status);
- fault-to-ticket latency: from the moment the simulator starts a fault (its start time +
  the scenario offset) to the ticket's raised_at stamp in the store (stamped when the poll
  that confirms the fault returns; the row is committed in the same call).

Tamper raises on the first reading that shows it, so latency = time to the next poll of
that device + the poll's own duration; the target is under one poll interval + 1 s.

    .venv/bin/python bench/scale.py            # 100 hosts x 50 detectors, 60 s, 5 s polls
    .venv/bin/python bench/scale.py --hosts 10 --duration 20   # a quick look

With --outputs the gateway also serves its HTTP API and sends every reading to InfluxDB (a
victoria-metrics this script starts on a loopback port), by default every reading (the
worst case; --influx-interval 60 is the shipped default of one point per device a minute);
during the window the bench asks the API what one open
dashboard asks (site, devices, faults, tickets every 5 s) and scrapes /metrics every 15 s,
timing each answer from this process, and counts the points the server holds for the window.

The last line reads: cpu_s_per_1000_readings=X rss_mb=Y ticket_latency_p99_s=Z
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALARMGW = [sys.executable, "-m", "alarmgw.gateway.cli"]
sys.path.insert(0, str(ROOT))

from alarmgw.gateway.credentials import token_entry  # noqa: E402
from alarmgw.gateway.runtime import free_port, free_ports  # noqa: E402
from tests.services import VictoriaMetrics  # noqa: E402

BENCH_TOKEN = "bench-token-0123456789abcdef"


def outputs_extra(folder: Path, influx_url: str, influx_interval: float) -> tuple[str, int]:
    """Site-file lines for the HTTP API and InfluxDB telemetry, and the API's port."""
    (folder / "tokens.yaml").write_text(f"tokens:\n  {token_entry('bench', 'viewer', BENCH_TOKEN)}\n")
    port = free_port()
    return (
        (
            f"http: {{port: {port}, tokens_file: tokens.yaml}}\n"
            f"influxdb: {{url: '{influx_url}', org: bench, bucket: bench, interval_s: {influx_interval}}}\n"
        ),
        port,
    )


# What one open dashboard asks every 5 s, and a Prometheus scraping every 15 s.
PROBES = {"/api/site": 5.0, "/api/devices": 5.0, "/api/faults": 5.0, "/api/tickets": 5.0, "/metrics": 15.0}


class ApiProbe:
    """Asks the gateway's API what an open dashboard and a Prometheus would, timing each."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.times: dict[str, list[float]] = {path: [] for path in PROBES}
        self.sizes: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import urllib.request

        tick = 0
        while not self.stop.wait(5.0):
            tick += 1
            for path, times in self.times.items():
                if tick % round(PROBES[path] / 5.0):
                    continue
                req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {BENCH_TOKEN}"})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=10) as r:
                    self.sizes[path] = len(r.read())
                times.append(time.perf_counter() - t0)

    def report(self) -> str:
        self.stop.set()
        self.thread.join(15)
        parts = []
        for path, times in self.times.items():
            if path not in ("/api/devices", "/metrics"):
                continue  # small answers; devices and metrics are the large ones
            ms = [t * 1000 for t in times]
            if not ms:
                parts.append(f"{path}: no request in a window this short")
                continue
            parts.append(
                f"{path}: {len(ms)} requests, {self.sizes.get(path, 0) / 1024:.0f} KiB, "
                f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"
            )
        return "; ".join(parts)


def write_site(folder: Path, hosts: int, detectors: int, interval: float) -> tuple[Path, list[str]]:
    lines = [
        "site: {id: bench-site, area: city, commissioned_on: 2026-01-01}",
        "store: {path: bench.db}",
        f"poll: {{interval_s: {interval}, timeout_s: 2.0, retries: 1}}",
        "hosts:",
    ]
    device_ids = []
    ports = free_ports(hosts)
    for h in range(hosts):
        lines += [
            f"  - id: h{h:03d}",
            "    model: sim-wh100",
            f"    modbus: {{address: 127.0.0.1, port: {ports[h]}}}",
        ]
        lines.append("    devices:")
        for d in range(detectors):
            kind = "smoke_detector" if d % 2 == 0 else "pir_detector"
            dev = f"h{h:03d}-d{d:02d}"
            device_ids.append(dev)
            lines.append(f"      - {{id: {dev}, kind: {kind}, slot: {d + 1}}}")
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, device_ids


def write_scenario(folder: Path, devices: list[str], faults: int, start: float, end: float, seed: int) -> Path:
    rng = random.Random(seed)
    chosen = rng.sample(devices, faults)
    items = [f"  - {{at: {rng.uniform(start, end):.3f}, device: {d}, fault: tamper}}" for d in chosen]
    path = folder / "scenario.yaml"
    path.write_text(f"seed: {seed}\nfaults:\n" + "\n".join(items) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


class StatsReader:
    """Collects the gateway's `stats ...` log lines from its stderr."""

    def __init__(self, stream: object, log: Path) -> None:
        self.log = log.open("w", buffering=1)
        self.lines: list[dict[str, int]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.log.write(line)
            if " stats " in line:
                stats = dict(kv.split("=") for kv in line.split(" stats ", 1)[1].split())
                with self.cond:
                    self.lines.append({k: int(v) for k, v in stats.items()})
                    self.cond.notify_all()

    def ask(self, pid: int) -> dict[str, int]:
        with self.cond:
            n = len(self.lines)
            os.kill(pid, signal.SIGUSR1)
            if not self.cond.wait_for(lambda: len(self.lines) > n, timeout=10):
                raise RuntimeError("gateway did not report its counters")
            return self.lines[-1]


def count_points(vm: VictoriaMetrics, start: datetime, end: datetime) -> str:
    """How many battery points of detectors the server holds stamped inside the window."""
    t0, t1 = start.timestamp() * 1000, end.timestamp() * 1000
    n = series = 0
    for metric in ("smoke_detector_battery_v", "pir_detector_battery_v"):
        for s in vm.export(metric):
            series += 1
            n += sum(1 for t in s["timestamps"] if t0 <= t < t1)
    return f"{n} detector battery points stamped in the window, {series} series"


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--detectors", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--outputs", action="store_true", help="also serve the HTTP API and write to InfluxDB")
    ap.add_argument("--influx-interval", type=float, default=0.0, help="influxdb.interval_s (0: every reading)")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="alarmgw-bench-"))
    site, devices = write_site(folder, args.hosts, args.detectors, args.interval)
    vm = probe = None
    if args.outputs:
        vm = VictoriaMetrics(folder=folder / "victoria-metrics").start()
        extra, api_port = outputs_extra(folder, vm.url, args.influx_interval)
        site.write_text(site.read_text() + extra)
    warmup = 2 * args.interval
    scenario = write_scenario(
        folder, devices, min(args.faults, len(devices)), warmup, args.duration - args.interval - 2, args.seed
    )
    print(
        f"site: {args.hosts} hosts x {args.detectors} detectors = {len(devices)} devices, "
        f"poll every {args.interval:g} s, {args.duration:g} s run, {args.faults} tamper faults; files in {folder}"
    )

    sim_log = (folder / "simulator.log").open("w")
    sim = subprocess.Popen(
        [*ALARMGW, "simulate", "-c", str(site), "--scenario", str(scenario)],
        stdout=subprocess.PIPE,
        stderr=sim_log,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    gw = None
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()
        if not first:
            raise SystemExit(f"simulator did not start; see {folder / 'simulator.log'}")
        ready = json.loads(first)
        sim_start = datetime.fromisoformat(ready["started_at"].replace("Z", "+00:00"))
        t_start = time.monotonic()
        gw = subprocess.Popen(
            [*ALARMGW, "run", "-c", str(site)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        stats = StatsReader(gw.stderr, folder / "gateway.log")
        time.sleep(max(0.0, warmup - (time.monotonic() - t_start)))
        s1, c1, w1 = stats.ask(gw.pid), cpu_seconds(gw.pid), time.monotonic()
        window_start = datetime.now(UTC)
        if args.outputs:
            probe = ApiProbe(api_port)
        time.sleep(max(0.0, args.duration - (time.monotonic() - t_start)))
        s2, c2, w2 = stats.ask(gw.pid), cpu_seconds(gw.pid), time.monotonic()
        window_end = datetime.now(UTC)
        api_report = probe.report() if probe is not None else ""
        rss = peak_rss_mb(gw.pid)
        sim_cpu = cpu_seconds(sim.pid)
        if vm is not None:
            time.sleep(15)  # the gateway's next flush (10 s) and the server's indexing
            influx_report = count_points(vm, window_start, window_end)
    finally:
        for p in (gw, sim):
            if p is not None:
                p.terminate()
                p.wait(20)
        if vm is not None:
            vm.stop()

    readings = s2["readings"] - s1["readings"]
    cpu = c2 - c1
    window = w2 - w1
    injected = {}
    for line in scenario.read_text().splitlines():
        m = re.search(r"at: ([\d.]+), device: ([\w-]+)", line)
        if m:
            injected[m.group(2)] = sim_start + timedelta(seconds=float(m.group(1)))
    with sqlite3.connect(folder / "bench.db") as db:
        rows = db.execute("SELECT device_id, raised_at FROM tickets WHERE fault = 'tamper'").fetchall()
        others = db.execute("SELECT COUNT(*) FROM tickets WHERE fault != 'tamper'").fetchone()[0]
    latencies = [
        (datetime.fromisoformat(raised.replace("Z", "+00:00")) - injected[dev]).total_seconds()
        for dev, raised in rows
        if dev in injected
    ]
    p50 = percentile(latencies, 0.5) if latencies else float("nan")
    p99 = percentile(latencies, 0.99) if latencies else float("nan")
    per_1000 = cpu / readings * 1000 if readings else float("nan")

    print(
        f"window: {window:.1f} s after a {warmup:g} s warm-up; {readings} readings "
        f"({readings / window:.0f}/s), {s2['polls'] - s1['polls']} polls, {s2['requests'] - s1['requests']} requests, "
        f"{s2['link_failures']} link failures, {s2['polls_skipped']} skipped polls"
    )
    print(
        f"gateway CPU: {cpu:.2f} s in {window:.1f} s = {100 * cpu / window:.1f}% of one core; "
        f"{per_1000:.3f} CPU s per 1,000 readings; peak RSS {rss:.1f} MB"
    )
    print(f"simulator CPU over its whole life: {sim_cpu:.1f} s (not part of the gateway's figures)")
    print(
        f"tickets: {len(rows)} tamper of {len(injected)} injected, {others} other; "
        f"fault-to-ticket latency p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(latencies, default=float('nan')):.2f} s "
        f"(target p99 < {args.interval + 1:g} s)"
    )
    if args.outputs:
        print(f"HTTP API under load: {api_report}")
        print(f"InfluxDB: {influx_report}")
    print(f"cpu_s_per_1000_readings={per_1000:.4f} rss_mb={rss:.1f} ticket_latency_p99_s={p99:.2f}")
    return 0 if len(rows) == len(injected) and others == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
