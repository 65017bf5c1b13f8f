"""The common model in the middle: drivers produce it, everything downstream consumes it.

Nothing here knows which wire a value came from. Field names of a `Reading` are the
vocabulary shared by profiles, fault rules and outputs (see `FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class DeviceKind(StrEnum):
    HOST = "host"
    REPEATER = "repeater"
    SMOKE_DETECTOR = "smoke_detector"
    PIR_DETECTOR = "pir_detector"
    REMOTE_CONTROL = "remote_control"
    BATTERY = "battery"
    SIREN = "siren"
    PSU = "psu"
    BUS = "bus"  # a serial bus (RS-485/RS-232 port) the gateway reaches hosts through

    @property
    def is_wireless(self) -> bool:
        """Reaches its host over the radio, so it has an RF link to supervise."""
        return self not in (DeviceKind.HOST, DeviceKind.BATTERY, DeviceKind.PSU, DeviceKind.BUS)

    @property
    def is_fire(self) -> bool:
        return self is DeviceKind.SMOKE_DETECTOR


# The field vocabulary of a Reading: name -> unit or meaning. Profiles may only map to these.
FIELDS: Mapping[str, str] = {
    "battery_v": "battery voltage, V",
    "battery_low": "device's own battery-low flag",
    "battery_missing": "battery absent or failed its load test",
    "rssi_dbm": "received signal strength at the host, dBm",
    "battery_pct": "battery charge as the device reports it, percent",
    "link_quality": "link quality indicator (Zigbee LQI), 0-255",
    "link_age_s": "seconds since the host last heard the device on the radio",
    "link_lost": "the gateway cannot reach the device's host at all",
    "tamper": "cover or wall tamper switch open",
    "mains_fail": "AC supply lost",
    "jamming": "RF jamming detected",
    "sensor_fault": "self-test failed or sensor trouble",
    "fire_trouble": "fire trouble reported by a smoke detector",
    "contamination_pct": "smoke chamber contamination, percent of the alarm threshold",
    "alarm": "the device is in alarm (smoke, motion)",
    "rf_errors": "RF frames with a bad check, running count",
    "present": "the slot holds an enrolled device",
    "self_test_age_s": "seconds since the device last ran its self-test (saturates)",
    "bus_error_rate": "share of recent transactions on a serial bus that failed (bad check, garbled, no answer)",
    "slot_refused": "the host refused to read the device's slot (not enrolled, or no such slot)",
    "unmonitored": "no reading of the device has reached the gateway for longer than its window",
}


@dataclass(frozen=True, slots=True)
class Device:
    """One piece of site equipment and where it sits in the topology."""

    id: str
    kind: DeviceKind
    host: str  # id of the alarm host it belongs to (a host names itself)
    parent: str | None  # the repeater or host it reaches the host through; None for a host
    location: str = ""
    model: str = ""
    commissioned_on: date | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """What one poll learned about one device at one moment (UTC)."""

    device_id: str
    at: datetime
    values: Mapping[str, float | int | bool] = field(default_factory=dict)

    def merged_over(self, earlier: Reading) -> Reading:
        """This reading, with what `earlier` said of the fields this one does not carry."""
        return Reading(self.device_id, self.at, {**earlier.values, **self.values})


@dataclass(frozen=True, slots=True)
class Event:
    """Something a device reported unasked, e.g. a tamper that opened or restored."""

    device_id: str
    at: datetime
    field: str  # a name from FIELDS
    active: bool
    detail: str = ""
