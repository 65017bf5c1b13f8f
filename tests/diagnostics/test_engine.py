"""Each fault rule, with its debounce and hysteresis, and topology root cause; no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.engine import Diagnoser, FaultCleared, FaultRaised
from alarmgw.diagnostics.rules import load_fault_table
from alarmgw.model import Device, DeviceKind, Event, Reading

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TABLE = load_fault_table()
SUPERVISION = {"smoke_detector": 200.0, "pir_detector": 3600.0, "repeater": 120.0, "remote_control": None}

DEVICES = [
    Device("host", DeviceKind.HOST, "host", None),
    Device("rep", DeviceKind.REPEATER, "host", "host"),
    Device("smoke", DeviceKind.SMOKE_DETECTOR, "host", "rep"),
    Device("smoke2", DeviceKind.SMOKE_DETECTOR, "host", "rep"),
    Device("pir", DeviceKind.PIR_DETECTOR, "host", "host"),
    Device("remote", DeviceKind.REMOTE_CONTROL, "host", "host"),
]


def diagnoser() -> Diagnoser:
    return Diagnoser(DEVICES, TABLE, SUPERVISION)


def feed(
    d: Diagnoser, device: str, series: Sequence[dict[str, float | bool]], step_s: float = 5.0, start: int = 0
) -> list[tuple[int, str, str]]:
    """Feed one reading per step; return (index, 'raised'|'cleared', fault) for each change."""
    out = []
    for i, values in enumerate(series, start):
        for c in d.observe(Reading(device, T0 + timedelta(seconds=i * step_s), values)):
            out.append((i, "raised" if isinstance(c, FaultRaised) else "cleared", c.fault))
    return out


OK_SMOKE = {
    "battery_v": 3.0,
    "battery_low": False,
    "tamper": False,
    "rssi_dbm": -70,
    "link_age_s": 10,
    "contamination_pct": 20.0,
    "sensor_fault": False,
    "fire_trouble": False,
    "mains_fail": False,
    "jamming": False,
}


def smoke(**changes: float | bool) -> dict[str, float | bool]:
    return {**OK_SMOKE, **changes}


# fault, device, series, expected changes (index, what)
RULES = [
    # low battery: 3 readings under 2.6 V; clears only after 3 readings over 2.75 V (hysteresis)
    (
        "low_battery",
        "smoke",
        [smoke(battery_v=2.5)] * 3 + [smoke(battery_v=2.7)] * 4 + [smoke(battery_v=2.8)] * 3,
        [(2, "raised"), (9, "cleared")],
    ),
    # two low readings, then one good: no fault (debounce resets)
    ("low_battery", "smoke", [smoke(battery_v=2.5)] * 2 + [smoke(battery_v=2.9)] + [smoke(battery_v=2.5)] * 2, []),
    # the device's own flag counts as well as the voltage
    ("low_battery", "smoke", [smoke(battery_low=True)] * 3, [(2, "raised")]),
    # host battery thresholds are the host's own (12 V lead-acid)
    (
        "low_battery",
        "host",
        [{"battery_v": 11.3}] * 3 + [{"battery_v": 12.0}] * 3 + [{"battery_v": 12.5}] * 3,
        [(2, "raised"), (8, "cleared")],
    ),
    # tamper raises at once; clears after 3 shut readings spanning 30 s
    ("tamper", "pir", [{"tamper": True}] + [{"tamper": False}] * 8, [(0, "raised"), (7, "cleared")]),
    # mains loss on the host: 2 readings
    ("mains_loss", "host", [{"mains_fail": True}] * 2 + [{"mains_fail": False}] * 2, [(1, "raised"), (3, "cleared")]),
    # jamming: 2 readings and 30 s of it (EN 50131 practice)
    ("rf_jamming", "host", [{"jamming": True}] * 8 + [{"jamming": False}] * 2, [(6, "raised"), (9, "cleared")]),
    # supervision: smoke detector unheard for more than 200 s, twice
    (
        "comm_loss",
        "smoke",
        [smoke(link_age_s=150), smoke(link_age_s=201), smoke(link_age_s=206), smoke(link_age_s=3)] * 1
        + [smoke(link_age_s=8)],
        [(2, "raised"), (4, "cleared")],
    ),
    # a host the gateway cannot reach at all
    ("comm_loss", "host", [{"link_lost": True}] * 2 + [{"link_lost": False}] * 2, [(1, "raised"), (3, "cleared")]),
    # remote controls are hand-held: a long silence is not a fault
    ("comm_loss", "remote", [{"link_age_s": 60000}] * 5, []),
    ("sensor_fault", "pir", [{"sensor_fault": True}] * 2, [(1, "raised")]),
    ("fire_trouble", "smoke", [smoke(fire_trouble=True)] * 2, [(1, "raised")]),
    # dirty chamber: over 80 %, hysteresis down to 70 %
    (
        "chamber_dirty",
        "smoke",
        [smoke(contamination_pct=85)] * 3 + [smoke(contamination_pct=75)] * 3 + [smoke(contamination_pct=60)] * 3,
        [(2, "raised"), (8, "cleared")],
    ),
    # weak signal: 5 readings under -95 dBm over at least 60 s
    (
        "weak_signal",
        "smoke",
        [smoke(rssi_dbm=-97)] * 13 + [smoke(rssi_dbm=-92)] * 5 + [smoke(rssi_dbm=-85)] * 5,
        [(12, "raised"), (22, "cleared")],
    ),
    ("battery_missing", "host", [{"battery_missing": True}] * 2, [(1, "raised")]),
]


@pytest.mark.parametrize(
    ("fault", "device", "series", "expected"), RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)]
)
def test_rule_debounce_and_hysteresis(
    fault: str, device: str, series: list[dict[str, float | bool]], expected: list[tuple[int, str]]
) -> None:
    changes = feed(diagnoser(), device, series)
    assert [(i, what) for i, what, f in changes if f == fault] == expected
    assert all(f == fault for _, _, f in changes), changes


def test_flapping_tamper_is_one_episode() -> None:
    d = diagnoser()
    flapping = [{"tamper": i % 2 == 0} for i in range(40)]  # open/shut every 5 s for 200 s
    changes = feed(d, "pir", flapping)
    assert changes == [(0, "raised", "tamper")]


def test_detection_time_is_the_first_observation() -> None:
    d = diagnoser()
    changes = [
        c for i in range(3) for c in d.observe(Reading("smoke", T0 + timedelta(seconds=5 * i), smoke(battery_v=2.4)))
    ]
    (raised,) = changes
    assert isinstance(raised, FaultRaised)
    assert raised.detected_at == T0
    assert raised.raised_at == T0 + timedelta(seconds=10)
    assert raised.evidence["battery_v"] == 2.4


def test_readings_without_the_field_leave_the_count_alone() -> None:
    d = diagnoser()
    d.observe(Reading("host", T0, {"mains_fail": True}))
    d.observe(Reading("host", T0 + timedelta(seconds=1), {"battery_v": 13.0}))  # says nothing about mains
    (c,) = d.observe(Reading("host", T0 + timedelta(seconds=2), {"mains_fail": True}))
    assert isinstance(c, FaultRaised)


def test_event_counts_as_a_reading_of_its_field() -> None:
    d = diagnoser()
    (c,) = d.observe_event(Event("pir", T0, "tamper", True))
    assert isinstance(c, FaultRaised) and c.fault == "tamper"


def test_silent_repeater_takes_the_blame_for_its_detectors() -> None:
    d = diagnoser()
    raised: list[FaultRaised] = []
    # The repeater went silent at t=0. The detectors behind it were last heard a bit
    # earlier, so they cross their window at about the same time as the repeater.
    for i in range(60):
        t = 5 * i
        for dev, age in (("smoke", t + 90), ("smoke2", t + 10), ("rep", t)):
            for c in d.observe(Reading(dev, T0 + timedelta(seconds=t), {"link_age_s": age})):
                assert isinstance(c, FaultRaised)
                raised.append(c)
    roots = [c for c in raised if c.root_id is None]
    assert [(c.device_id, c.fault) for c in roots] == [("rep", "comm_loss")]
    assert roots[0].affected == ("smoke", "smoke2")
    assert {c.device_id for c in raised if c.root_id == "rep"} == {"smoke", "smoke2"}


def test_a_detector_lost_behind_a_healthy_repeater_is_its_own_fault() -> None:
    d = diagnoser()
    changes = []
    for i in range(10):
        t = T0 + timedelta(seconds=30 * i)
        d.observe(Reading("rep", t, {"link_age_s": 5}))
        changes += d.observe(Reading("smoke", t, {"link_age_s": 190 + 30 * i}))
    (c,) = changes
    assert isinstance(c, FaultRaised) and c.device_id == "smoke" and c.root_id is None


def test_restored_faults_are_not_raised_again() -> None:
    d = diagnoser()
    d.restore([("pir", "tamper")])
    assert feed(d, "pir", [{"tamper": True}] * 3) == []
    assert feed(d, "pir", [{"tamper": False}] * 8, start=3) == [(9, "cleared", "tamper")]  # first shut at 15 s, + 30 s


def test_unknown_device_is_ignored() -> None:
    assert diagnoser().observe(Reading("nobody", T0, {"tamper": True})) == []


def test_cleared_event_type() -> None:
    d = diagnoser()
    changes = [
        c for i in range(4) for c in d.observe(Reading("host", T0 + timedelta(seconds=i), {"mains_fail": i < 2}))
    ]
    assert isinstance(changes[-1], FaultCleared)


BUS_SITE = [
    Device("rs485", DeviceKind.BUS, "rs485", None),
    Device("unit1", DeviceKind.HOST, "unit1", "rs485"),
]


def bus_site(bus_rates: Sequence[float], unit_lost: int) -> list[FaultRaised]:
    """One observation of the bus's error rate, then one of the unit, per step."""
    d = Diagnoser(BUS_SITE, TABLE, SUPERVISION)
    raised = []
    for i, rate in enumerate(bus_rates):
        t = T0 + timedelta(seconds=5 * i)
        for dev, values in (("rs485", {"bus_error_rate": rate}), ("unit1", {"link_lost": i < unit_lost})):
            raised += [c for c in d.observe(Reading(dev, t, values)) if isinstance(c, FaultRaised)]
    return raised


def test_a_unit_going_quiet_as_its_bus_turns_noisy_waits_for_the_bus() -> None:
    # The line has just started to fail: only a few of its recent transactions show it yet.
    raised = bus_site([0.0, 0.02, 0.03, 0.2, 0.2, 0.2, 0.2], unit_lost=7)
    assert [(c.device_id, c.fault, c.root_id) for c in raised] == [
        ("rs485", "bus_errors", None),
        ("unit1", "comm_loss", "rs485"),
    ]


def test_a_dead_unit_on_a_mildly_noisy_bus_is_raised_after_a_bounded_wait() -> None:
    # The bus is never bad enough for bus_errors: the unit must not wait for it for ever.
    raised = bus_site([0.07] * 12, unit_lost=12)
    assert [(c.device_id, c.fault, c.root_id) for c in raised] == [("unit1", "comm_loss", None)]
    assert raised[0].raised_at == T0 + timedelta(seconds=5 * 5)  # debounce 2, then 4 more


def test_a_dead_unit_on_a_clean_bus_is_raised_at_its_debounce() -> None:
    raised = bus_site([0.0] * 4, unit_lost=4)
    assert [(c.device_id, c.fault, c.root_id, c.raised_at) for c in raised] == [
        ("unit1", "comm_loss", None, T0 + timedelta(seconds=5))
    ]
