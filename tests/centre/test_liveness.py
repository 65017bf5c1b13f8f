"""Judging a site dark or back, as a pure function of the sites' states and now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alarmgw.centre.liveness import (
    BackOnline,
    DarkTicket,
    GoneDark,
    SiteState,
    dark_ticket,
    judge,
    ticket_doc,
    ticket_from_doc,
)

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
BOUND = 300.0


def s(t: float) -> datetime:
    return T0 + timedelta(seconds=t)


def site(
    status: str = "online", status_at: float | None = 0, heard: float | None = 0, ticket: DarkTicket | None = None
) -> SiteState:
    return SiteState(
        "site-1",
        status,  # type: ignore[arg-type]
        None if status_at is None else s(status_at),
        None if heard is None else s(heard),
        "suburb",
        ticket,
    )


def test_an_offline_status_opens_a_ticket_detected_when_the_last_will_arrived() -> None:
    (d,) = judge([site("offline", status_at=42)], s(43), BOUND)
    assert isinstance(d, GoneDark) and d.detected_at == s(42) and "Last Will" in d.cause


def test_silence_past_the_bound_while_online_opens_one_detected_at_the_bound() -> None:
    assert judge([site(heard=100)], s(400), BOUND) == []  # exactly at the bound: not yet
    (d,) = judge([site(heard=100)], s(400.001), BOUND)
    assert isinstance(d, GoneDark) and d.detected_at == s(400) and "silent" in d.cause


def test_a_site_never_heard_from_is_not_dark() -> None:
    assert judge([site("unknown", status_at=None, heard=None)], s(10_000), BOUND) == []


def test_an_active_ticket_is_not_opened_twice() -> None:
    t = DarkTicket(1, True, s(42))
    assert judge([site("offline", status_at=42, ticket=t)], s(1000), BOUND) == []


def test_online_again_restores_only_once_the_site_has_sent_something_since() -> None:
    t = DarkTicket(1, True, s(42))
    assert judge([site("online", status_at=500, heard=30, ticket=t)], s(501), BOUND) == []  # status alone
    (d,) = judge([site("online", status_at=500, heard=505, ticket=t)], s(506), BOUND)
    assert d == BackOnline("site-1", 1, s(506))


def test_a_status_still_offline_never_restores() -> None:
    t = DarkTicket(1, True, s(42))
    assert judge([site("offline", status_at=42, heard=600, ticket=t)], s(601), BOUND) == []


def test_dark_again_after_a_restore_recurs_the_ticket() -> None:
    t = DarkTicket(1, False, s(42))
    (d,) = judge([site("offline", status_at=900, ticket=t)], s(901), BOUND)
    assert isinstance(d, GoneDark) and d.detected_at == s(900)


def test_the_dark_ticket_has_the_gateway_clocks_of_its_area_and_survives_a_round_trip() -> None:
    t = dark_ticket("site-1", "suburb", s(0), s(5), 7, "why")
    doc = ticket_doc(t, s(5))
    clocks = doc["clocks"]
    assert isinstance(clocks, dict)
    assert clocks["response"]["due"] == "2026-01-05T09:00:00.000Z"  # 1 h
    assert clocks["arrival"]["due"] == "2026-01-05T20:00:00.000Z"  # 12 h in the suburbs
    assert ticket_from_doc(doc) == t
    back = t.restored(s(60))
    assert ticket_from_doc(ticket_doc(back, s(60))) == back
