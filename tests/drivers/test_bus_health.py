"""The bus error rate: noise counts, a dead peer does not."""

from __future__ import annotations

from alarmgw.drivers.bus_health import ErrorWindow


def test_no_rate_until_enough_transactions() -> None:
    w = ErrorWindow(size=10, minimum=4)
    for _ in range(3):
        w.answered(1)
    assert w.rate() is None
    w.garbled()
    assert w.rate() == 0.25


def test_a_retry_that_then_succeeds_is_a_bus_error() -> None:
    w = ErrorWindow(size=10, minimum=1)
    w.unanswered(1)
    w.answered(1)
    assert w.rate() == 0.5


def test_a_dead_unit_never_counts_against_the_bus() -> None:
    w = ErrorWindow(size=10, minimum=1)
    for _ in range(20):
        w.unanswered(1)  # unit 1 is dead
        w.answered(2)  # unit 2 is fine
    assert w.rate() == 0.0


def test_window_forgets_old_trouble() -> None:
    w = ErrorWindow(size=4, minimum=1)
    for _ in range(4):
        w.garbled()
    for _ in range(4):
        w.answered()
    assert w.rate() == 0.0


def test_a_garbled_reply_counts_at_once_and_proves_its_peer_alive() -> None:
    w = ErrorWindow(size=10, minimum=1)
    w.unanswered(1)  # the request was lost, or the unit is dead: not known yet
    w.garbled(1)  # bytes came back that did not decode: the unit is there, the line is not
    assert w.rate() == 1.0
    w.answered(1)
    assert w.rate() == 2 / 3


def test_a_unit_back_from_a_long_outage_counts_one_poll_of_tries_against_the_bus() -> None:
    w = ErrorWindow(size=50, minimum=1, max_unproven=2)
    for _ in range(20):
        w.answered(2)
    for _ in range(12):
        w.unanswered(1)  # unit 1 is off for six polls of two tries
    w.answered(1)  # and back
    assert w.rate() == 2 / 23  # its own outage, not six polls of a noisy line
