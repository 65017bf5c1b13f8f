"""Fault injection: what goes wrong, where, when, and for how long.

A scenario file is YAML:

    seed: 7                  # optional; the simulator's default otherwise
    report_interval_s: {repeater: 5}   # optional; RF check-in interval per device kind
    faults:
      - {at: 5, device: smoke-03, fault: low_battery}
      - {at: 10, device: pir-02, fault: tamper, duration: 40}
      - {at: 20, device: pir-05, fault: tamper, flap: 3}   # on 3 s, off 3 s, ...

Times are seconds from the simulator's start; no duration means until the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.model import DeviceKind
from alarmgw.yamlfile import load_yaml_model

FaultName = Literal[
    "low_battery",  # battery drops under its threshold and the battery-low flag is set
    "tamper",  # cover or enclosure opened
    "silent",  # stops transmitting; for a repeater, everything behind it goes quiet too
    "offline",  # a host stops answering its Modbus link altogether
    "refuse",  # a host answers every read with an exception (a register map that does not fit)
    "mains_loss",
    "jamming",
    "sensor_fault",
    "fire_trouble",
    "weak_signal",
    "dirty_chamber",
    "battery_missing",
    "keybus_fault",  # an IT-100 loses the panel's keybus (reports 896)
    "test_alarm",  # the device in alarm: an engineer's walk test or test smoke
]


class Injection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    device: str
    fault: FaultName
    duration: float | None = Field(default=None, gt=0)
    flap: float | None = Field(default=None, gt=0)  # on/off half-period, seconds

    def active(self, t: float) -> bool:
        if t < self.at or (self.duration is not None and t >= self.at + self.duration):
            return False
        if self.flap is None:
            return True
        return int((t - self.at) // self.flap) % 2 == 0

    def window(self) -> tuple[float, float]:
        return self.at, self.at + self.duration if self.duration is not None else float("inf")

    def on_since(self, t: float) -> float | None:
        """When the span of being on that holds `t` began (for a flapping fault, its current
        on half-period), or None when the fault is off at `t`."""
        if not self.active(t):
            return None
        if self.flap is None:
            return self.at
        return self.at + (t - self.at) // (2 * self.flap) * 2 * self.flap


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None
    # RF check-in interval per device kind, seconds, replacing the models' defaults
    # (a demo compresses time by checking in every few seconds).
    report_interval_s: dict[DeviceKind, Annotated[float, Field(gt=0)]] = {}
    # Line noise per serial bus: the share of frames (either way) hit by a flipped bit, a
    # dropped byte or garbage in front of them.
    line_noise: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    faults: list[Injection] = []


def load_scenario(path: Path | str) -> Scenario:
    return load_yaml_model(path, Scenario)
