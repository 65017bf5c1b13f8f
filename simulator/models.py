"""Device models whose state evolves with time, deterministic under a seed.

State is computed lazily for the instant it is asked about (`values(device_id, t)`, t in
seconds since the simulator started): battery discharge, RSSI with noise, smoke-chamber
contamination, RF check-ins on a schedule, and whatever the injected faults change.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alarmgw.model import Device, DeviceKind

from .scenario import Injection

# Largest link age the register can carry (u16 seconds).
MAX_LINK_AGE_S = 0xFFFF

# RF check-in interval per kind, seconds: how often a healthy device is heard.
REPORT_INTERVAL_S = {
    DeviceKind.REPEATER: 30.0,
    DeviceKind.SMOKE_DETECTOR: 60.0,
    DeviceKind.PIR_DETECTOR: 60.0,
    DeviceKind.SIREN: 60.0,
    DeviceKind.REMOTE_CONTROL: 6 * 3600.0,  # hand-held: heard only when pressed
}

NOMINAL_BATTERY_V = {DeviceKind.HOST: 13.4, DeviceKind.REPEATER: 6.4}
LOW_BATTERY_V = {DeviceKind.HOST: 11.2, DeviceKind.REPEATER: 5.4}
DETECTOR_BATTERY_V = (2.95, 3.15)  # fresh CR123A-class lithium cells
DETECTOR_LOW_V = 2.45


@dataclass
class DeviceSim:
    device: Device
    rng: random.Random
    battery_v0: float
    drain_v_per_s: float
    rssi_mean: float
    rssi_sd: float
    report_interval_s: float
    report_phase_s: float
    contamination0: float
    contamination_per_s: float
    rf_errors: int = 0
    injections: list[Injection] = field(default_factory=list)


class SimSite:
    """All simulated devices of a site and the faults injected into them."""

    def __init__(
        self, devices: Iterable[Device], seed: int = 1, report_interval_s: Mapping[DeviceKind, float] | None = None
    ) -> None:
        self.seed = seed
        self._intervals = {k: v for k, v in REPORT_INTERVAL_S.items()}
        for kind, seconds in (report_interval_s or {}).items():
            self._intervals[DeviceKind(kind)] = seconds
        self.devices: dict[str, DeviceSim] = {}
        self._ancestors: dict[str, list[str]] = {}
        devs = list(devices)
        by_id = {d.id: d for d in devs}
        for d in devs:
            self.devices[d.id] = self._model(d)
            chain, p = [], d.parent
            while p is not None and p in by_id and p not in chain:
                chain.append(p)
                p = by_id[p].parent
            self._ancestors[d.id] = chain
        self.log: list[tuple[float, Injection]] = []
        self.self_tests: dict[str, float] = {}  # device -> when it last ran its self-test

    def _model(self, d: Device) -> DeviceSim:
        # A per-device stream: the same seed gives the same site whatever the device order.
        rng = random.Random(zlib.crc32(f"{self.seed}:{d.id}".encode()))
        interval = self._intervals.get(d.kind, 60.0)
        if d.kind in NOMINAL_BATTERY_V:
            v0 = NOMINAL_BATTERY_V[d.kind] + rng.uniform(-0.1, 0.1)
            drain = 0.0
        else:
            v0 = rng.uniform(*DETECTOR_BATTERY_V)
            drain = rng.uniform(0.005, 0.03) / (7 * 86400)  # 5-30 mV a week
        return DeviceSim(
            device=d,
            rng=rng,
            battery_v0=v0,
            drain_v_per_s=drain,
            rssi_mean=rng.uniform(-82.0, -55.0),
            rssi_sd=2.0,
            report_interval_s=interval,
            report_phase_s=rng.uniform(0.0, interval),
            contamination0=rng.uniform(3.0, 30.0) if d.kind is DeviceKind.SMOKE_DETECTOR else 0.0,
            contamination_per_s=rng.uniform(1.0, 4.0) / (30 * 86400) if d.kind is DeviceKind.SMOKE_DETECTOR else 0.0,
        )

    def inject(self, injection: Injection, now_s: float) -> None:
        """Add a fault; raises KeyError naming an unknown device."""
        if injection.device not in self.devices:
            raise KeyError(f"no simulated device {injection.device!r}")
        self.devices[injection.device].injections.append(injection)
        self.log.append((now_s, injection))

    def inject_all(self, injections: Sequence[Injection], now_s: float = 0.0) -> None:
        for i in injections:
            self.inject(i, now_s)

    def active(self, device_id: str, fault: str, t: float) -> bool:
        return any(i.fault == fault and i.active(t) for i in self.devices[device_id].injections)

    def offline(self, device_id: str, t: float) -> bool:
        return self.active(device_id, "offline", t)

    def refusing(self, device_id: str, t: float) -> bool:
        return self.active(device_id, "refuse", t)

    def _silences(self, device_id: str) -> list[Injection]:
        """The silent faults of the device and of those it reaches the host through."""
        return [
            i
            for d in (device_id, *self._ancestors[device_id])
            for i in self.devices[d].injections
            if i.fault == "silent"
        ]

    def link_age(self, sim: DeviceSim, t: float) -> float:
        """Seconds since the last scheduled check-in that was not lost to a silence."""
        interval, phase = sim.report_interval_s, sim.report_phase_s
        if t < phase:
            return min(t, MAX_LINK_AGE_S)
        k = math.floor((t - phase) / interval)
        silences = self._silences(sim.device.id)
        while k >= 0:
            tick = phase + k * interval
            if t - tick > MAX_LINK_AGE_S:
                return MAX_LINK_AGE_S
            blocking = [s for s in (i.on_since(tick) for i in silences) if s is not None]
            if not blocking:
                return t - tick
            k = math.floor((min(blocking) - phase) / interval)
            if phase + k * interval >= min(blocking):
                k -= 1
        return min(t, MAX_LINK_AGE_S)

    def self_test(self, device_id: str, t: float) -> None:
        """Run the device's self-test now: its result is the sensor_fault it reports."""
        if device_id not in self.devices:
            raise KeyError(f"no simulated device {device_id!r}")
        self.self_tests[device_id] = t

    def report_interval(self, device_id: str) -> float:
        return self.devices[device_id].report_interval_s

    def values(self, device_id: str, t: float) -> dict[str, float | int | bool]:
        """The device's state at `t` in the field vocabulary of the common model."""
        sim = self.devices[device_id]
        kind = sim.device.kind
        on = {i.fault for i in sim.injections if i.active(t)}
        battery = sim.battery_v0 - sim.drain_v_per_s * t
        if "low_battery" in on:
            battery = LOW_BATTERY_V.get(kind, DETECTOR_LOW_V)
        v: dict[str, float | int | bool] = {
            "present": True,
            "battery_v": max(battery, 0.0),
            "battery_low": "low_battery" in on,
            "tamper": "tamper" in on,
            "mains_fail": "mains_loss" in on,
            "jamming": "jamming" in on,
            "battery_missing": "battery_missing" in on,
        }
        if kind is DeviceKind.HOST:
            # The host counts RF frames that failed their check: a trickle, more when jammed.
            sim.rf_errors = (sim.rf_errors + sim.rng.choice((0, 0, 0, 1)) + (20 if "jamming" in on else 0)) & 0xFFFF
            v["rf_errors"] = sim.rf_errors
            return v
        rssi = sim.rssi_mean - (25.0 if "weak_signal" in on else 0.0)
        contamination = sim.contamination0 + sim.contamination_per_s * t
        v.update(
            rssi_dbm=round(rssi + sim.rng.gauss(0.0, sim.rssi_sd)),
            link_age_s=self.link_age(sim, t),
            sensor_fault="sensor_fault" in on,
            fire_trouble="fire_trouble" in on,
            contamination_pct=85.0 if "dirty_chamber" in on else contamination,
            alarm="test_alarm" in on,
            self_test_age_s=min(t - self.self_tests[device_id], MAX_LINK_AGE_S)
            if device_id in self.self_tests
            else MAX_LINK_AGE_S,
        )
        return v
