"""Memory of one gateway, fixed and per device, without polling anything.

What it does: writes the scale benchmark's site file (HOSTS wireless hosts on Modbus TCP,
DETECTORS detectors each; bench/scale.py), then in a fresh process reads the resident
memory (VmRSS, and the peak VmHWM, from /proc/self/status) after importing what `alarmgw
run` imports, after loading the site file, and after opening the gateway (store, core,
links, pollers, jobs; nothing connects until it polls). It does this for a small site and a
large one, each in its own process, so that the difference is what the extra devices cost.

    .venv/bin/python bench/memory.py                      # 1 x 50 against 400 x 50 devices
    .venv/bin/python bench/memory.py --hosts 100          # 1 x 50 against 100 x 50

The last line reads: fixed_mb=X per_device_kb=Y rss_mb=Z peak_mb=P devices=N
(fixed: a one-host site after opening; per device: the slope between the two sites;
rss and peak: the large site after opening.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """\
import asyncio, gc, json, re, sys
from pathlib import Path

def status(key):
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

import alarmgw.gateway.cli  # what `alarmgw run` imports
from alarmgw.gateway.app import Gateway
from alarmgw.gateway.site_file import load_site

out = {"imports": status("VmRSS")}
site = load_site(sys.argv[1])
gc.collect()
out["loaded"], out["loaded_peak"] = status("VmRSS"), status("VmHWM")

async def main():
    gw = await Gateway.open(site)
    gc.collect()
    out["open"], out["peak"], out["devices"] = status("VmRSS"), status("VmHWM"), len(gw.core.devices)
    await gw.aclose()

asyncio.run(main())
print(json.dumps(out))
"""


def measure(hosts: int, detectors: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.scale import write_site

    with tempfile.TemporaryDirectory(prefix="alarmgw-memory-") as tmp:
        site, _ = write_site(Path(tmp), hosts, detectors, 5.0)
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(site)], capture_output=True, text=True, timeout=600, cwd=tmp
        )
        if done.returncode != 0:
            raise SystemExit(f"the probe failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, default=400, help="hosts of the large site (default 400)")
    ap.add_argument("--detectors", type=int, default=50, help="detectors per host (default 50)")
    args = ap.parse_args()
    small = measure(1, args.detectors)
    large = measure(args.hosts, args.detectors)
    for name, m in (("small", small), ("large", large)):
        print(
            f"{name}: {m['devices']:.0f} devices; after imports {m['imports']:.1f} MiB, site file loaded"
            f" {m['loaded']:.1f} (peak {m['loaded_peak']:.1f}), gateway open {m['open']:.1f} (peak {m['peak']:.1f})"
        )
    per_device_kb = 1024 * (large["open"] - small["open"]) / (large["devices"] - small["devices"])
    print(
        f"fixed_mb={small['open']:.1f} per_device_kb={per_device_kb:.2f} rss_mb={large['open']:.1f}"
        f" peak_mb={large['peak']:.1f} devices={large['devices']:.0f}"
    )


if __name__ == "__main__":
    main()
