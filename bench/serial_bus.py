"""Serial bus throughput: completed polls per second on one paced line, against the wire.

What it does: writes a site file with one Modbus RTU bus (one host, unit 1, with 3
detectors: one block read of 32 registers per poll) and one IT-100 bus, starts
`alarmgw simulate` for it as a separate process (it serves each bus on a pseudo-terminal,
releasing bytes no faster than the baud rate allows at 8N1, 10 bits a byte), and polls the
bus from this process through the gateway's own link and poller for DURATION seconds per
baud rate, back to back, one request in flight.

The wire limit for the same frames is 1 / (bits of request + response / baud + gaps):
Modbus RTU needs 3.5 character times of silence before the response and again before the
next request (1.75 ms each above 19200 baud); the IT-100's ASCII frames end in CR LF and
need no gap. The ratio is measured / limit.

    .venv/bin/python bench/serial_bus.py [--duration 10]

The last line reads: wire_ratio_9600=X wire_ratio_115200=Y
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarmgw.clock import SystemClock  # noqa: E402
from alarmgw.drivers.it100 import Message  # noqa: E402
from alarmgw.drivers.it100_link import It100Link  # noqa: E402
from alarmgw.drivers.modbus_client import HostPoller, rtu_link  # noqa: E402
from alarmgw.drivers.modbus_map import load_profile  # noqa: E402
from alarmgw.drivers.modbus_rtu import ReadRequest, ReadResponse, silence_s  # noqa: E402
from alarmgw.model import Device, DeviceKind  # noqa: E402

BITS = 10
SLOTS = 4  # host + 3 detectors
REGISTERS = 8 * SLOTS

SITE = """\
site: {{id: serial-bench}}
store: {{path: bench.db}}
buses:
  - {{id: rtu, port: {folder}/ttyRTU, protocol: modbus_rtu, baud: {baud}}}
  - {{id: it100, port: {folder}/ttyIT100, protocol: it100, baud: {baud}}}
hosts:
  - id: wh
    model: sim-wh100
    rtu: {{bus: rtu, unit: 1}}
    devices:
      - {{id: d1, kind: smoke_detector, slot: 1}}
      - {{id: d2, kind: smoke_detector, slot: 2}}
      - {{id: d3, kind: pir_detector, slot: 3}}
  - id: panel
    it100: {{bus: it100}}
    devices:
      - {{id: z1, kind: pir_detector, zone: 1}}
"""


def rtu_limit(baud: int) -> float:
    request = len(ReadRequest(1, 3, 0, REGISTERS).encode())
    response = len(ReadResponse(1, 3, (0,) * REGISTERS).encode())
    return 1 / ((request + response) * BITS / baud + 2 * silence_s(baud))


def it100_limit(baud: int) -> float:
    frames = len(Message("000").encode()) + len(Message("500", "000").encode())
    return 1 / (frames * BITS / baud)


async def measure(folder: Path, baud: int, duration: float) -> tuple[float, float]:
    clock = SystemClock()
    profile = load_profile(ROOT / "config/profiles/sim-wh100.yaml")
    host = Device("wh", DeviceKind.HOST, "wh", "rtu")
    devs = [(host, 0)] + [(Device(f"d{i}", DeviceKind.SMOKE_DETECTOR, "wh", "wh"), i) for i in range(1, SLOTS)]
    link = rtu_link("rtu", str(folder / "ttyRTU"), baud, clock, timeout_s=1.0, retries=0)
    poller = HostPoller(host, link, profile, devs, clock, unit=1)
    plan = poller.plan([d.id for d, _ in devs])
    assert len(plan) == 1 and plan[0].count == REGISTERS
    await poller.poll(plan)  # open the port
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < duration:
        readings = await poller.poll(plan)
        assert len(readings) == SLOTS, readings  # a failed poll is one link_lost reading
        n += 1
    rtu_rate = n / (time.monotonic() - t0)
    await link.close()

    it = It100Link("it100", str(folder / "ttyIT100"), baud, clock, timeout_s=1.0, retries=0)
    await it.command("000")
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < duration:
        await it.command("000")
        n += 1
    it_rate = n / (time.monotonic() - t0)
    await it.close()
    return rtu_rate, it_rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per protocol and baud rate")
    args = ap.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ratios = {}
    print(
        f"one host, {SLOTS} slots = one read of {REGISTERS} registers per Modbus poll; IT-100 poll 000 -> 500; "
        f"{args.duration:g} s each; simulator in its own process"
    )
    for baud in (9600, 115200):
        folder = Path(tempfile.mkdtemp(prefix="alarmgw-serial-"))
        site = folder / "site.yaml"
        site.write_text(SITE.format(folder=folder, baud=baud))
        sim = subprocess.Popen(
            [sys.executable, "-m", "alarmgw.gateway.cli", "simulate", "-c", str(site)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert sim.stdout is not None
            assert json.loads(sim.stdout.readline())["event"] == "ready"
            rtu_rate, it_rate = asyncio.run(measure(folder, baud, args.duration))
        finally:
            sim.terminate()
            sim.wait(10)
        r_lim, i_lim = rtu_limit(baud), it100_limit(baud)
        ratios[baud] = rtu_rate / r_lim
        print(
            f"{baud:>6} baud  Modbus RTU: {rtu_rate:7.1f} polls/s, wire limit {r_lim:7.1f}/s, "
            f"ratio {rtu_rate / r_lim:.3f}"
            f"   IT-100: {it_rate:7.1f} polls/s, wire limit {i_lim:7.1f}/s, ratio {it_rate / i_lim:.3f}"
        )
    print(f"wire_ratio_9600={ratios[9600]:.3f} wire_ratio_115200={ratios[115200]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
