"""The service centre under a fleet: how many uplink messages its ingest workers carry, and
what a storm, a killed worker and a second worker do.

    .venv/bin/python bench/fleet.py [--sites 2000] [--devices 50] [--backlog 120000]
                                    [--live-s 100] [--storm-share 0.2] [--publishers 2]

What it does, all on this machine:
- starts its own mosquitto (queues for offline persistent sessions unbounded) and makes two
  throw-away PostgreSQL databases (127.0.0.1:5432);
- capacity: with the workers stopped, publishes a backlog of real uplink messages (the
  gateway's own builders: telemetry of every device, fault and ticket events in between;
  all at QoS 1 so that the broker queues them)
  that the broker queues for two shared-subscription groups, one of 1 worker and one of 2;
  then starts each group's workers alone and times how long they take to store the
  backlog. msgs_per_s is the backlog over that time; cpu_s_per_1000_msgs is the workers'
  own CPU (/proc) per 1,000 messages; scaleout_2w is 2 workers' rate over 1 worker's.
  Nothing else runs meanwhile but the broker and PostgreSQL, so the generator is not
  what is measured;
- live: the 2-worker group takes live telemetry (every device once a minute, spread) while,
  after a fifth of the time, `--storm-share` of the sites report mains loss (a fault event
  and a ticket) within 60 s; a third into the storm one worker is SIGKILLed and started
  again 3 s later (its persistent session kept what came meanwhile). lag_p99_s is publish
  to stored (the event's own time to its received_at) over the storm's events;
  storm_drain_s is from the storm's first event to its last one stored; lost and duplicated
  compare the event ids published with the rows stored; live_cpu_s_per_1000_msgs is the two
  workers' CPU over the live phase per 1,000 messages published in it (a steady stream:
  each message read once, idle waits included).
Each process's CPU is printed, so where the 2 cores cap a figure, it shows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarmgw.diagnostics.engine import FaultRaised  # noqa: E402
from alarmgw.diagnostics.rules import load_fault_table  # noqa: E402
from alarmgw.diagnostics.tickets import Ticket  # noqa: E402
from alarmgw.gateway.messages import fault_messages, telemetry_messages, ticket_messages  # noqa: E402
from alarmgw.gateway.runtime import free_port  # noqa: E402
from alarmgw.model import DeviceKind, Reading  # noqa: E402

PG = os.environ.get("ALARMGW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TOPIC_ROOT = "fleet"
FAULTS = load_fault_table()
KINDS = {f"d{i}": (DeviceKind.SMOKE_DETECTOR if i % 2 else DeviceKind.PIR_DETECTOR) for i in range(200)}
KINDS["host"] = DeviceKind.HOST


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def cpu_s(self) -> float:
        return cpu_of(self.popen.pid)


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    total = 0.0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "postgres":
                    total += cpu_of(int(p.name))
            except OSError:
                continue
    return total


# --- the messages --------------------------------------------------------------------------


def telemetry_batch(sites: range, devices: int, at: datetime) -> list[tuple[str, bytes, int]]:
    out = []
    for s in sites:
        site = f"site-{s:05d}"
        readings = [
            Reading(f"d{d}", at, {"battery_v": 2.9 + (d % 7) / 100, "rssi_dbm": -70 - d % 20, "link_age_s": 12})
            for d in range(devices)
        ]
        out += [(m.topic, m.payload, m.qos) for m in telemetry_messages(f"{TOPIC_ROOT}/{site}", site, readings)]
    return out


def storm_messages(site_no: int, ticket_id: int, at: datetime) -> list[tuple[str, bytes, int]]:
    """A site's mains loss: its fault event and the ticket it opens, as the gateway sends them."""
    site = f"site-{site_no:05d}"
    root = f"{TOPIC_ROOT}/{site}"
    raised = FaultRaised("host", "mains_loss", at, at)
    t = Ticket(
        ticket_id, site, "host", "host", "mains_loss", "AC mains lost", "", "suburb", "accessory", "medium", at, at
    )
    msgs = fault_messages(root, site, [raised], FAULTS, KINDS) + ticket_messages(root, t, "opened", at)
    return [(m.topic, m.payload, m.qos) for m in msgs]


def event_id(payload: bytes) -> str | None:
    doc = json.loads(payload)
    return doc.get("event_id") if isinstance(doc, dict) else None


def publish(port: int, messages: list[tuple[str, bytes, int]]) -> int:
    """Publish, waiting for every QoS 1 acknowledgement; returns how many went out."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=qos) for topic, payload, qos in messages]
    for info in infos:
        if info.mid and info.rc == paho.MQTT_ERR_SUCCESS:
            info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    return len(infos)


def _publish_slice(args: tuple[int, list[tuple[str, bytes, int]]]) -> int:
    return publish(*args)


def publish_parallel(port: int, messages: list[tuple[str, bytes, int]], n: int) -> float:
    """Publish from `n` processes; seconds it took."""
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(n) as pool:
        pool.map(_publish_slice, [(port, messages[i::n]) for i in range(n)])
    return time.monotonic() - started


# --- the parts -------------------------------------------------------------------------------


def start_broker(folder: Path) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\n"
        f"log_dest file {folder / 'mosquitto.log'}\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return port, proc


def centre_file(folder: Path, name: str, port: int, dbname: str, group: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"database: {{dsn: 'postgresql://postgres@127.0.0.1:5432/{dbname}', pool_max: 4}}\n"
        f"broker: {{host: 127.0.0.1, port: {port}}}\n"
        f"ingest: {{group: {group}, topic_root: {TOPIC_ROOT}, client_id: {name}, batch_max: 1000,"
        " batch_wait_s: 0.2, log_every_s: 3600}\n"
        "sites: {offline_after_s: 86400}\n"
    )
    return path


def worker(config: Path, n: int, log: Path) -> Proc:
    cmd = [sys.executable, "-m", "alarmgw.gateway.cli", "centre", "ingest", "-c", str(config), "--worker", str(n)]
    out = log.open("ab")
    return Proc(f"{config.stem}-{n}", subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out))


def stop(p: Proc, sig: int = signal.SIGTERM) -> None:
    if p.popen.poll() is None:
        p.popen.send_signal(sig)
        try:
            p.popen.wait(20)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(10)


def rows(dbname: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{dbname}", autocommit=True) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def stored(dbname: str) -> int:
    """Messages the centre has taken from a backlog in which each device's telemetry comes once:
    its events plus its latest-telemetry rows."""
    (n,) = rows(dbname, "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM telemetry_latest)")[0]
    return int(n)  # type: ignore[call-overload]


def wait_stored(dbname: str, target: int, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if stored(dbname) >= target:
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{dbname}: {stored(dbname)} of {target} messages stored after {timeout_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--backlog", type=int, default=120_000)
    ap.add_argument("--live-s", type=float, default=100.0)
    ap.add_argument("--storm-share", type=float, default=0.2)
    ap.add_argument("--publishers", type=int, default=2)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="alarmgw-fleet-"))
    tag = uuid.uuid4().hex[:8]
    dbs = {"g1": f"fleet_{tag}_1w", "g2": f"fleet_{tag}_2w"}
    for db in dbs.values():
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')  # type: ignore[arg-type]
    port, broker = start_broker(folder)
    procs: list[Proc] = []
    log = folder / "workers.log"
    try:
        files = {g: centre_file(folder, f"w{g}", port, db, g) for g, db in dbs.items()}
        for g in dbs:
            subprocess.run(
                [sys.executable, "-m", "alarmgw.gateway.cli", "centre", "migrate", "-c", str(files[g])],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        # The sessions: each worker connects once, so the broker queues for it from now on.
        first = [worker(files["g1"], 0, log), worker(files["g2"], 0, log), worker(files["g2"], 1, log)]
        time.sleep(4)
        for p in first:
            stop(p)
        sites_for_backlog = max(1, args.backlog // (args.devices + 2))
        now = datetime.now(UTC)
        backlog = telemetry_batch(range(sites_for_backlog), args.devices, now)
        for s in range(sites_for_backlog):
            backlog += storm_messages(s, 1, now)
        # At QoS 1 throughout: a broker keeps QoS 0 messages for an offline session only if told
        # to (queue_qos0_messages), and mosquitto 2.0 then withholds the QoS 1 ones queued behind.
        backlog = [(topic, payload, 1) for topic, payload, _ in backlog[: args.backlog]]
        pub_s = publish_parallel(port, backlog, args.publishers)
        print(
            f"backlog: {len(backlog)} messages ({sites_for_backlog} sites) published in {pub_s:.1f} s "
            f"from {args.publishers} processes, queued for both groups"
        )
        rates: dict[str, float] = {}
        cpu_per_1000: dict[str, float] = {}
        for g, n in (("g1", 1), ("g2", 2)):
            ws = [worker(files[g], i, log) for i in range(n)]
            # Timed from the first stored messages on, so the workers' start-up is not in it.
            wait_stored(dbs[g], 1000, 120)
            t0, s0, c0, pg0, b0 = (
                time.monotonic(),
                stored(dbs[g]),
                sum(w.cpu_s() for w in ws),
                postgres_cpu_s(),
                cpu_of(broker.pid),
            )
            wait_stored(dbs[g], len(backlog), 600)
            took, done = time.monotonic() - t0, stored(dbs[g]) - s0
            cpu = sum(w.cpu_s() for w in ws) - c0
            rates[g], cpu_per_1000[g] = done / took, cpu / done * 1000
            print(
                f"{n} worker(s): {done} messages in {took:.1f} s = {rates[g]:.0f}/s; workers' CPU {cpu:.1f} s "
                f"({cpu_per_1000[g]:.3f} s per 1,000); PostgreSQL {postgres_cpu_s() - pg0:.1f} s; "
                f"broker {cpu_of(broker.pid) - b0:.1f} s"
            )
            if g == "g1":
                for w in ws:
                    stop(w)
            else:
                procs = ws
        # live: telemetry spread over each minute, a storm, a worker killed mid-storm
        devices_per_s = args.sites * args.devices / 60.0
        storm_sites = int(args.sites * args.storm_share)
        storm_at, storm_s = args.live_s * 0.2, min(60.0, args.live_s * 0.6)
        # A minute of telemetry, built before the clock starts: the generator must not be what
        # is measured. Its `at` is not used (telemetry keeps no history at the centre).
        minute = [
            telemetry_batch(range(s, min(s + max(1, args.sites // 60), args.sites)), args.devices, datetime.now(UTC))
            for s in range(0, args.sites, max(1, args.sites // 60))
        ]
        published: set[str] = set()
        storm_first: datetime | None = None
        live_sent = 0
        live_cpu0 = sum(w.cpu_s() for w in procs)  # the workers' CPU from here, the killed one's too
        started = time.monotonic()
        killed = False
        tick = 0
        while time.monotonic() - started < args.live_s:
            t = time.monotonic() - started
            at = datetime.now(UTC)
            msgs = list(minute[tick % len(minute)])  # one second's telemetry
            if storm_at <= t < storm_at + storm_s:
                share = range(
                    int((t - storm_at) / storm_s * storm_sites), int((t - storm_at + 1) / storm_s * storm_sites)
                )
                for s in share:
                    sm = storm_messages(s, 2, at)
                    published.update(e for e in (event_id(p) for _, p, _ in sm) if e)
                    msgs += sm
                storm_first = storm_first or at
            live_sent += publish(port, msgs)
            if not killed and t >= storm_at + storm_s / 3 and len(procs) > 1:
                live_cpu0 -= procs[1].cpu_s()  # what it used until now stays counted
                procs[1].popen.send_signal(signal.SIGKILL)
                procs[1].popen.wait()
                time.sleep(3)
                procs[1] = worker(files["g2"], 1, log)
                killed = True
            tick += 1
            time.sleep(max(0.0, tick - (time.monotonic() - started)))
        live_cpu_per_1000 = (sum(w.cpu_s() for w in procs) - live_cpu0) / max(1, live_sent) * 1000
        deadline = time.monotonic() + 120
        ids = "','".join(sorted(published))
        while time.monotonic() < deadline:
            (n_found,) = rows(dbs["g2"], f"SELECT count(*) FROM events WHERE event_id IN ('{ids}')")[0]
            if n_found == len(published):
                break
            time.sleep(0.5)
        got = rows(dbs["g2"], f"SELECT event_id, at, received_at FROM events WHERE event_id IN ('{ids}')")
        distinct = {r[0] for r in got}
        lost = len(published - distinct)
        duplicated = len(got) - len(distinct)
        lags = sorted((r[2] - r[1]).total_seconds() for r in got)  # type: ignore[operator]
        p99 = lags[int(len(lags) * 0.99) - 1] if lags else float("nan")
        last = max((r[2] for r in got), default=None)
        drain = (last - storm_first).total_seconds() if last and storm_first else float("nan")  # type: ignore[operator]
        print(
            f"live: {args.sites} sites x {args.devices} devices, {devices_per_s:.0f} telemetry/s "
            f"for {args.live_s:.0f} s; storm: {storm_sites} sites ({len(published)} events) over {storm_s:.0f} s, "
            f"worker 1 SIGKILLed {storm_s / 3:.0f} s in, back 3 s later"
        )
        print(
            f"storm events: {len(distinct)} stored of {len(published)}; lag p50 {lags[len(lags) // 2]:.2f} s, "
            f"p99 {p99:.2f} s; drained {drain:.1f} s after the storm's first event"
        )
        print(
            f"live: {live_sent} messages published; the 2 workers' CPU over the live phase "
            f"{live_cpu_per_1000:.3f} s per 1,000 (idle waits and the restarted worker's start-up included)"
        )
        cpus = ", ".join(f"{p.name} {p.cpu_s():.1f} s" for p in procs)
        print(f"CPU: {cpus}; broker {cpu_of(broker.pid):.1f} s; PostgreSQL (all) {postgres_cpu_s():.1f} s")
        print(
            f"sites={args.sites} msgs_per_s={rates['g1']:.0f} cpu_s_per_1000_msgs={cpu_per_1000['g1']:.3f} "
            f"lag_p99_s={p99:.2f} storm_drain_s={drain:.1f} lost={lost} duplicated={duplicated} "
            f"scaleout_2w={rates['g2'] / rates['g1']:.2f} live_cpu_s_per_1000_msgs={live_cpu_per_1000:.3f}"
        )
    finally:
        for p in procs:
            stop(p)
        broker.kill()
        for db in dbs.values():
            with psycopg.connect(PG, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
