"""Remote diagnosis: from a device's recent history to a probable cause, a proposed fix, how
sure that is and on what evidence.

Pure. Each numeric series of the history (battery voltage, RSSI) gives features: its latest
value; a trend, only when the history is long enough to have one (see `MIN_TREND_SPAN_S`)
and the slope is one the quantity can physically have; a sudden step that stayed down; dips
that came back up. The first candidate of the fault's list in causes.yaml whose conditions
hold is the diagnosis. Knowledge is data; this module only applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from alarmgw.yamlfile import load_yaml_model

from .sla import RepairClass

DEFAULT_CAUSES_FILE = Path(__file__).with_name("causes.yaml")
HOUR_S = 3600.0
DAY_S = 86400.0
WEEK_S = 7 * DAY_S

# What a trend needs before a number is quoted: samples spread over at least a day, in at
# least five separate hours (the samples of one hour count once, as their median, so a
# burst of polls seconds apart is one point, never a slope).
MIN_TREND_SPAN_S = DAY_S
MIN_TREND_POINTS = 5
BIN_S = HOUR_S
MAX_FIT_POINTS = 240  # past 10 days the bins widen, so the fit is at most 240²/2 slopes
MAX_SAMPLES = 20_000  # the newest this many are looked at (30 days at one per 300 s: 8,640)
STEP_BEFORE = 3  # samples before a step showing the level it fell from
STEP_WINDOW = 10  # ... of which at most this many (the latest) set that level
# No battery wears faster than this; a fall bigger than twice this over the gap between two
# samples may be wear, so it is not called a step.
MAX_WEAR_V_PER_WEEK = 0.1
# A link fades over days before it is lost: its trend is fitted over the last week only.
RSSI_WINDOW_S = 7 * DAY_S
SURE_TREND_DAYS = 3.0  # a trend shorter than this gives at most medium confidence

Confidence = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class Series:
    """How one reading is judged: plausible range, resolution, trend unit and bound, step size."""

    prefix: str  # feature names: {prefix}_slope_{unit}_per_{per}, {prefix}_step_{unit}, ...
    unit: str  # in feature names
    label: str  # in text: what it is
    shown: str  # in text: the unit of a value ...
    change: str  # ... and of a change
    digits: int  # decimals of a change in text
    low: float
    high: float
    resolution: float  # the smallest change the reading shows (its register's unit)
    per: str  # "week" or "day": the unit of time slopes are quoted in
    max_slope: float  # physical bound, in unit per `per`: beyond it, it is not a trend
    step_abs: float  # a step is at least this ...
    step_rel: float  # ... and at least this share of the level it fell from
    window_s: float | None  # the trend is fitted over this much of the latest history (None: all)

    def step_min(self, level: float) -> float:
        return max(self.step_abs, self.step_rel * abs(level))

    def dip_min(self, level: float) -> float:
        return max(self.step_abs, self.step_rel / 2 * abs(level))


SERIES = {
    "battery_v": Series("battery", "v", "battery", "V", "V", 3, 0.0, 30.0, 0.001, "week", 1.0, 0.05, 0.04, None),
    "rssi_dbm": Series("rssi", "db", "signal", "dBm", "dB", 1, -130.0, 0.0, 1.0, "day", 30.0, 10.0, 0.0, RSSI_WINDOW_S),
}
# Other readings a candidate may test: their latest plausible value.
LATEST = {"battery_pct": (0.0, 100.0), "link_quality": (0.0, 255.0), "bus_error_rate": (0.0, 1.0)}
RENAMED = {"bus_error_rate": "error_rate"}


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
    confidence: Confidence = "low"


class Battery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flat_v: float = Field(gt=0, le=30)


class Causes(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    batteries: dict[str, Battery] = {"default": Battery(flat_v=2.6)}
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
    confidence: Confidence = "low"
    findings: tuple[str, ...] = ()  # the evidence in words, with units

    def as_dict(self) -> dict[str, object]:
        return {
            "cause": self.cause,
            "fix": self.fix,
            "part": self.part,
            "repair": self.repair,
            "evidence": dict(self.evidence),
            "confidence": self.confidence,
            "findings": list(self.findings),
        }


Sample = tuple[datetime, Mapping[str, float | int | bool]]
Points = list[tuple[float, float]]


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of (t, y): the median of pairwise slopes, robust to a few outliers;
    None without two distinct times."""
    slopes = [(y2 - y1) / (t2 - t1) for i, (t1, y1) in enumerate(points) for t2, y2 in points[i + 1 :] if t2 != t1]
    if not slopes:
        return None
    slope = median(slopes)
    return slope, median(y - slope * t for t, y in points)


def hourly(points: Points) -> Points:
    """One (median time, median value) per bin of at least an hour, at most MAX_FIT_POINTS."""
    span = points[-1][0] - points[0][0]
    width = max(BIN_S, span / (MAX_FIT_POINTS - 1))
    bins: dict[int, Points] = {}
    for t, y in points:
        bins.setdefault(int((t - points[0][0]) // width), []).append((t, y))
    return [(median(t for t, _ in b), median(y for _, y in b)) for b in bins.values()]


def _step(points: Points, s: Series) -> tuple[float, float, int] | None:
    """(level before, level after, index) of a fall that happened between two samples and
    stayed down: every sample since lies a step below the median of those before it."""
    worst = None
    low = -math.inf  # the highest sample from k on
    for k in range(len(points) - 1, STEP_BEFORE - 1, -1):
        before = median(y for _, y in points[max(0, k - STEP_WINDOW) : k])
        low = max(low, points[k][1])
        if low > before - s.step_min(before):
            break  # a sample since k is not down: no step at k or earlier stayed down
        worst = (before, k)
    if worst is None:
        return None
    before, k = worst
    if points[k - 1][1] - points[k][1] < s.step_min(before) / 2:
        return None  # it slid down over several samples: not a step
    after = median(y for _, y in points[k:])
    gap_weeks = (points[k][0] - points[k - 1][0]) / WEEK_S
    if s.prefix == "battery" and before - after <= 2 * MAX_WEAR_V_PER_WEEK * gap_weeks:
        return None  # over a gap that long, wear could do it
    return before, after, k


def _r(x: float, digits: int) -> float:
    return round(x, digits) + 0.0  # + 0.0: never a "-0.0"


def _series(name: str, s: Series, pts: Points, out: dict[str, float | bool], words: list[str]) -> None:
    """Latest value, trend, step and dips of one series, as features and findings."""
    last = pts[-1][1]
    out[name] = round(last, 3)
    step = _step(pts, s)
    if step is not None:
        before, after, _ = step
        out[f"{s.prefix}_step_{s.unit}"] = round(before - after, 3)
        out[f"{s.prefix}_before_{s.unit}"] = round(before, 3)
        words.append(f"{s.label} fell at once from {_value(s, before)} to {_value(s, after)} and stayed there")
    if s.window_s is not None:
        pts = [p for p in pts if p[0] >= pts[-1][0] - s.window_s]
    bins = hourly(pts)
    span = bins[-1][0] - bins[0][0]
    if span < MIN_TREND_SPAN_S or len(bins) < MIN_TREND_POINTS:
        out[f"{s.prefix}_trend"] = False
        words.append(
            f"not enough history for a {s.label} trend: {_span(pts[-1][0] - pts[0][0])} in {len(bins)} "
            f"separate hours (a trend needs {_span(MIN_TREND_SPAN_S)} and {MIN_TREND_POINTS})"
        )
        return
    fit = theil_sen(bins)
    assert fit is not None  # bins have distinct times
    slope, intercept = fit
    per_s = WEEK_S if s.per == "week" else DAY_S
    if abs(slope * per_s) > s.max_slope:
        out[f"{s.prefix}_trend"] = False
        words.append(f"{s.label} readings jump about too much for a trend; none is quoted")
        return
    resid = [(t, y - (intercept + slope * t)) for t, y in bins]
    noise = max(1.4826 * median(abs(r) for _, r in resid), s.resolution)
    fall = -slope * span
    days: dict[int, list[float]] = {}
    for t, r in resid:
        days.setdefault(int((t - bins[0][0]) // DAY_S), []).append(r)
    # Whole days average out a daily swing (a battery warms and cools): a fall is judged
    # against how much the days differ, when there are enough of them.
    daily = [median(rs) for rs in days.values()]
    spread = noise if len(daily) < 3 else max(1.4826 * median(abs(d - median(daily)) for d in daily), s.resolution)
    out[f"{s.prefix}_trend"] = True
    out[f"{s.prefix}_slope_{s.unit}_per_{s.per}"] = _r(slope * per_s, 4)
    out[f"{s.prefix}_drop_{s.unit}_per_{s.per}"] = _r(-slope * per_s, 4)
    out[f"{s.prefix}_fall_{s.unit}"] = _r(fall, 3)
    out[f"{s.prefix}_noise_{s.unit}"] = round(noise, 3)
    out[f"{s.prefix}_fall_to_noise"] = _r(fall / spread, 1)
    out[f"{s.prefix}_trend_days"] = round(span / DAY_S, 1)
    unit, digits = s.change, s.digits
    if abs(fall) < 2 * spread:
        words.append(f"{s.label} steady over {_span(span)} (within ±{noise:.{digits}f} {unit})")
    else:
        way = "falling" if fall > 0 else "rising"
        words.append(
            f"{s.label} {way} {abs(slope * per_s):.{digits}f} {unit} a {s.per} over {_span(span)} "
            f"({len(pts)} samples in {len(bins)} bins of {_span(max(BIN_S, span / (MAX_FIT_POINTS - 1)))}, "
            f"scatter ±{noise:.{digits}f} {unit})"
        )
    _dips(s, pts, slope, intercept, out, words)


def _dips(
    s: Series, pts: Points, slope: float, intercept: float, out: dict[str, float | bool], words: list[str]
) -> None:
    """Times the series sank well below its trend and came back: a cold battery recovers."""
    recoveries, down = 0, False
    for t, y in pts:
        line = intercept + slope * t
        if y < line - s.dip_min(line):
            down = True
        elif down and y > line - s.dip_min(line) / 2:
            recoveries, down = recoveries + 1, False
    out[f"{s.prefix}_recoveries"] = float(recoveries)
    out[f"{s.prefix}_dipped"] = down
    if recoveries:
        words.append(f"{s.label} sank below its trend and recovered {recoveries} time(s) before; it is down again")


def _value(s: Series, v: float) -> str:
    return f"{v:.2f} {s.shown}" if s.shown == "V" else f"{v:.0f} {s.shown}"


def _span(seconds: float) -> str:
    if seconds >= DAY_S:
        return f"{seconds / DAY_S:.1f} days"
    if seconds >= HOUR_S:
        return f"{seconds / HOUR_S:.1f} h"
    return f"{seconds:.0f} s"


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def features(
    history: Sequence[Sample], parent_lost: bool, causes: Causes | None = None, device_kind: str | None = None
) -> tuple[dict[str, float | bool], list[str]]:
    """What the history says, as numbers a candidate can test and as sentences for a person."""
    history = sorted(history, key=lambda s: s[0])[-MAX_SAMPLES:]
    out: dict[str, float | bool] = {"parent_lost": parent_lost, "samples": float(len(history))}
    words = ["the repeater or host it reaches the panel through is in communication loss"] if parent_lost else []
    if not history:
        return out, [*words, "no history kept for this device"]
    t0 = history[0][0]
    span = (history[-1][0] - t0).total_seconds()
    out["history_days"] = round(span / DAY_S, 2)
    words.insert(0, f"history: {len(history)} samples over {_span(span)}")
    for name in (*SERIES, *LATEST):
        low, high = (SERIES[name].low, SERIES[name].high) if name in SERIES else LATEST[name]
        pts: Points = []
        ignored = 0
        for at, values in history:
            v = _number(values.get(name))
            if v is None:
                continue
            if low <= v <= high:
                pts.append(((at - t0).total_seconds(), v))
            else:
                ignored += 1
        if ignored:
            words.append(f"ignored {ignored} {name} reading(s) outside {low:g} to {high:g}")
        if not pts:
            continue
        if name in SERIES:
            _series(name, SERIES[name], pts, out, words)
        else:
            out[RENAMED.get(name, name)] = round(pts[-1][1], 4)
    if "battery_v" in out:
        table = (causes or load_causes()).batteries
        flat = (table.get(device_kind or "default") or table["default"]).flat_v
        out["battery_flat"] = float(out["battery_v"]) < flat
    return out, words


def _holds(test: Test, value: float | bool | None) -> bool:
    if value is None:
        return False
    if test.is_ is not None and bool(value) != test.is_:
        return False
    if test.below is not None and not float(value) < test.below:
        return False
    return not (test.above is not None and not float(value) > test.above)


def _confidence(cand: Candidate, feats: Mapping[str, float | bool]) -> Confidence:
    """The candidate's own confidence, but no more than medium when it rests on a trend
    shorter than `SURE_TREND_DAYS`."""
    if cand.confidence != "high":
        return cand.confidence
    for name in cand.when:
        prefix = name.split("_", 1)[0]
        trend = name.startswith(f"{prefix}_slope_") or name.endswith("_fall_to_noise")
        if trend and float(feats.get(f"{prefix}_trend_days", 0.0)) < SURE_TREND_DAYS:
            return "medium"
    return "high"


def diagnose(
    causes: Causes,
    fault: str,
    history: Sequence[Sample],
    parent_lost: bool = False,
    device_kind: str | None = None,
) -> Diagnosis:
    """The probable cause of `fault` given the device's history (oldest first), with how
    sure it is and the findings it rests on."""
    feats, words = features(history, parent_lost, causes, device_kind)
    for cand in causes.faults.get(fault) or causes.faults["default"]:
        if all(_holds(t, feats.get(name)) for name, t in cand.when.items()):
            try:
                fix = cand.fix.format(**feats)
            except (KeyError, ValueError):
                fix = cand.fix
            sure = _confidence(cand, feats)
            return Diagnosis(cand.cause, fix, cand.part, cand.repair, feats, sure, tuple(words))
    return Diagnosis("unknown", "diagnose on site", "unknown", "equipment", feats, "low", tuple(words))
