"""Remote diagnosis on labelled histories: how often it names what really happened, and
whether it ever quotes a number no device could show.

What it does: for each of ten scenarios, makes --cases histories (seeded, so every run gives
the same figures) with the simulator's device models (`alarmgw.simulator.models.SimSite`:
each detector's fresh voltage, its 5-30 mV a week discharge, its RSSI level and 2 dB noise,
the host's 13.4 V standby battery), changed the way the scenario says (a cell that fails, a
cold spell, a link that fades, ...). Sampling is one reading every 5, 15 or 60 minutes, as
the gateway's history keeps or an engineer exports it, over 2 to 30 days (wear 7 to 30: a
battery that wore out has been on site for over a year, so the history holds what the
gateway retains; fading 4 to 21; lost_parent 2 hours to 30 days; short_history 1 to 20
hours, as on a gateway installed that day). Battery readings get a daily swing of 5-15 mV
and 2 mV of noise, and are rounded to the register's 1 mV. Each case is labelled with the
cause its scenario is, never with the diagnosis's own thresholds; the history ends when the
gateway would raise the fault (three readings below 2.6 V for low_battery, at the loss for
comm_loss).

A number is absurd if it lies outside what the device can show: a battery slope beyond
1 V a week, an RSSI slope beyond 30 dB a day, a voltage outside 0 to 30 V, an RSSI outside
-130 to 0 dBm, or any trend quoted from a history shorter than a day or with samples in
fewer than five separate hours (counted here from the generated history).

    .venv/bin/python bench/diagnosis_eval.py [--cases 25] [--seed 2026]

The last line reads: diagnosis_accuracy=X absurd_numbers=N cases=M
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alarmgw.diagnostics.diagnosis import Diagnosis, diagnose, load_causes  # noqa: E402
from alarmgw.model import Device, DeviceKind  # noqa: E402
from alarmgw.simulator.models import DeviceSim, SimSite  # noqa: E402

DAY = 86400.0
WEEK = 7 * DAY
LOW_V = 2.6  # the fault table's low_battery threshold for detectors (diagnostics/faults.yaml)
T0 = datetime(2026, 10, 1, tzinfo=UTC)
Values = dict[str, float | int | bool]
History = list[tuple[datetime, Values]]


@dataclass(frozen=True)
class Case:
    scenario: str
    fault: str
    kind: str
    history: History
    parent_lost: bool = False


# What each scenario is, in the words of the cause the diagnosis should name.
EXPECTED = {
    "wear": "battery worn out by normal use",
    "sudden_drop": "battery voltage dropped suddenly (a bad cell or the wrong battery type)",
    "cold_snap": "battery voltage sagging in the cold (it recovered when warmer)",
    "battery_removed": "battery removed or disconnected",
    "short_history": "battery low; not enough history to tell wear from a sudden drop",
    "fading_link": "radio link fading (signal falling before it was lost)",
    "lost_parent": "the repeater or host it reaches the panel through is down",
    "removed_device": "device removed or failed (its signal was steady until it went silent)",
    "noisy_but_healthy": "device removed or failed (its signal was steady until it went silent)",
    "flat_then_silent": "device battery ran flat",
}


def device(seed: int, kind: DeviceKind = DeviceKind.SMOKE_DETECTOR) -> DeviceSim:
    dev = Device("d", kind, "host", None)
    return SimSite([dev], seed=seed).devices["d"]


def model(sim: DeviceSim, t: float) -> Values:
    """The simulator's state of the device at t (s since its battery was fresh)."""
    battery = sim.battery_v0 - sim.drain_v_per_s * t
    v: Values = {"battery_v": battery}
    if sim.device.kind is not DeviceKind.HOST:
        v["rssi_dbm"] = round(sim.rssi_mean + sim.rng.gauss(0.0, sim.rssi_sd))
    return v


def times(rng: random.Random, end: float, days: float) -> list[float]:
    step = rng.choice((300.0, 900.0, 3600.0))
    n = int(days * DAY / step)
    return [end - (n - i) * step for i in range(n + 1)]


def reading(rng: random.Random, t: float, battery: float, swing: float, extra: Values) -> Values:
    daily = swing * math.sin(2 * math.pi * (t % DAY) / DAY)
    return {**extra, "battery_v": round(max(battery + daily + rng.gauss(0.0, 0.002), 0.0), 3)}


def history(samples: list[tuple[float, Values]]) -> History:
    return [(T0 + timedelta(seconds=t - samples[0][0]), v) for t, v in samples]


def worn(rng: random.Random, seed: int, days: tuple[float, float], scenario: str) -> Case:
    sim = device(seed)
    swing = rng.uniform(0.005, 0.015)
    t_low = (sim.battery_v0 - LOW_V) / sim.drain_v_per_s
    keep = rng.uniform(*days) * DAY
    early = 2 * swing / sim.drain_v_per_s  # the daily swing crosses the threshold this much sooner
    out = []
    for t in times(rng, t_low + 3600.0, (keep + early) / DAY):
        v = model(sim, t)
        out.append((t, reading(rng, t, float(v["battery_v"]), swing, v)))
    out = _until_low(out)
    return Case(scenario, "low_battery", "smoke_detector", history([s for s in out if s[0] >= out[-1][0] - keep]))


def _until_low(samples: list[tuple[float, Values]]) -> list[tuple[float, Values]]:
    """Up to the third reading in a row below the threshold: when the fault is raised."""
    run = 0
    for i, (_, v) in enumerate(samples):
        run = run + 1 if float(v["battery_v"]) < LOW_V else 0
        if run == 3:
            return samples[: i + 1]
    return samples


def sudden_drop(rng: random.Random, seed: int) -> Case:
    sim = device(seed)
    swing = rng.uniform(0.005, 0.015)
    t_drop = rng.uniform(0.0, (sim.battery_v0 - 2.75) / sim.drain_v_per_s)
    after = rng.uniform(2.2, 2.55)  # a failed cell, or an alkaline pack where a lithium belongs
    step = rng.choice((300.0, 900.0, 3600.0))
    ts = [t_drop - k * step for k in range(int(rng.uniform(1, 30) * DAY / step), 0, -1)] + [
        t_drop + k * step for k in range(3)
    ]
    out = []
    for t in ts:
        v = model(sim, t)
        level = after if t >= t_drop else float(v["battery_v"])
        out.append((t, reading(rng, t, level, swing, v)))
    return Case("sudden_drop", "low_battery", "smoke_detector", history(out))


def cold_snap(rng: random.Random, seed: int) -> Case:
    """A spell that gets colder each night; a lithium cell sags about 10 mV per °C below
    10 °C under the radio's load and comes back as it warms."""
    for attempt in range(20):
        sim = device(seed * 100 + attempt)
        t_warm = (sim.battery_v0 - rng.uniform(2.70, 2.85)) / sim.drain_v_per_s
        days = rng.uniform(5, 30)
        spell = rng.uniform(2.0, 4.0)  # days before the end the spell starts
        k = rng.uniform(0.008, 0.015)
        cooling = rng.uniform(3.0, 6.0)  # °C colder each day of the spell
        end = t_warm + spell * DAY + 6 * DAY
        out = []
        for t in times(rng, end, days + 6):
            v = model(sim, t)
            into = (t - (end - 6 * DAY - spell * DAY)) / DAY
            mean = 8.0 if into < 0 else 4.0 - cooling * into
            temp = mean + 6.0 * math.sin(2 * math.pi * ((t % DAY) / DAY - 0.375))
            sag = k * max(0.0, 10.0 - temp)
            out.append((t, reading(rng, t, float(v["battery_v"]) - sag, 0.0, v)))
        cut = _until_low(out)
        if len(cut) < len(out):
            return Case("cold_snap", "low_battery", "smoke_detector", history(cut))
    raise AssertionError("no cold spell cold enough")


def battery_removed(rng: random.Random, seed: int) -> Case:
    sim = device(seed, DeviceKind.HOST)
    out = []
    ts = times(rng, 0.0, rng.uniform(2, 30))
    for i, t in enumerate(ts):
        v = model(sim, t)
        volts = 0.0 if i >= len(ts) - 3 else float(v["battery_v"]) + rng.gauss(0.0, 0.02)
        out.append((t, {"battery_v": round(volts, 3)}))
    return Case("battery_removed", "low_battery", "host", history(out))


def link(rng: random.Random, seed: int, scenario: str) -> Case:
    sim = device(seed)
    level = sim.rssi_mean
    days = rng.uniform(2, 30)
    rate = drift = 0.0
    if scenario == "fading_link":  # fades until the receiver cannot hear it (-92 to -98 dBm)
        rate = rng.uniform(2.0, 8.0)
        days = rng.uniform(4, 21)
        fade_days = (level - rng.uniform(-98.0, -92.0)) / rate
    if scenario == "noisy_but_healthy":
        sim.rssi_sd = rng.uniform(4.0, 7.0)
        drift = rng.uniform(-0.3, 0.3)
    if scenario == "lost_parent":
        days = rng.uniform(0.1, 30)
    wear_from = rng.uniform(2.3, 2.55) if scenario == "flat_then_silent" else None
    healthy = (sim.battery_v0 - 2.75) / sim.drain_v_per_s  # still well above the low-battery threshold
    end = (sim.battery_v0 - wear_from) / sim.drain_v_per_s if wear_from else rng.uniform(0, healthy)
    out = []
    for t in times(rng, end, days):
        to_end = (end - t) / DAY
        sim.rssi_mean = level + drift * (days - to_end) - (rate * max(0.0, fade_days - to_end) if rate else 0.0)
        v = model(sim, t)
        if scenario == "noisy_but_healthy" and rng.random() < 0.05:
            v["rssi_dbm"] = int(v["rssi_dbm"]) - 20  # a burst of interference
        out.append((t, reading(rng, t, float(v["battery_v"]), 0.005, v)))
    return Case(scenario, "comm_loss", "smoke_detector", history(out), parent_lost=scenario == "lost_parent")


GENERATORS: dict[str, Callable[[random.Random, int], Case]] = {
    "wear": lambda rng, s: worn(rng, s, (7, 30), "wear"),
    "sudden_drop": sudden_drop,
    "cold_snap": cold_snap,
    "battery_removed": battery_removed,
    "short_history": lambda rng, s: worn(rng, s, (1 / 24, 20 / 24), "short_history"),
    "fading_link": lambda rng, s: link(rng, s, "fading_link"),
    "lost_parent": lambda rng, s: link(rng, s, "lost_parent"),
    "removed_device": lambda rng, s: link(rng, s, "removed_device"),
    "noisy_but_healthy": lambda rng, s: link(rng, s, "noisy_but_healthy"),
    "flat_then_silent": lambda rng, s: link(rng, s, "flat_then_silent"),
}

_NUM = r"(-?\d[\d,]*(?:\.\d+)?)"
TEXT_BOUNDS = [
    (re.compile(_NUM + r" V a week"), -1.0, 1.0),
    (re.compile(_NUM + r" dB a day"), -30.0, 30.0),
    (re.compile(_NUM + r" V\b(?! a week)"), 0.0, 30.0),
    (re.compile(_NUM + r" dBm"), -130.0, 0.0),
]
EVIDENCE_BOUNDS = {
    "battery_slope_v_per_week": (-1.0, 1.0),
    "battery_drop_v_per_week": (-1.0, 1.0),
    "rssi_slope_db_per_day": (-30.0, 30.0),
    "rssi_drop_db_per_day": (-30.0, 30.0),
    "battery_v": (0.0, 30.0),
    "rssi_dbm": (-130.0, 0.0),
}


def absurd(d: Diagnosis, h: History) -> int:
    """How many numbers the diagnosis quotes that no device could show."""
    bad = 0
    for text in (d.fix, *d.findings):
        for pattern, low, high in TEXT_BOUNDS:
            bad += sum(not low <= float(x.replace(",", "")) <= high for x in pattern.findall(text))
        bad += ("a week" in text or "a day" in text) and not long_enough(h)
    for key, (low, high) in EVIDENCE_BOUNDS.items():
        if key in d.evidence:
            x = float(d.evidence[key])
            bad += not (math.isfinite(x) and low <= x <= high)
    bad += any(k.endswith(("_per_week", "_per_day")) for k in d.evidence) and not long_enough(h)
    return int(bad)


def long_enough(h: History) -> bool:
    hours = {int((at - h[0][0]).total_seconds() // 3600) for at, _ in h}
    return (h[-1][0] - h[0][0]).total_seconds() >= DAY and len(hours) >= 5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=25, help="histories per scenario")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    causes = load_causes()
    short = {cause: f"C{i}" for i, cause in enumerate(dict.fromkeys([*EXPECTED.values(), "other"]))}
    confusion: dict[str, Counter[str]] = {s: Counter() for s in GENERATORS}
    sure: dict[str, Counter[str]] = {s: Counter() for s in GENERATORS}
    right = bad = total = 0
    for n, (scenario, make) in enumerate(GENERATORS.items()):
        for i in range(args.cases):
            rng = random.Random(f"{args.seed}:{scenario}:{i}")
            case = make(rng, args.seed * 1000 + n * 100 + i)
            d = diagnose(causes, case.fault, case.history, case.parent_lost, case.kind)
            confusion[scenario][short.get(d.cause, short["other"])] += 1
            sure[scenario][d.confidence] += 1
            right += d.cause == EXPECTED[scenario]
            bad += absurd(d, case.history)
            total += 1
    how = (__doc__ or "").split("\n\n    .venv")[0].strip()
    print(how)
    print()
    print(f"{total} labelled histories, {args.cases} per scenario, seed {args.seed}")
    print("causes named:")
    for cause, code in short.items():
        print(f"  {code}: {cause}")
    codes = list(short.values())
    print(f"{'scenario':<18} {'expected':>8} " + " ".join(f"{c:>4}" for c in codes) + "  right  confidence h/m/l")
    for scenario, row in confusion.items():
        exp = short[EXPECTED[scenario]]
        conf = sure[scenario]
        print(
            f"{scenario:<18} {exp:>8} "
            + " ".join(f"{row[c]:>4}" for c in codes)
            + f"  {row[exp]:>5}  {conf['high']}/{conf['medium']}/{conf['low']}"
        )
    print(f"diagnosis_accuracy={right / total:.3f} absurd_numbers={bad} cases={total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
