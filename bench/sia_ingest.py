"""SIA DC-09 ingest: HUBS simulated IP hubs reporting to one receiver in another process.

What it does: starts the gateway's DC-09 receiver (drivers/sia_dc09.py) in a child process
(`--serve`), on a free loopback port over TCP and UDP, for HUBS hubs with 8 zones each;
what it hands on goes through the gateway's real fault diagnoser, and every hub's latch and
link verdict is judged every JUDGE seconds, 50 hubs at a time (`judge_slices`), as the
gateway's job would. This process plays the hubs (simulator/sia_hub.py), each from a
loopback address of its own (127.1.x.y, so the receiver's per-address limits see one hub
each): half over TCP (one connection each, kept), half over UDP; half AES-encrypted (128
and 256 bits), half plain. Together they send RATE messages a second, evenly spread: link
tests (NULL) and troubles and restores (tamper, low battery, mains, jamming) in SIA-DCS,
one hub in four in Contact ID (ADM-CID). Each message waits for its answer (one message in
flight per hub, as a hub does).

- messages per CPU second: messages acknowledged in the window after a warm-up, over the
  receiver process's user + system CPU time in that window (/proc/PID/stat);
- ACK latency: from the frame's write to its ACK being read, at the hub (this process).

    .venv/bin/python bench/sia_ingest.py [--hubs 1000] [--rate 500] [--duration 30]

The last line reads: dc09_msgs_per_cpu_s=X ack_p99_ms=Y
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarmgw.clock import SystemClock  # noqa: E402
from alarmgw.diagnostics.engine import Diagnoser  # noqa: E402
from alarmgw.diagnostics.rules import load_fault_table  # noqa: E402
from alarmgw.drivers.sia_dc09 import Hub, SiaReceiver  # noqa: E402
from alarmgw.drivers.sia_map import CodeMap  # noqa: E402
from alarmgw.model import Device, DeviceKind, Reading  # noqa: E402
from alarmgw.simulator.sia_hub import Answer, SiaHub  # noqa: E402
from bench.scale import cpu_seconds, percentile  # noqa: E402

ZONES = 8
SUPERVISION: dict[str, float | None] = {"smoke_detector": 200.0, "pir_detector": 3600.0, "host": None}
CLIENT_LAG: list[float] = []  # the hubs' own loop lag, ms
EVENTS = [("tamper", "pir"), ("low_battery", "smoke"), ("mains_loss", "hub"), ("rf_jamming", "hub")]


def plan(i: int) -> tuple[str, str | None, Literal["tcp", "udp"], Literal["sia", "cid"]]:
    """Hub i's account, key, transport and format: the same in both processes."""
    account = f"{0x100000 + i:X}"
    key = None if i % 2 == 0 else (f"{i:016X}" if i % 4 == 1 else f"{i:032X}")
    protocol: Literal["tcp", "udp"] = "tcp" if (i // 2) % 2 == 0 else "udp"
    fmt: Literal["sia", "cid"] = "cid" if i % 4 == 3 else "sia"
    return account, key, protocol, fmt


def devices_of(i: int) -> tuple[Device, dict[int, Device]]:
    hub_id = f"hub{i:04d}"
    hub = Device(hub_id, DeviceKind.HOST, hub_id, None)
    zones = {
        z: Device(
            f"{hub_id}.z{z}",
            DeviceKind.PIR_DETECTOR if z % 2 else DeviceKind.SMOKE_DETECTOR,
            hub_id,
            hub_id,
        )
        for z in range(1, ZONES + 1)
    }
    return hub, zones


def source(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


async def loop_lag(lags: list[float], after: float, every: float = 0.01) -> None:
    """How late the event loop wakes a sleeper, ms, from monotonic `after` on: what any
    answer waits on top of its own work."""
    while True:
        t = time.monotonic()
        await asyncio.sleep(every)
        if t >= after:
            lags.append((time.monotonic() - t - every) * 1000)


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the receiver's process -------------------------------------------------------------------


async def serve(hubs: int, judge_s: float, warmup: float) -> None:
    table = load_fault_table()
    clock = SystemClock()
    configs, devices = [], []
    for i in range(hubs):
        account, key, _, _ = plan(i)
        hub, zones = devices_of(i)
        devices += [hub, *zones.values()]
        configs.append(Hub(hub.id, account, key, 60.0, 30.0, {z: d.id for z, d in zones.items()}))
    diagnoser = Diagnoser(devices, table, SUPERVISION)
    readings = changes = 0

    def take(rs: list[Reading] | tuple[Reading, ...] | object) -> None:
        nonlocal readings, changes
        assert isinstance(rs, list)
        for r in rs:
            changes += len(diagnoser.observe(r))
        readings += len(rs)

    rx = SiaReceiver(configs, CodeMap(table), clock, take, bind="127.0.0.1", stall_s=3 * judge_s or float("inf"))
    await rx.start()
    print(json.dumps({"port": rx.tcp_port}), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def judge() -> None:  # as the gateway's job does: a slice of hubs, then the answers waiting
        while judge_s > 0:
            await asyncio.sleep(judge_s)
            for part in rx.judge_slices():
                take(part)
                await asyncio.sleep(0)

    lags: list[float] = []
    jobs = [asyncio.create_task(judge()), asyncio.create_task(loop_lag(lags, time.monotonic() + warmup))]
    await stop.wait()
    for j in jobs:
        j.cancel()
    await rx.stop()
    lag = {"loop_lag_p99_ms": round(percentile(lags, 0.99), 1), "loop_lag_max_ms": round(max(lags, default=0), 1)}
    print(json.dumps({**rx.counts, "readings": readings, "fault_changes": changes, **lag}), flush=True)


# --- the hubs ----------------------------------------------------------------------------------


async def play(port: int, hubs: int, rate: float, duration: float, warmup: float) -> tuple[list[Answer], int, float]:
    """Run the hubs; the answers in the window after the warm-up, all sent, the window's length."""
    table = load_fault_table()
    clock = SystemClock()
    sims = []
    for i in range(hubs):
        account, key, protocol, fmt = plan(i)
        hub, zones = devices_of(i)
        sims.append(
            SiaHub(
                hub,
                zones,
                table,
                clock,
                account=account,
                address=("127.0.0.1", port),
                key=key,
                protocol=protocol,
                format=fmt,
                source=source(i),
                timeout_s=2.0,
                retries=2,
            )
        )
    period = hubs / rate  # seconds between two messages of one hub
    rng = random.Random(11)
    t0 = time.monotonic()
    window: list[Answer] = []
    sent = 0

    async def run(i: int, sim: SiaHub) -> None:
        nonlocal sent
        next_at = t0 + period * i / hubs
        on: dict[tuple[str, str], bool] = {}
        while next_at < t0 + duration:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
            if rng.random() < 0.5:
                answer = await sim.send_link_test()
            else:
                fault, where = rng.choice(EVENTS)
                device = (
                    sim.hub.id
                    if where == "hub"
                    else f"{sim.hub.id}.z{rng.choice((1, 3) if where == 'pir' else (2, 4))}"
                )
                state = not on.get((device, fault), False)
                on[(device, fault)] = state
                answer = await sim.send_event(device, fault, state)
            sent += 1
            if time.monotonic() - t0 >= warmup:
                window.append(answer)

    lags: list[float] = []
    lagging = asyncio.create_task(loop_lag(lags, t0 + warmup))
    try:
        await asyncio.gather(*(run(i, s) for i, s in enumerate(sims)))
    finally:
        lagging.cancel()
        await asyncio.gather(*(s.close() for s in sims))
    CLIENT_LAG.extend(lags)
    return window, sent, duration - warmup


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hubs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=500.0, help="messages a second, all hubs together")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of sending (3 to 300)")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--judge", type=float, default=5.0, help="seconds between two judgements of every hub (0: none)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.duration = min(300.0, max(3.0, args.duration))
    args.warmup = min(args.warmup, args.duration / 3)
    raise_fd_limit()
    logging.basicConfig(level=logging.ERROR)
    if args.serve:
        asyncio.run(serve(args.hubs, args.judge, args.warmup))
        return 0
    serve_args = [sys.executable, __file__, "--serve", "--hubs", str(args.hubs), "--judge", str(args.judge)]
    serve_args += ["--warmup", str(args.warmup)]
    child = subprocess.Popen(
        serve_args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    port = json.loads(child.stdout.readline())["port"]
    print(
        f"{args.hubs} hubs x {ZONES} zones, {args.rate:g} messages/s in all ({args.hubs / args.rate:g} s apart per "
        f"hub), {args.duration:g} s ({args.warmup:g} s warm-up); half TCP, half UDP; half AES (128/256), half plain; "
        f"1 in 4 Contact ID; receiver pid {child.pid} on 127.0.0.1:{port}, "
        + (f"judging every {args.judge:g} s" if args.judge > 0 else "no judgements")
    )
    c1 = 0.0

    async def run() -> tuple[list[Answer], int, float]:
        nonlocal c1
        task = asyncio.create_task(play(port, args.hubs, args.rate, args.duration, args.warmup))
        await asyncio.sleep(args.warmup)
        c1 = cpu_seconds(child.pid)
        return await task

    try:
        window, sent, span = asyncio.run(run())
        c2 = cpu_seconds(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        tail, _ = child.communicate(timeout=30)
    counts = json.loads(tail.strip().splitlines()[-1]) if tail.strip() else {}
    acked = [a for a in window if a.kind == "ACK"]
    lat = [a.latency_s * 1000 for a in acked]
    cpu = c2 - c1
    per_cpu = len(acked) / cpu if cpu > 0 else float("nan")
    p50, p99 = (percentile(lat, 0.5), percentile(lat, 0.99)) if lat else (float("nan"), float("nan"))
    again = sum(a.tries > 1 for a in window)
    print(
        f"sent {sent} messages; in the {span:g} s window {len(window)}, {len(acked)} acknowledged "
        f"({len(acked) / span:.0f}/s), {again} needed a second try; receiver counted {counts}"
    )
    print(
        f"receiver CPU in the window: {cpu:.2f} s ({cpu / span * 100:.0f}% of a core) = {per_cpu:.0f} messages per CPU "
        f"second; ACK latency p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat, default=float('nan')):.1f} ms "
        "(target p99 < 50 ms)"
    )
    if CLIENT_LAG:
        rx_lag = f"receiver p99 {counts.get('loop_lag_p99_ms')} ms, max {counts.get('loop_lag_max_ms')} ms"
        hub_lag = f"hubs' process p99 {percentile(CLIENT_LAG, 0.99):.1f} ms, max {max(CLIENT_LAG):.1f} ms"
        print(f"event loop lag (a 10 ms sleeper woken late, in the window): {rx_lag}; {hub_lag}")
    print(f"dc09_msgs_per_cpu_s={per_cpu:.0f} ack_p99_ms={p99:.1f}")
    return 0 if len(acked) == len(window) else 1


if __name__ == "__main__":
    raise SystemExit(main())
