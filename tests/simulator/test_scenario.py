"""Scenario files: what loads, what is refused and how the refusal reads, and faults that
switch on and off at their offsets from the simulator's start, moved on a manual clock."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import get_args

import pytest

from alarmgw.clock import ManualClock
from alarmgw.model import Device, DeviceKind
from alarmgw.simulator.it100_panel import It100Panel
from alarmgw.simulator.models import REPORT_INTERVAL_S
from alarmgw.simulator.runner import SerialBusEndpoint, Simulator
from alarmgw.simulator.scenario import FaultName, Injection, Scenario, load_scenario
from alarmgw.yamlfile import ConfigError

VALID = """\
seed: 7
report_interval_s: {repeater: 3, smoke_detector: 5}
line_noise: {rs232-1: 0.05}
faults:
  - {at: 5, device: z-smoke, fault: low_battery}
  - {at: 10, device: z-door, fault: tamper, duration: 40}
  - {at: 20, device: z-hall, fault: tamper, flap: 3}
  - {at: 30, device: panel, fault: keybus_fault, duration: 15}
"""

PANEL = Device("panel", DeviceKind.HOST, "panel", "rs232-1")
ZONES = {
    1: Device("z-door", DeviceKind.PIR_DETECTOR, "panel", "panel"),
    2: Device("z-smoke", DeviceKind.SMOKE_DETECTOR, "panel", "panel"),
    3: Device("z-hall", DeviceKind.PIR_DETECTOR, "panel", "panel"),
}
# The simulator starts on a clock that has already run: offsets count from its start.
CLOCK_AT_START_S = 1000.0


def write(folder: Path, text: str) -> Path:
    path = folder / "scenario.yaml"
    path.write_text(text)
    return path


def simulator(folder: Path, scenario: Scenario, seed: int = 1) -> Simulator:
    """An IT-100 panel with three zones, built but not started (no pty is opened)."""
    clock = ManualClock()
    clock.advance(CLOCK_AT_START_S)
    bus = SerialBusEndpoint("rs232-1", folder / "ttyIT100", 9600, panel=PANEL, zones=ZONES)
    return Simulator([], scenario, seed=seed, clock=clock, buses=[bus])


def move_to(sim: Simulator, t: float) -> None:
    """Move the simulator's clock on to `t` seconds after its start."""
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(t - sim.elapsed_s)


def shows(sim: Simulator, device_id: str, field: str) -> bool:
    """What the panel would report now: a zone's or the panel's trouble."""
    panel = sim.line("rs232-1")
    assert isinstance(panel, It100Panel)
    return panel.conditions(sim.elapsed_s)[(device_id, field)]


# --- loading --------------------------------------------------------------------------


def test_a_valid_file_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID))
    assert scenario.seed == 7
    assert scenario.report_interval_s == {DeviceKind.REPEATER: 3.0, DeviceKind.SMOKE_DETECTOR: 5.0}
    assert scenario.line_noise == {"rs232-1": 0.05}
    assert scenario.faults == [
        Injection(at=5, device="z-smoke", fault="low_battery"),
        Injection(at=10, device="z-door", fault="tamper", duration=40),
        Injection(at=20, device="z-hall", fault="tamper", flap=3),
        Injection(at=30, device="panel", fault="keybus_fault", duration=15),
    ]


def test_every_key_is_optional(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, "faults: []\n")) == Scenario()


def test_the_shipped_demo_scenario_loads() -> None:
    with resources.as_file(resources.files("alarmgw.config") / "scenarios" / "demo.yaml") as path:
        scenario = load_scenario(path)
    assert scenario.seed == 7
    assert {i.fault for i in scenario.faults} <= set(get_args(FaultName))
    assert any(i.flap for i in scenario.faults)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("sede: 7\n", "sede: unknown key"),
        ("faults:\n  - {at: 1, device: d, fault: tamper, durration: 5}\n", "faults[0].durration: unknown key"),
        ("report_interval_s: {smoke: 5}\n", "report_interval_s.smoke"),
    ],
)
def test_an_unknown_key_is_refused_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_scenario(path)
    assert refused.value.path == str(path)
    assert len(refused.value.problems) == 1
    assert refused.value.problems[0].startswith(problem)
    assert problem in str(refused.value)


UNKNOWN_FAULT = """\
faults:
  - {at: 1, device: d, fault: tamper}
  - {at: 2, device: d, fault: explode}
"""


def test_an_unknown_fault_is_refused_naming_where_and_what_is_known(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_scenario(write(tmp_path, UNKNOWN_FAULT))
    [problem] = refused.value.problems
    assert problem.startswith("faults[1].fault: ")
    for name in get_args(FaultName):
        assert f"'{name}'" in problem


def test_an_unknown_fault_is_refused_naming_the_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="explode"):
        load_scenario(write(tmp_path, UNKNOWN_FAULT))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("faults:\n  - {at: -1, device: d, fault: tamper}\n", "faults[0].at: "),
        ("faults:\n  - {at: 1, device: d, fault: tamper, duration: 0}\n", "faults[0].duration: "),
        ("faults:\n  - {at: 1, device: d, fault: tamper, flap: 0}\n", "faults[0].flap: "),
        ("faults:\n  - {at: 1, fault: tamper}\n", "faults[0].device: Field required"),
        ("line_noise: {rs232-1: 1.5}\n", "line_noise.rs232-1: "),
        ("report_interval_s: {repeater: 0}\n", "report_interval_s.repeater: "),
        ("", "file is empty"),
        ("faults: [\n", "not valid YAML at line 2"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_key(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_scenario(write(tmp_path, text))
    assert refused.value.problems[0].startswith(problem)


# --- applied in time ------------------------------------------------------------------

# (seconds from start, device, what the panel reports, expected), in time order
MOMENTS = [
    (0.0, "z-smoke", "battery_low", False),
    (4.9, "z-smoke", "battery_low", False),
    (5.0, "z-smoke", "battery_low", True),
    (9.9, "z-door", "tamper", False),
    (10.0, "z-door", "tamper", True),
    (19.9, "z-hall", "tamper", False),
    (20.0, "z-hall", "tamper", True),  # flapping: 3 s open, 3 s closed
    (22.9, "z-hall", "tamper", True),
    (23.0, "z-hall", "tamper", False),
    (25.9, "z-hall", "tamper", False),
    (26.0, "z-hall", "tamper", True),
    (29.9, "panel", "link_lost", False),
    (30.0, "panel", "link_lost", True),
    (44.9, "panel", "link_lost", True),
    (45.0, "panel", "link_lost", False),
    (49.9, "z-door", "tamper", True),
    (50.0, "z-door", "tamper", False),
    (3600.0, "z-smoke", "battery_low", True),  # no duration: until the end
    (3600.0, "z-door", "tamper", False),
]


def test_faults_switch_on_and_off_at_their_offsets_from_the_start(tmp_path: Path) -> None:
    sim = simulator(tmp_path, load_scenario(write(tmp_path, VALID)))
    assert sim.elapsed_s == 0.0
    for t, device_id, field, expected in MOMENTS:
        move_to(sim, t)
        assert shows(sim, device_id, field) is expected, f"{device_id} {field} at {t} s"


def test_a_fault_injected_at_run_time_counts_from_that_moment(tmp_path: Path) -> None:
    sim = simulator(tmp_path, Scenario())
    move_to(sim, 30.0)
    injection = sim.inject("z-door", "tamper", duration=10.0)
    assert injection.at == 30.0
    assert shows(sim, "z-door", "tamper")
    move_to(sim, 39.9)
    assert shows(sim, "z-door", "tamper")
    move_to(sim, 40.0)
    assert not shows(sim, "z-door", "tamper")


def test_a_flap_injected_at_run_time_starts_open(tmp_path: Path) -> None:
    sim = simulator(tmp_path, Scenario())
    move_to(sim, 7.0)
    sim.inject("z-hall", "tamper", flap=2.0)
    seen = []
    for t in (7.0, 8.0, 9.0, 10.0, 11.0, 12.0):
        move_to(sim, t)
        seen.append(shows(sim, "z-hall", "tamper"))
    assert seen == [True, True, False, False, True, True]


def test_a_fault_on_a_device_the_site_lacks_is_refused_naming_it(tmp_path: Path) -> None:
    scenario = Scenario(faults=[Injection(at=1, device="z-cellar", fault="tamper")])
    with pytest.raises(KeyError, match="z-cellar"):
        simulator(tmp_path, scenario)


def test_the_scenario_s_seed_wins_over_the_simulator_s(tmp_path: Path) -> None:
    assert simulator(tmp_path, Scenario(seed=7), seed=3).site.seed == 7
    assert simulator(tmp_path, Scenario(), seed=3).site.seed == 3


def test_report_intervals_and_line_noise_reach_the_models_and_the_line(tmp_path: Path) -> None:
    sim = simulator(tmp_path, load_scenario(write(tmp_path, VALID)))
    assert sim.site.report_interval("z-smoke") == 5.0
    assert sim.site.report_interval("z-door") == REPORT_INTERVAL_S[DeviceKind.PIR_DETECTOR]  # not named: default
    assert sim.line("rs232-1").line.noise == 0.05
    assert simulator(tmp_path, Scenario()).line("rs232-1").line.noise == 0.0
