"""Probable cause and fix from a device's history, from tables; no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.diagnosis import diagnose, features, load_causes, slope_per_s

CAUSES = load_causes()
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def weekly(**series: list[float]) -> list[tuple[datetime, dict[str, float | int | bool]]]:
    n = len(next(iter(series.values())))
    return [(T0 + timedelta(weeks=i), {k: v[i] for k, v in series.items()}) for i in range(n)]


def test_the_brief_example_battery_falling_two_hundredths_a_week() -> None:
    d = diagnose(CAUSES, "low_battery", weekly(battery_v=[2.49, 2.47, 2.45, 2.43, 2.41]))
    assert d.cause == "battery worn out by normal use"
    assert d.fix == "replace the battery (2.41 V, falling 0.020 V a week)"
    assert (d.repair, d.part) == ("accessory", "battery (CR123A or the model's own)")


def test_a_flat_line_is_not_called_wear() -> None:
    d = diagnose(CAUSES, "low_battery", weekly(battery_v=[2.4, 2.4, 2.4]))
    assert d.cause == "battery flat or failing"


@pytest.mark.parametrize(
    ("history", "parent_lost", "cause", "repair"),
    [
        ([], True, "the repeater or host it reaches the panel through is down", "equipment"),
        ("fading", False, "radio link fading (signal falling before it was lost)", "equipment"),
        ([], False, "device flat, removed or failed", "equipment"),
    ],
)
def test_comm_loss_candidates_in_order(history: object, parent_lost: bool, cause: str, repair: str) -> None:
    h = [(T0 + timedelta(days=i), {"rssi_dbm": -70.0 - 3 * i}) for i in range(6)] if history == "fading" else []
    d = diagnose(CAUSES, "comm_loss", h, parent_lost=parent_lost)
    assert (d.cause, d.repair) == (cause, repair)
    if history == "fading":
        assert "falling 3.0 dB a day" in d.fix


def test_unknown_fault_gets_the_default_candidate() -> None:
    assert diagnose(CAUSES, "sensor_fault", []).cause == "fault reported by the device"


def test_slope_and_features() -> None:
    assert slope_per_s([(0, 1.0), (10, 2.0), (20, 3.0)]) == pytest.approx(0.1)
    assert slope_per_s([(0, 1.0)]) is None
    f = features(weekly(battery_v=[3.0, 2.9]), parent_lost=False)
    assert f["battery_slope_v_per_week"] == pytest.approx(-0.1) and f["samples"] == 2
