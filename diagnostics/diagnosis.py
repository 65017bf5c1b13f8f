"""Remote diagnosis: from a device's recent history to a probable cause and a proposed fix.

Pure: features are computed from history samples (battery and RSSI trends by least
squares, the parent's state), then the first candidate of the fault's list in causes.yaml
whose conditions hold is the diagnosis. Knowledge is data; this module only applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.yamlfile import load_yaml_model

from .sla import RepairClass

DEFAULT_CAUSES_FILE = Path(__file__).with_name("causes.yaml")
WEEK_S = 7 * 86400.0
DAY_S = 86400.0


class Test(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    below: float | None = None
    above: float | None = None
    is_: bool | None = Field(default=None, alias="is")


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cause: str
    when: dict[str, Test] = {}
    fix: str
    part: str
    repair: Literal["equipment", "accessory"]


class Causes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    faults: dict[str, list[Candidate]]


def load_causes(path: Path | str = DEFAULT_CAUSES_FILE) -> Causes:
    return load_yaml_model(path, Causes)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    cause: str
    fix: str
    part: str
    repair: RepairClass
    evidence: Mapping[str, float | bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "cause": self.cause,
            "fix": self.fix,
            "part": self.part,
            "repair": self.repair,
            "evidence": dict(self.evidence),
        }


Sample = tuple[datetime, Mapping[str, float | int | bool]]


def slope_per_s(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, y); None with fewer than 2 points or no time spread."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (y - my) for t, y in points) / var


def features(history: Sequence[Sample], parent_lost: bool) -> dict[str, float | bool]:
    """What the history says, as numbers a candidate can test."""
    out: dict[str, float | bool] = {"parent_lost": parent_lost, "samples": float(len(history))}
    if not history:
        return out
    t0 = history[0][0]
    for name in ("battery_v", "battery_pct", "rssi_dbm", "link_quality", "bus_error_rate"):
        pts = [((at - t0).total_seconds(), float(v[name])) for at, v in history if name in v]
        if not pts:
            continue
        out["error_rate" if name == "bus_error_rate" else name] = pts[-1][1]
        slope = slope_per_s(pts)
        if slope is None:
            continue
        if name == "battery_v":
            out["battery_slope_v_per_week"] = slope * WEEK_S
            out["battery_drop_v_per_week"] = -slope * WEEK_S
        if name == "rssi_dbm":
            out["rssi_slope_db_per_day"] = slope * DAY_S
            out["rssi_drop_db_per_day"] = -slope * DAY_S
    return out


def _holds(test: Test, value: float | bool | None) -> bool:
    if value is None:
        return False
    if test.is_ is not None and bool(value) != test.is_:
        return False
    if test.below is not None and not float(value) < test.below:
        return False
    return not (test.above is not None and not float(value) > test.above)


def diagnose(causes: Causes, fault: str, history: Sequence[Sample], parent_lost: bool = False) -> Diagnosis:
    """The probable cause of `fault` given the device's history."""
    feats = features(history, parent_lost)
    for cand in causes.faults.get(fault) or causes.faults["default"]:
        if all(_holds(t, feats.get(name)) for name, t in cand.when.items()):
            try:
                fix = cand.fix.format(**feats)
            except (KeyError, ValueError):
                fix = cand.fix
            return Diagnosis(cand.cause, fix, cand.part, cand.repair, feats)
    return Diagnosis("unknown", "diagnose on site", "unknown", "equipment", feats)
