"""What a maintenance visit saw of each device, and each device's verdict: pure tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alarmgw.diagnostics.visits import DeviceInfo, Findings, Verdict, report, verdict
from alarmgw.model import Reading

START = datetime(2027, 12, 31, 23, 0, tzinfo=UTC)  # a visit across the year's end
S = timedelta(seconds=1)


def seen(*values: dict[str, object], start: datetime = START) -> Findings:
    f = Findings()
    for k, v in enumerate(values, start=1):
        f.observe(Reading("d", START + k * 60 * S, v), start)  # type: ignore[arg-type]
    return f


def test_readings_give_the_battery_the_signal_and_what_ran_during_the_visit() -> None:
    f = seen(
        {"battery_v": 3.0, "rssi_dbm": -60, "self_test_age_s": 7200},  # its last self-test: before the visit
        {"battery_v": 2.8, "rssi_dbm": -75, "alarm": True},
        {"battery_v": 2.9, "rssi_dbm": -70, "self_test_age_s": 30, "sensor_fault": False},
        {"link_lost": True, "battery_v": 0.0},  # a link verdict says nothing of the device
    )
    assert (f.readings, f.battery_v, f.battery_v_min, f.rssi_dbm, f.rssi_dbm_min) == (3, 2.9, 2.8, -70, -75)
    assert f.test_alarm_at == START + 120 * S
    assert (f.self_test_at, f.self_test_passed) == (START + 150 * S, True)
    assert f.last_heard == START + 180 * S


def test_a_failed_self_test_stays_failed_for_the_visit() -> None:
    f = seen({"self_test_age_s": 10, "sensor_fault": True}, {"self_test_age_s": 5, "sensor_fault": False})
    assert f.self_test_passed is False


def _cover(opened: bool, closed: bool) -> Findings:
    f = seen({"battery_v": 3.0})
    if opened:
        f.raised("tamper", START + 10 * S)
    if closed:
        f.cleared("tamper", START + 20 * S)
    return f


@pytest.mark.parametrize(
    ("findings", "still_faulty", "expected", "why"),
    [
        (Findings(), (), Verdict.UNTESTED, "not heard during the visit"),
        (seen({"battery_v": 3.0}), (), Verdict.UNTESTED, "heard, but nothing showed it was tested"),
        (seen({"alarm": True}), (), Verdict.TESTED, "test alarm"),
        (seen({"self_test_age_s": 1}), (), Verdict.TESTED, "self-test passed"),
        (_cover(True, True), (), Verdict.TESTED, "cover opened and closed"),
        (_cover(True, False), (), Verdict.FAILED, "cover left open"),
        (seen({"self_test_age_s": 1, "sensor_fault": True}), (), Verdict.FAILED, "self-test failed"),
        (seen({"alarm": True}), ("low_battery",), Verdict.FAILED, "low_battery at the end"),
    ],
)
def test_verdicts(findings: Findings, still_faulty: tuple[str, ...], expected: Verdict, why: str) -> None:
    v, reasons = verdict(findings, still_faulty)
    assert v is expected and why in reasons


def test_a_fault_the_visit_cannot_cause_fails_the_device() -> None:
    f = seen({"alarm": True})
    f.raised("weak_signal", START + 30 * S)
    f.raised("battery_missing", START + 40 * S)  # the engineer's doing: noted, not a failure
    assert verdict(f) == (Verdict.FAILED, ["weak_signal during the visit"])
    assert f.battery_out_at == START + 40 * S


def test_the_report_lists_every_device_and_survives_json() -> None:
    devices = [DeviceInfo("smoke-1", "smoke_detector", "hall"), DeviceInfo("pir-1", "pir_detector", "")]
    f = seen({"alarm": True})
    back = Findings.from_json(f.to_json())
    assert back == f
    doc = report({"visit": 1}, devices, {"smoke-1": back}, {})
    assert doc["counts"] == {"tested": 1, "untested": 1, "failed": 0}
    assert [(d["device"], d["verdict"]) for d in doc["devices"]] == [("smoke-1", "tested"), ("pir-1", "untested")]
