"""Probable cause, fix, confidence and findings from a device's history, from tables; no I/O."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.diagnosis import (
    MIN_TREND_POINTS,
    Diagnosis,
    diagnose,
    features,
    hourly,
    load_causes,
    theil_sen,
)

CAUSES = load_causes()
T0 = datetime(2026, 1, 5, tzinfo=UTC)
History = list[tuple[datetime, dict[str, float | int | bool]]]


def every(step: timedelta, **series: list[float]) -> History:
    n = len(next(iter(series.values())))
    return [(T0 + i * step, {k: v[i] for k, v in series.items()}) for i in range(n)]


def weekly(**series: list[float]) -> History:
    return every(timedelta(weeks=1), **series)


def numbers(d: Diagnosis) -> list[float]:
    text = " ".join([d.fix, *d.findings])
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.?\d*", text)]


def test_the_readme_example_battery_falling_two_hundredths_a_week() -> None:
    d = diagnose(CAUSES, "low_battery", weekly(battery_v=[2.49, 2.47, 2.45, 2.43, 2.41]))
    assert d.cause == "battery worn out by normal use"
    assert d.fix == "replace the battery (2.41 V, falling 0.020 V a week)"
    assert (d.repair, d.part, d.confidence) == ("accessory", "battery (CR123A or the model's own)", "high")
    assert (
        "battery falling 0.020 V a week over 28.0 days (5 samples in 5 bins of 2.8 h, scatter ±0.001 V)" in d.findings
    )


def test_two_samples_seconds_apart_quote_no_trend() -> None:
    # The reported defect: "falling 36,937 V a week" from two samples 5 s apart.
    h = [(T0, {"battery_v": 3.01, "rssi_dbm": -60}), (T0 + timedelta(seconds=5), {"battery_v": 2.71, "rssi_dbm": -61})]
    d = diagnose(CAUSES, "low_battery", h)
    assert "battery_slope_v_per_week" not in d.evidence and "rssi_slope_db_per_day" not in d.evidence
    assert "falling" not in d.fix and all(abs(x) < 100 for x in numbers(d))
    assert d.cause == "battery low; not enough history to tell wear from a sudden drop"
    assert d.confidence == "low"
    assert any(f.startswith("not enough history for a battery trend: 5 s in 1 separate hours") for f in d.findings)


def test_a_burst_of_polls_is_one_point_not_a_trend() -> None:
    # 100 polls 5 s apart, one more a day later: two hourly points, not a slope.
    h = every(timedelta(seconds=5), rssi_dbm=[-60.0 + (i % 3) for i in range(100)])
    h.append((T0 + timedelta(days=1), {"rssi_dbm": -75.0}))
    f, _ = features(h, parent_lost=False)
    assert f["rssi_trend"] is False and "rssi_slope_db_per_day" not in f


def test_one_db_of_noise_is_not_a_fading_link() -> None:
    # Fine-grained, noisy but level: the old least-squares rule called -1.x dB/day "fading".
    noise = [0, -1, 1, 0, -1, 0, 1, -1, 0, 0, -1, 1]
    h = every(timedelta(hours=2), rssi_dbm=[-70.0 + noise[i % 12] - (1 if i > 10 else 0) for i in range(14)])
    d = diagnose(CAUSES, "comm_loss", h)
    assert d.cause == "device removed or failed (its signal was steady until it went silent)"
    assert d.part == "detector" and d.confidence == "medium"


def test_a_sudden_drop_is_not_wear() -> None:
    healthy = [3.02 - 0.0005 * i for i in range(20)]
    d = diagnose(CAUSES, "low_battery", every(timedelta(hours=6), battery_v=[*healthy, 2.41, 2.40, 2.41]))
    assert d.cause == "battery voltage dropped suddenly (a bad cell or the wrong battery type)"
    assert d.fix == "replace the battery with the model's own type (2.41 V, fell 0.60 V at once)"
    assert d.confidence == "high" and d.evidence["battery_step_v"] == pytest.approx(0.60, abs=0.01)


def test_a_drop_seen_in_seconds_is_still_a_step() -> None:
    # What the gateway sees when a cell fails between polls: no trend, but a clear step.
    d = diagnose(CAUSES, "low_battery", every(timedelta(seconds=5), battery_v=[3.05, 3.05, 3.04, 2.45, 2.45, 2.45]))
    assert d.cause.startswith("battery voltage dropped suddenly") and "battery_slope_v_per_week" not in d.evidence


def test_a_long_gap_is_not_called_a_step() -> None:
    # 0.3 V in six weeks of silence could be wear: no step is claimed.
    h = every(timedelta(hours=1), battery_v=[2.9] * 6)
    h.append((T0 + timedelta(weeks=6), {"battery_v": 2.6}))
    f, _ = features(h, parent_lost=False)
    assert "battery_step_v" not in f


def test_a_slow_slide_is_not_a_step() -> None:
    d = diagnose(CAUSES, "low_battery", every(timedelta(days=1), battery_v=[2.9 - 0.04 * i for i in range(10)]))
    assert d.cause == "battery worn out by normal use" and "battery_step_v" not in d.evidence


def test_a_cold_battery_recovers() -> None:
    # Three cold nights pull a 2.80 V cell down 0.3 V; it recovered after the first two.
    volts = [2.80 - (0.3 if (h % 24) in range(0, 7) and h > 4 * 24 else 0.0) for h in range(6 * 24 + 3)]
    d = diagnose(CAUSES, "low_battery", every(timedelta(hours=1), battery_v=volts))
    assert d.cause == "battery voltage sagging in the cold (it recovered when warmer)"
    assert d.confidence == "medium" and d.evidence["battery_recoveries"] == 2


def test_a_removed_battery() -> None:
    d = diagnose(
        CAUSES, "low_battery", every(timedelta(hours=1), battery_v=[13.4] * 10 + [0.0] * 2), device_kind="host"
    )
    assert d.cause == "battery removed or disconnected" and d.confidence == "high"


def test_implausible_readings_are_ignored_and_said_so() -> None:
    h = weekly(battery_v=[2.49, 2.47, 65.535, 2.45, 2.43, 2.41])
    d = diagnose(CAUSES, "low_battery", h)
    assert (
        d.cause == "battery worn out by normal use" and "ignored 1 battery_v reading(s) outside 0 to 30" in d.findings
    )


@pytest.mark.parametrize(
    ("history", "parent_lost", "cause", "repair", "confidence"),
    [
        ([], True, "the repeater or host it reaches the panel through is down", "equipment", "high"),
        ("fading", False, "radio link fading (signal falling before it was lost)", "equipment", "high"),
        ("flat", False, "device battery ran flat", "accessory", "medium"),
        ([], False, "device flat, removed or failed", "equipment", "low"),
    ],
)
def test_comm_loss_candidates_in_order(
    history: object, parent_lost: bool, cause: str, repair: str, confidence: str
) -> None:
    h: History = []
    if history == "fading":
        h = [(T0 + timedelta(days=i), {"rssi_dbm": -70.0 - 3 * i}) for i in range(6)]
    if history == "flat":
        h = [(T0 + timedelta(days=i), {"rssi_dbm": -70.0, "battery_v": 2.62 - 0.01 * i}) for i in range(6)]
    d = diagnose(CAUSES, "comm_loss", h, parent_lost=parent_lost)
    assert (d.cause, d.repair, d.confidence) == (cause, repair, confidence)
    if history == "fading":
        assert "falling 3.0 dB a day" in d.fix


def test_a_trend_of_two_days_is_only_medium() -> None:
    h = every(timedelta(hours=4), rssi_dbm=[-70.0 - 0.8 * i for i in range(13)])
    d = diagnose(CAUSES, "comm_loss", h)
    assert d.cause.startswith("radio link fading") and d.confidence == "medium"


def test_flat_depends_on_the_device_kind() -> None:
    h = every(timedelta(days=1), battery_v=[11.4] * 6, rssi_dbm=[-60.0] * 6)
    assert diagnose(CAUSES, "comm_loss", h, device_kind="host").cause == "device battery ran flat"
    assert diagnose(CAUSES, "comm_loss", h, device_kind="smoke_detector").cause.startswith("device removed")


def test_unknown_fault_gets_the_default_candidate() -> None:
    assert diagnose(CAUSES, "sensor_fault", []).cause == "fault reported by the device"


def test_as_dict_keeps_the_ticket_keys_and_adds_confidence_and_findings() -> None:
    d = diagnose(CAUSES, "low_battery", weekly(battery_v=[2.49, 2.47, 2.45, 2.43, 2.41]))
    doc = d.as_dict()
    assert list(doc) == ["cause", "fix", "part", "repair", "evidence", "confidence", "findings"]
    assert doc["evidence"]["samples"] == 5  # type: ignore[index]


def test_theil_sen_shrugs_off_an_outlier() -> None:
    pts = [(float(t), 1.0 + 0.1 * t) for t in range(10)]
    pts[4] = (4.0, 100.0)
    fit = theil_sen(pts)
    assert fit is not None and fit[0] == pytest.approx(0.1) and fit[1] == pytest.approx(1.0)
    assert theil_sen([(0.0, 1.0), (0.0, 2.0)]) is None


def test_hourly_bins_are_bounded() -> None:
    pts = [(float(t * 60), 1.0) for t in range(60 * 24 * 60)]  # one a minute for 60 days
    assert len(hourly(pts)) <= 240
    assert len(hourly([(0.0, 1.0), (10.0, 2.0), (7200.0, 3.0)])) == 2


@pytest.mark.parametrize("seed", range(30))
def test_no_history_of_noise_gives_an_absurd_number(seed: int) -> None:
    # Random histories: whatever they hold, nothing quoted exceeds a physical bound.
    import random

    rng = random.Random(seed)
    h: History = []
    t = T0
    for _ in range(rng.randint(0, 60)):
        t += timedelta(seconds=rng.choice([1, 5, 300, 3600, 86400]))
        h.append((t, {"battery_v": rng.uniform(-5, 70), "rssi_dbm": rng.uniform(-200, 50)}))
    d = diagnose(CAUSES, rng.choice(["low_battery", "comm_loss"]), h)
    ev = d.evidence
    assert abs(float(ev.get("battery_slope_v_per_week", 0))) <= 1.0
    assert abs(float(ev.get("rssi_slope_db_per_day", 0))) <= 30.0
    assert 0.0 <= float(ev.get("battery_v", 0)) <= 30.0
    assert all(math.isfinite(x) and abs(x) < 1000 for x in numbers(d))
    if "battery_slope_v_per_week" in ev or "rssi_slope_db_per_day" in ev:
        assert ev["history_days"] >= 1.0 and ev["samples"] >= MIN_TREND_POINTS
