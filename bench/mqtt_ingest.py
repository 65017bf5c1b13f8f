"""MQTT ingest: 5,000 Zigbee2MQTT devices through a real mosquitto into the gateway.

What it does: starts mosquitto on a free loopback port and `alarmgw run` (a separate
process) for a site with one Zigbee2MQTT bridge of DEVICES devices. This process then
publishes each device's state once every PERIOD seconds, evenly spread (QoS 0, as
Zigbee2MQTT does), plus a burst of BURST messages at once every 15 s, for DURATION seconds.
FAULTS random devices have their cover opened (tamper: true) at random moments after a
warm-up; tamper raises on first sight.

- readings per CPU second: readings the gateway counted (its own counters, SIGUSR1) over
  its user + system CPU time (/proc/PID/stat) in the window after the warm-up;
- ingest-to-ticket latency: from just before the tamper message is published to the
  ticket's raised_at stamp (taken when the gateway handles the message; the row is
  committed in the same call). Both clocks are this machine's UTC wall clock.

    .venv/bin/python bench/mqtt_ingest.py [--devices 5000] [--duration 60]

The last line reads: readings_per_cpu_s=X ingest_to_ticket_p99_ms=Y
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import StatsReader, cpu_seconds, peak_rss_mb, percentile  # noqa: E402
from tests.broker import Mosquitto  # noqa: E402


def write_site(folder: Path, port: int, devices: int) -> Path:
    lines = [
        "site: {id: mqtt-bench}",
        "store: {path: bench.db}",
        f"device_broker: {{host: 127.0.0.1, port: {port}}}",
        "zigbee2mqtt:",
        "  - id: zb",
        "    base_topic: zb",
        "    interval_s: 10",
        "    devices:",
    ]
    for i in range(devices):
        kind = "smoke_detector" if i % 2 else "pir_detector"
        lines.append(f"      - {{id: d{i:05d}, friendly_name: dev {i:05d}, kind: {kind}}}")
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def state(i: int, rng: random.Random, tamper: bool = False) -> bytes:
    doc = {
        "battery": rng.randint(60, 100),
        "voltage": rng.randint(2900, 3100),
        "linkquality": rng.randint(60, 200),
        "tamper": tamper,
        "smoke" if i % 2 else "occupancy": False,
    }
    return json.dumps(doc).encode()


async def publish(
    port: int,
    devices: int,
    period: float,
    burst: int,
    duration: float,
    faults: dict[int, float],
    sent_at: dict[int, datetime],
) -> int:
    rng = random.Random(7)
    sent = steady = 0
    async with aiomqtt.Client("127.0.0.1", port, max_queued_outgoing_messages=100_000) as client:
        t0 = time.monotonic()
        next_burst = 15.0
        pending = sorted(faults.items(), key=lambda kv: kv[1])
        rate = devices / period
        i = 0
        while (now := time.monotonic() - t0) < duration:
            for _ in range(50):  # in groups of 50, to keep the timer coarse
                await client.publish(f"zb/dev {i:05d}", state(i, rng), qos=0)
                i = (i + 1) % devices
                sent += 1
                steady += 1
            while pending and pending[0][1] <= now:
                dev, _ = pending.pop(0)
                sent_at[dev] = datetime.now(UTC)
                await client.publish(f"zb/dev {dev:05d}", state(dev, rng, tamper=True), qos=0)
                sent += 1
            if now >= next_burst:
                next_burst += 15.0
                for _ in range(burst):
                    j = rng.randrange(devices)
                    await client.publish(f"zb/dev {j:05d}", state(j, rng), qos=0)
                    sent += 1
            await asyncio.sleep(max(0.0, t0 + steady / rate - time.monotonic()))  # bursts come on top
    return sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--period", type=float, default=10.0, help="seconds between two messages of one device")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--faults", type=int, default=100)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="alarmgw-mqtt-bench-"))
    broker = Mosquitto().start()
    site = write_site(folder, broker.port, args.devices)
    warmup = 10.0
    rng = random.Random(3)
    faults = {d: rng.uniform(warmup, args.duration - 5) for d in rng.sample(range(args.devices), args.faults)}
    print(
        f"{args.devices} Zigbee2MQTT devices, one message each per {args.period:g} s "
        f"({args.devices / args.period:.0f}/s) + {args.burst} at once every 15 s, {args.duration:g} s, "
        f"{args.faults} tamper faults; mosquitto 127.0.0.1:{broker.port}; files in {folder}"
    )
    gw = subprocess.Popen(
        [sys.executable, "-m", "alarmgw.gateway.cli", "run", "-c", str(site)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    sent_at: dict[int, datetime] = {}
    try:
        stats = StatsReader(gw.stderr, folder / "gateway.log")
        time.sleep(3)  # start-up: the gateway loads 5,000 devices and subscribes

        async def run() -> int:
            task = asyncio.create_task(
                publish(broker.port, args.devices, args.period, args.burst, args.duration, faults, sent_at)
            )
            await asyncio.sleep(warmup)
            nonlocal s1, c1
            s1, c1 = stats.ask(gw.pid), cpu_seconds(gw.pid)
            return await task

        s1: dict[int, int] | dict[str, int] = {}
        c1 = 0.0
        sent = asyncio.run(run())
        time.sleep(2)  # let the last messages drain
        s2, c2 = stats.ask(gw.pid), cpu_seconds(gw.pid)
        rss = peak_rss_mb(gw.pid)
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(20)
        broker.stop()

    with sqlite3.connect(folder / "bench.db") as db:
        rows = db.execute("SELECT device_id, fault, raised_at FROM tickets").fetchall()
    lat = []
    for dev, fault, raised in rows:
        n = int(dev[1:])
        if fault == "tamper" and n in sent_at:
            lat.append((datetime.fromisoformat(raised.replace("Z", "+00:00")) - sent_at[n]).total_seconds() * 1000)
    readings = s2["readings"] - s1["readings"]  # type: ignore[index]
    cpu = c2 - c1
    per_cpu = readings / cpu if cpu else float("nan")
    p50 = percentile(lat, 0.5) if lat else float("nan")
    p99 = percentile(lat, 0.99) if lat else float("nan")
    others = [r for r in rows if r[1] != "tamper"]
    print(
        f"published {sent} messages; gateway counted {s2['mqtt_messages']} messages, {s2['mqtt_malformed']} malformed"
    )
    print(
        f"window: {readings} readings on {cpu:.2f} CPU s = {per_cpu:.0f} readings per CPU second; peak RSS {rss:.1f} MB"
    )
    print(
        f"tickets: {len(lat)} tamper of {len(sent_at)} injected, {len(others)} other; ingest-to-ticket latency "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat, default=float('nan')):.1f} ms (target p99 < 200 ms; "
        "stamps are stored to the millisecond, so a figure may be up to 1 ms low)"
    )
    print(f"readings_per_cpu_s={per_cpu:.0f} ingest_to_ticket_p99_ms={p99:.1f}")
    return 0 if len(lat) == len(sent_at) and not others else 1


if __name__ == "__main__":
    raise SystemExit(main())
