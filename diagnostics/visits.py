"""A maintenance visit that proves itself: what the gateway saw of every device while the
engineer was on site, and each device's verdict (tested, untested or failed). Pure: readings
and faults in, findings and a report out.

While a visit runs, a cover opened or a battery taken out is the engineer's work, not a
fault: it is a finding of the visit, not a ticket (every other fault still tickets). A
device counts as tested when it was heard and showed the visit touched it: a test alarm, a
self-test run during the visit, or its cover opened and closed again. It failed when its
self-test failed, when a fault the visit cannot cause was raised on it during the visit, or
when it still has one at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from alarmgw.clock import iso, parse_iso
from alarmgw.model import Reading

# Faults an engineer at work causes: no ticket while a visit runs.
VISIT_FAULTS = frozenset({"tamper", "battery_missing"})
# Findings of a fault raised and cleared, by fault.
_COVER = "tamper"


class Verdict(StrEnum):
    TESTED = "tested"
    UNTESTED = "untested"
    FAILED = "failed"


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(slots=True)
class Findings:
    """What the gateway saw of one device during the visit."""

    readings: int = 0
    first_heard: datetime | None = None
    last_heard: datetime | None = None
    battery_v: float | None = None  # the last seen
    battery_v_min: float | None = None
    battery_pct: float | None = None
    rssi_dbm: float | None = None  # the last seen
    rssi_dbm_min: float | None = None
    self_test_at: datetime | None = None
    self_test_passed: bool | None = None
    cover_opened_at: datetime | None = None
    cover_closed_at: datetime | None = None
    test_alarm_at: datetime | None = None
    battery_out_at: datetime | None = None
    faults: list[str] = field(default_factory=list)  # raised during the visit, not of its making

    def observe(self, r: Reading, started_at: datetime) -> None:
        """One reading of the device, taken during the visit."""
        v = r.values
        if not v or v.get("link_lost") is True or v.get("unmonitored") is True:
            return
        self.readings += 1
        self.first_heard = self.first_heard or r.at
        self.last_heard = r.at
        if (b := _num(v.get("battery_v"))) is not None:
            self.battery_v = b
            self.battery_v_min = b if self.battery_v_min is None else min(self.battery_v_min, b)
        if (p := _num(v.get("battery_pct"))) is not None:
            self.battery_pct = p
        if (s := _num(v.get("rssi_dbm"))) is not None:
            self.rssi_dbm = s
            self.rssi_dbm_min = s if self.rssi_dbm_min is None else min(self.rssi_dbm_min, s)
        if v.get("alarm") is True and self.test_alarm_at is None:
            self.test_alarm_at = r.at
        age = _num(v.get("self_test_age_s"))
        if age is not None:
            ran_at = r.at - timedelta(seconds=age)
            if ran_at >= started_at:  # a self-test ran during the visit (its button, or a command)
                self.self_test(ran_at, v.get("sensor_fault") is not True)

    def self_test(self, at: datetime, passed: bool) -> None:
        """A self-test's result; a failure stays a failure for the visit."""
        self.self_test_at = at
        self.self_test_passed = passed and self.self_test_passed is not False

    def raised(self, fault: str, at: datetime) -> None:
        if fault == _COVER:
            self.cover_opened_at = self.cover_opened_at or at
        elif fault == "battery_missing":
            self.battery_out_at = self.battery_out_at or at
        elif fault not in self.faults:
            self.faults.append(fault)

    def cleared(self, fault: str, at: datetime) -> None:
        if fault == _COVER and self.cover_opened_at is not None:
            self.cover_closed_at = at

    def to_json(self) -> dict[str, Any]:
        return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Findings:
        known = cls.__dataclass_fields__
        kw: dict[str, Any] = {}
        for k, v in doc.items():
            if k in known and v is not None:
                kw[k] = parse_iso(v) if k.endswith(("_at", "_heard")) else v
        return cls(**kw)


def verdict(f: Findings, still_faulty: Sequence[str] = ()) -> tuple[Verdict, list[str]]:
    """The device's verdict and the reasons for it, in words."""
    failed = []
    if f.self_test_passed is False:
        failed.append("self-test failed")
    failed += [f"{fault} during the visit" for fault in f.faults]
    if f.cover_opened_at is not None and f.cover_closed_at is None:
        failed.append("cover left open")
    failed += [f"{fault} at the end" for fault in still_faulty if fault not in f.faults and fault != _COVER]
    if failed:
        return Verdict.FAILED, failed
    if not f.readings:
        return Verdict.UNTESTED, ["not heard during the visit"]
    proof = []
    if f.test_alarm_at is not None:
        proof.append("test alarm")
    if f.self_test_passed:
        proof.append("self-test passed")
    if f.cover_opened_at is not None and f.cover_closed_at is not None:
        proof.append("cover opened and closed")
    if not proof:
        return Verdict.UNTESTED, ["heard, but nothing showed it was tested"]
    return Verdict.TESTED, proof


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device_id: str
    kind: str
    location: str


def report(
    visit: Mapping[str, Any],
    devices: Iterable[DeviceInfo],
    findings: Mapping[str, Findings],
    still_faulty: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """The visit report: every device of the site with its verdict and what was seen, and
    the counts. `visit`: id, site, started_at, started_by, finished_at, finished_by, ended."""
    rows = []
    counts = {v.value: 0 for v in Verdict}
    for d in devices:
        f = findings.get(d.device_id, Findings())
        v, why = verdict(f, still_faulty.get(d.device_id, ()))
        counts[v.value] += 1
        rows.append(
            {
                "device": d.device_id,
                "kind": d.kind,
                "location": d.location,
                "verdict": v.value,
                "why": why,
                **f.to_json(),
            }
        )
    return {**visit, "counts": counts, "devices": rows}
