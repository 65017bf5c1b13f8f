"""The device models on a manual clock: battery, RSSI, smoke-chamber contamination and RF
check-ins evolving with time, deterministic under a seed; a silent repeater taking its
children with it; every injected fault showing in the state for its window and only then."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

import pytest

from alarmgw.clock import ManualClock
from alarmgw.model import Device, DeviceKind
from alarmgw.simulator.it100_panel import It100Panel
from alarmgw.simulator.models import (
    DETECTOR_BATTERY_V,
    DETECTOR_LOW_V,
    MAX_LINK_AGE_S,
    REPORT_INTERVAL_S,
    SimSite,
)
from alarmgw.simulator.scenario import FaultName, Injection

DAY_S = 86400.0
WEEK_S = 7 * DAY_S

HOST = Device("host-1", DeviceKind.HOST, "host-1", None)
DEVICES = (
    HOST,
    Device("rep-1", DeviceKind.REPEATER, "host-1", "host-1"),
    Device("rep-2", DeviceKind.REPEATER, "host-1", "rep-1"),  # a repeater behind a repeater
    Device("smoke-1", DeviceKind.SMOKE_DETECTOR, "host-1", "rep-1"),
    Device("smoke-2", DeviceKind.SMOKE_DETECTOR, "host-1", "rep-2"),
    Device("smoke-3", DeviceKind.SMOKE_DETECTOR, "host-1", "host-1"),
    Device("pir-1", DeviceKind.PIR_DETECTOR, "host-1", "host-1"),
    Device("remote-1", DeviceKind.REMOTE_CONTROL, "host-1", "host-1"),
)
DETECTORS = ("smoke-1", "smoke-2", "smoke-3", "pir-1", "remote-1")
WIRELESS = ("rep-1", "rep-2", *DETECTORS)
BEHIND_REP_1 = ("rep-2", "smoke-1", "smoke-2")
# Check-ins faster than the defaults, as a scenario's report_interval_s would set them.
INTERVALS = {DeviceKind.REPEATER: 10.0, DeviceKind.SMOKE_DETECTOR: 20.0, DeviceKind.PIR_DETECTOR: 20.0}


class SiteOnClock:
    """A simulated site read the way its servers read it: at the clock's time since start."""

    def __init__(
        self,
        seed: int = 1,
        devices: Sequence[Device] = DEVICES,
        intervals: dict[DeviceKind, float] | None = None,
    ) -> None:
        self.clock = ManualClock()
        self.clock.advance(500.0)  # the simulator starts on a clock that has already run
        self.t0 = self.clock.monotonic()
        self.site = SimSite(devices, seed, INTERVALS if intervals is None else intervals)

    @property
    def t(self) -> float:
        return self.clock.monotonic() - self.t0

    def at(self, t: float) -> None:
        """Move the clock on to `t` seconds after the start (never back)."""
        self.clock.advance(t - self.t)

    def state(self, device_id: str) -> dict[str, float | int | bool]:
        return self.site.values(device_id, self.t)

    def inject(
        self, device: str, fault: FaultName, at: float, duration: float | None = None, flap: float | None = None
    ) -> None:
        self.site.inject(Injection(at=at, device=device, fault=fault, duration=duration, flap=flap), self.t)

    def link_age(self, device_id: str) -> float:
        return float(self.state(device_id)["link_age_s"])


def battery(s: SiteOnClock, device_id: str) -> float:
    return float(s.state(device_id)["battery_v"])


# --- battery --------------------------------------------------------------------------


def test_detector_batteries_discharge_monotonically() -> None:
    s = SiteOnClock()
    readings: dict[str, list[float]] = {d: [] for d in DETECTORS}
    for _ in range(4 * 120):  # every 6 h for 120 days
        for d in DETECTORS:
            readings[d].append(battery(s, d))
        s.clock.advance(6 * 3600)
    for d, volts in readings.items():
        assert all(later < earlier for earlier, later in itertools.pairwise(volts)), d
        assert volts[-1] > 0


def test_mains_charged_batteries_hold_their_voltage() -> None:
    s = SiteOnClock()
    start = {d: battery(s, d) for d in ("host-1", "rep-1", "rep-2")}
    s.at(365 * DAY_S)
    assert {d: battery(s, d) for d in start} == start
    assert 13.3 <= start["host-1"] <= 13.5
    assert 6.3 <= start["rep-1"] <= 6.5


def test_a_fresh_detector_cell_drains_5_to_30_mv_a_week() -> None:
    s = SiteOnClock()
    fresh = {d: battery(s, d) for d in DETECTORS}
    s.at(WEEK_S)
    for d, v0 in fresh.items():
        assert DETECTOR_BATTERY_V[0] <= v0 <= DETECTOR_BATTERY_V[1], d
        assert 0.005 <= v0 - battery(s, d) <= 0.030, d


def test_battery_is_the_same_for_the_same_seed_and_device_whatever_the_site() -> None:
    a = SiteOnClock(seed=7)
    b = SiteOnClock(seed=7, devices=tuple(reversed(DEVICES)))
    c = SiteOnClock(seed=7, devices=(HOST, DEVICES[5]))  # smoke-3 alone with its host
    for _ in range(50):  # other readings in between draw noise; the battery must not care
        b.state("smoke-3")
    for t in (0.0, DAY_S, 30 * DAY_S):
        for s in (a, b, c):
            s.at(t)
        assert battery(a, "smoke-3") == battery(b, "smoke-3") == battery(c, "smoke-3")
        assert [battery(a, d) for d in DETECTORS] == [battery(b, d) for d in DETECTORS]


def test_another_seed_gives_other_batteries() -> None:
    a, b = SiteOnClock(seed=7), SiteOnClock(seed=8)
    assert [battery(a, d) for d in DETECTORS] != [battery(b, d) for d in DETECTORS]


# --- RSSI -----------------------------------------------------------------------------


def test_rssi_noise_stays_around_the_device_mean() -> None:
    s = SiteOnClock(seed=3)
    for d in WIRELESS:
        mean, sd = s.site.devices[d].rssi_mean, s.site.devices[d].rssi_sd
        assert -82.0 <= mean <= -55.0
        readings = []
        for _ in range(2000):
            s.clock.advance(1.0)
            readings.append(s.state(d)["rssi_dbm"])
        assert all(isinstance(r, int) for r in readings), d
        assert all(mean - 6 * sd <= r <= mean + 6 * sd for r in readings), d
        assert len(set(readings)) >= 5, f"{d}: no noise"
        assert statistics.fmean(readings) == pytest.approx(mean, abs=0.5)
        assert statistics.stdev(readings) == pytest.approx(sd, abs=0.5)


def test_rssi_noise_repeats_under_the_same_seed() -> None:
    a, b = SiteOnClock(seed=3), SiteOnClock(seed=3)
    for s in (a, b):
        s.at(10.0)
    assert [a.state("pir-1")["rssi_dbm"] for _ in range(100)] == [b.state("pir-1")["rssi_dbm"] for _ in range(100)]


# --- smoke chamber --------------------------------------------------------------------


def test_smoke_chamber_contamination_drifts_upward() -> None:
    s = SiteOnClock()
    smokes = ("smoke-1", "smoke-2", "smoke-3")
    series: dict[str, list[float]] = {d: [] for d in smokes}
    for _ in range(90):
        for d in smokes:
            series[d].append(float(s.state(d)["contamination_pct"]))
        s.clock.advance(DAY_S)
    for d, pct in series.items():
        assert 3.0 <= pct[0] <= 30.0, d
        assert all(later > earlier for earlier, later in itertools.pairwise(pct)), d
        month = pct[30] - pct[0]
        assert 1.0 <= month <= 4.0, d  # 1-4 % of the alarm threshold a month


def test_a_pir_has_no_smoke_chamber() -> None:
    s = SiteOnClock()
    s.at(90 * DAY_S)
    assert s.state("pir-1")["contamination_pct"] == 0.0


# --- RF check-ins ---------------------------------------------------------------------


@pytest.mark.parametrize(("device_id", "interval"), [("rep-1", 10.0), ("smoke-3", 20.0), ("pir-1", 20.0)])
def test_check_ins_follow_the_configured_report_interval(device_id: str, interval: float) -> None:
    s = SiteOnClock()
    assert s.site.report_interval(device_id) == interval
    heard_at = set()
    while s.t < 10 * interval:
        age = s.link_age(device_id)
        assert 0.0 <= age < interval
        heard_at.add(round(s.t - age, 6))
        s.clock.advance(0.25)
    check_ins = sorted(heard_at - {0.0})  # 0.0: counted as heard at start until the first check-in
    assert len(check_ins) in (9, 10)
    gaps = [b - a for a, b in itertools.pairwise(check_ins)]
    assert gaps == pytest.approx([interval] * len(gaps))


def test_before_its_first_check_in_a_device_counts_from_the_start() -> None:
    s = SiteOnClock()
    phase = s.site.devices["smoke-3"].report_phase_s
    s.clock.advance(phase / 2)
    assert s.link_age("smoke-3") == pytest.approx(phase / 2)


@pytest.mark.parametrize("device_id", ["rep-1", "smoke-1", "pir-1", "remote-1"])
def test_without_configuration_each_kind_checks_in_at_its_default(device_id: str) -> None:
    s = SiteOnClock(intervals={})
    kind = s.site.devices[device_id].device.kind
    assert s.site.report_interval(device_id) == REPORT_INTERVAL_S[kind]


def test_report_intervals_may_be_named_by_the_kind_s_name() -> None:
    site = SimSite(DEVICES, 1, {"smoke_detector": 5.0})  # type: ignore[dict-item]  # as a scenario file says it
    assert site.report_interval("smoke-3") == 5.0
    assert site.report_interval("pir-1") == REPORT_INTERVAL_S[DeviceKind.PIR_DETECTOR]


def test_a_silent_repeater_silences_everything_behind_it() -> None:
    s = SiteOnClock()
    s.inject("rep-1", "silent", at=100.0, duration=100.0)
    s.at(190.0)
    for d in ("rep-1", *BEHIND_REP_1):
        assert s.link_age(d) > 90.0, d  # last heard before the silence began
    for d in ("smoke-3", "pir-1"):
        assert s.link_age(d) < 20.0, d
    s.at(200.0 + 20.0 + 0.1)  # every device has had a check-in since the silence ended
    for d in ("rep-1", *BEHIND_REP_1):
        assert s.link_age(d) < s.site.report_interval(d), d


def test_a_silent_detector_leaves_its_repeater_and_siblings_alone() -> None:
    s = SiteOnClock()
    s.inject("smoke-2", "silent", at=10.0)
    s.at(300.0)
    assert s.link_age("smoke-2") > 280.0
    for d in ("rep-1", "rep-2", "smoke-1"):
        assert s.link_age(d) < s.site.report_interval(d), d


def test_link_age_saturates_at_what_the_register_holds() -> None:
    s = SiteOnClock()
    s.inject("smoke-3", "silent", at=0.0)
    s.at(MAX_LINK_AGE_S + 5000.0)
    assert s.link_age("smoke-3") == MAX_LINK_AGE_S


# --- injected faults ------------------------------------------------------------------


def _flag(field: str) -> Callable[[SiteOnClock, str], bool]:
    return lambda s, d: bool(s.state(d)[field])


def _low_battery(s: SiteOnClock, d: str) -> bool:
    v = s.state(d)
    return bool(v["battery_low"]) and v["battery_v"] == DETECTOR_LOW_V


def _silent(s: SiteOnClock, d: str) -> bool:
    return s.link_age(d) > s.site.report_interval(d)


def _jamming(s: SiteOnClock, d: str) -> bool:
    first, second = s.state(d), s.state(d)
    jammed_errors = (int(second["rf_errors"]) - int(first["rf_errors"])) % 0x10000 >= 20
    assert bool(second["jamming"]) == jammed_errors
    return jammed_errors


def _weak_signal(s: SiteOnClock, d: str) -> bool:
    return float(s.state(d)["rssi_dbm"]) < s.site.devices[d].rssi_mean - 12.5  # the fault takes 25 dB off


def _keybus_fault(s: SiteOnClock, d: str) -> bool:
    # What an IT-100 panel would report: the host's link to its keybus lost (896).
    panel = It100Panel(Path("unused"), 9600, s.site.devices[d].device, {}, s.site, s.clock, s.t0)
    return panel.conditions(s.t)[(d, "link_lost")]


# fault -> the device it is injected on, and whether it shows in that device's state now
FAULT_PROBES: dict[str, tuple[str, Callable[[SiteOnClock, str], bool]]] = {
    "low_battery": ("smoke-3", _low_battery),
    "tamper": ("pir-1", _flag("tamper")),
    "silent": ("smoke-3", _silent),
    "offline": ("host-1", lambda s, d: s.site.offline(d, s.t)),
    "refuse": ("host-1", lambda s, d: s.site.refusing(d, s.t)),
    "mains_loss": ("host-1", _flag("mains_fail")),
    "jamming": ("host-1", _jamming),
    "sensor_fault": ("smoke-3", _flag("sensor_fault")),
    "fire_trouble": ("smoke-3", _flag("fire_trouble")),
    "weak_signal": ("pir-1", _weak_signal),
    "dirty_chamber": ("smoke-3", lambda s, d: s.state(d)["contamination_pct"] == 85.0),
    "battery_missing": ("host-1", _flag("battery_missing")),
    "keybus_fault": ("host-1", _keybus_fault),
    "test_alarm": ("pir-1", _flag("alarm")),
}


def test_every_fault_name_has_a_probe() -> None:
    assert set(FAULT_PROBES) == set(get_args(FaultName))


@pytest.mark.parametrize("fault", list(FAULT_PROBES))
def test_an_injected_fault_shows_for_its_duration_only(fault: FaultName) -> None:
    device_id, shows = FAULT_PROBES[fault]
    s = SiteOnClock()
    at, duration = 100.0, 60.0
    # A lost radio link shows once a check-in is missed, and clears at the next one.
    lag = s.site.report_interval(device_id) if fault == "silent" else 0.0
    s.inject(device_id, fault, at=at, duration=duration)
    moments = [
        (0.0, False),
        (at - 0.1, False),
        (at + lag, True),
        (at + duration / 2, True),
        (at + duration - 0.1, True),
        (at + duration + lag, False),
        (at + duration + 1000.0, False),
    ]
    for t, expected in moments:
        s.at(t)
        assert shows(s, device_id) is expected, f"{fault} at {t} s"


def test_a_fault_on_an_unknown_device_is_refused_naming_it() -> None:
    s = SiteOnClock()
    with pytest.raises(KeyError, match="smoke-99"):
        s.inject("smoke-99", "tamper", at=0.0)


def test_a_self_test_restarts_its_age() -> None:
    s = SiteOnClock()
    s.at(100.0)
    assert s.state("smoke-3")["self_test_age_s"] == MAX_LINK_AGE_S  # never run
    s.site.self_test("smoke-3", s.t)
    s.at(130.0)
    assert s.state("smoke-3")["self_test_age_s"] == pytest.approx(30.0)


# --- flapping -------------------------------------------------------------------------


def test_a_flapping_tamper_opens_and_closes_every_half_period() -> None:
    s = SiteOnClock()
    s.inject("pir-1", "tamper", at=20.0, flap=2.0, duration=24.0)
    open_windows = [(20.0 + 4 * k, 22.0 + 4 * k) for k in range(6)]  # 2 s open, 2 s closed, until 44 s
    seen = []
    while s.t < 60.0:
        expected = any(start <= s.t < end for start, end in open_windows)
        assert s.state("pir-1")["tamper"] is expected, f"at {s.t} s"
        seen.append(expected)
        s.clock.advance(0.5)
    edges = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert edges == 12


def test_a_flap_without_duration_goes_on() -> None:
    s = SiteOnClock()
    s.inject("pir-1", "tamper", at=0.0, flap=5.0)
    s.at(10_000.0)  # an even number of half-periods in: open
    assert s.state("pir-1")["tamper"] is True
    s.at(10_005.0)
    assert s.state("pir-1")["tamper"] is False


def test_a_flapping_silent_repeater_is_heard_in_its_quiet_half_periods() -> None:
    s = SiteOnClock()
    s.inject("rep-1", "silent", at=10.0, flap=20.0, duration=100.0)  # silent 10-30, 50-70, 90-110
    s.at(49.9)  # 20 s into the off half-period: a repeater checks in every 10 s
    for d in ("rep-1", *BEHIND_REP_1):
        assert s.link_age(d) < s.site.report_interval(d), d
