"""The watch over the gateway's own inputs: a device with no reading past its window is
named once, until it is heard again; no I/O."""

from __future__ import annotations

from alarmgw.diagnostics.watch import Watch


def test_a_device_not_heard_within_its_window_is_named_once() -> None:
    w = Watch(now=0.0)
    w.add("smoke", 200.0, now=0.0)
    w.add("remote", None, now=0.0)  # nothing is expected from it: not watched
    assert w.overdue(200.0) == []
    assert w.overdue(200.5) == ["smoke"]
    w.flag(["smoke"])
    assert w.overdue(1000.0) == []  # named once, not every look
    assert w.heard("smoke", 1001.0) is True  # it was flagged: the caller clears the fault
    assert w.heard("smoke", 1002.0) is False
    assert w.overdue(1201.0) == []
    assert w.overdue(1202.5) == ["smoke"]


def test_hearing_a_device_restarts_its_window() -> None:
    w = Watch(now=0.0)
    w.add("host", 30.0, now=0.0)
    for t in range(0, 300, 10):
        w.heard("host", float(t))
        assert w.overdue(t + 30.0) == []
    assert w.overdue(290 + 30.5) == ["host"]


def test_a_device_added_later_gets_its_whole_window_from_then() -> None:
    w = Watch(now=0.0)
    w.add("z.new", 60.0, now=500.0)
    assert w.overdue(560.0) == []
    assert w.overdue(561.0) == ["z.new"]
    w.add("z.new", 5.0, now=600.0)  # added twice: the first window stands
    assert w.window("z.new") == 60.0


def test_a_restored_fault_is_cleared_by_the_first_reading() -> None:
    w = Watch(now=0.0)
    w.add("pir", 90.0, now=0.0)
    w.flag(["pir"])  # open `unmonitored` episode from before a restart
    assert w.heard("pir", 1.0) is True


def test_the_gateway_s_own_absence_is_not_blamed_on_its_devices() -> None:
    w = Watch(now=0.0, stall_s=30.0)
    w.add("host", 15.0, now=0.0)
    for t in (10.0, 20.0):
        w.heard("host", t)
        assert w.overdue(t) == []
    # The box was suspended for half an hour: the first look after it finds the host's
    # last reading old, but the polls have not had their turn yet.
    assert w.overdue(20.0 + 1800) == []
    assert w.overdue(20.0 + 1800 + 10) == []
    assert w.overdue(20.0 + 1800 + 20) == ["host"]  # and now it has had its window
