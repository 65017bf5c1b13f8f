"""The spare-parts rules, pure, from tables: what a ticket's stamps ask of its part, where its
part use goes and the stock moves that takes, what a move does to stock, when a part is low,
billing by warranty, and what the desk says of a ticket's part. Then every order of delivery
of a ticket's versions, each delivered twice: each move happens once and the stock adds up."""

from __future__ import annotations

import itertools

import pytest

from alarmgw.centre.parts import (
    Need,
    Stock,
    Use,
    after,
    billable,
    catalogue,
    need,
    part_of,
    settle,
    view,
    went_low,
)

T = "2026-03-02T10:00:00.000Z"


@pytest.mark.parametrize(
    ("diagnosis", "part"),
    [
        ({"part": "battery (CR123A or the model's own)"}, "battery (CR123A or the model's own)"),
        ({"part": "  PSU "}, "PSU"),
        ({"part": "none"}, None),
        ({"part": "None"}, None),
        ({"part": ""}, None),
        ({"part": 7}, None),
        ({}, None),
        (None, None),
        ("battery", None),
        ({"part": "x" * 300}, "x" * 200),
    ],
)
def test_the_part_a_diagnosis_names(diagnosis: object, part: str | None) -> None:
    assert part_of(diagnosis) == part


@pytest.mark.parametrize(
    ("state", "stamps", "asked"),
    [
        ("open", {}, "none"),
        ("acknowledged", {"acknowledged_at": T}, "none"),
        ("dispatched", {"dispatched_at": T}, "reserve"),
        ("dispatched", {}, "reserve"),  # a stamp missing: the state says it
        ("on_site", {"dispatched_at": T, "on_site_at": T}, "reserve"),
        ("resolved", {"dispatched_at": T, "resolved_at": T}, "consume"),
        ("resolved", {"acknowledged_at": T, "resolved_at": T}, "none"),  # fixed remotely: no part went out
        ("closed", {"dispatched_at": T, "resolved_at": T, "closed_at": T}, "consume"),
        ("closed", {"dispatched_at": T, "closed_at": T}, "release"),  # closed without being resolved
        ("closed", {"resolved_at": T, "closed_at": T}, "none"),
    ],
)
def test_what_a_tickets_stamps_ask_of_its_part(state: str, stamps: dict[str, object], asked: Need) -> None:
    assert need(state, stamps) == asked


@pytest.mark.parametrize(
    ("use", "asked", "free", "to", "kinds"),
    [
        (None, "none", 5, None, []),
        (None, "reserve", 1, "reserved", ["reserve"]),
        (None, "reserve", 0, "waiting", []),  # the part is out
        (None, "reserve", -1, "waiting", []),
        ("waiting", "reserve", 3, "reserved", ["reserve"]),
        ("reserved", "reserve", 0, "reserved", []),  # the same version again
        ("reserved", "consume", 0, "consumed", ["consume"]),
        (None, "consume", 2, "consumed", ["reserve", "consume"]),  # the dispatch came with the resolution
        (None, "consume", 0, "consumed", ["consume*"]),  # used from elsewhere: recorded, stock untouched
        ("waiting", "consume", 0, "consumed", ["consume*"]),
        ("reserved", "release", 0, "released", ["release"]),
        ("waiting", "release", 0, "released", []),
        (None, "release", 4, None, []),
        ("consumed", "release", 4, "consumed", []),  # final
        ("consumed", "consume", 4, "consumed", []),
        ("released", "consume", 4, "released", []),  # a dispatcher let it go: nothing taken later
        ("released", "reserve", 4, "released", []),
    ],
)
def test_where_a_part_use_goes(use: Use | None, asked: Need, free: int, to: Use | None, kinds: list[str]) -> None:
    got, steps = settle(use, asked, free)
    assert got == to
    assert [s.kind + ("" if s.from_stock else "*") for s in steps] == kinds


@pytest.mark.parametrize(
    ("kind", "quantity", "before", "now"),
    [
        ("receipt", 5, Stock(2, 1, 3), Stock(7, 1, 3)),
        ("count", 4, Stock(9, 1, 3), Stock(4, 1, 3)),
        ("reserve", 0, Stock(2, 1, 3), Stock(2, 2, 3)),
        ("consume", 0, Stock(2, 2, 3), Stock(1, 1, 3)),
        ("release", 0, Stock(2, 2, 3), Stock(2, 1, 3)),
    ],
)
def test_what_a_move_does_to_stock(kind: str, quantity: int, before: Stock, now: Stock) -> None:
    assert after(before, kind, quantity) == now  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stock", "free", "low"),
    [
        (Stock(5, 0, 1), 5, False),
        (Stock(5, 4, 1), 1, True),  # at the threshold is low
        (Stock(5, 3, 1), 2, False),
        (Stock(0, 0, 0), 0, True),
        (Stock(10, 0, 10), 10, True),
    ],
)
def test_free_and_low(stock: Stock, free: int, low: bool) -> None:
    assert (stock.free, stock.low) == (free, low)


@pytest.mark.parametrize(
    ("before", "now", "went"),
    [
        (Stock(3, 0, 1), Stock(3, 2, 1), True),
        (Stock(3, 2, 1), Stock(3, 3, 1), False),  # low already: said once
        (None, Stock(0, 0, 1), True),  # a new line with none
        (Stock(3, 2, 1), Stock(5, 2, 1), False),
        (Stock(3, 0, 1), None, False),
    ],
)
def test_a_part_goes_low_once(before: Stock | None, now: Stock | None, went: bool) -> None:
    assert went_low(before, now) is went


@pytest.mark.parametrize(("in_warranty", "charged"), [(False, True), (True, False), (None, None), ("yes", None)])
def test_parts_are_charged_at_cost_out_of_warranty(in_warranty: object, charged: bool | None) -> None:
    assert billable(in_warranty) is charged


@pytest.mark.parametrize(
    ("state", "use", "depot", "stock", "out", "why"),
    [
        ("acknowledged", None, "north", Stock(1, 0), False, "1 free at depot north"),
        ("acknowledged", None, "north", Stock(1, 1), True, "part out: none free at depot north"),
        ("acknowledged", None, "north", None, True, "part out: none free at depot north"),
        ("open", None, "north", None, False, "0 free at depot north"),  # not yet promised a visit
        ("dispatched", "waiting", "north", Stock(0, 0), True, "part out"),
        ("on_site", "waiting", "north", Stock(0, 0), True, "part out"),
        ("dispatched", "reserved", "north", Stock(1, 1), False, "reserved at depot north"),
        ("resolved", "consumed", "north", Stock(0, 0), False, "used from depot north, charged at cost"),
        ("closed", "released", "north", Stock(1, 0), False, "released at depot north"),
        ("acknowledged", None, None, None, False, "no depot serves site s-1"),
        ("resolved", None, "north", Stock(0, 0), False, "0 free at depot north"),
    ],
)
def test_what_the_desk_says_of_a_tickets_part(
    state: str, use: Use | None, depot: str | None, stock: Stock | None, out: bool, why: str
) -> None:
    v = view("s-1", "battery", state, use, depot, stock, True)
    assert v is not None
    assert v["out"] is out
    assert str(v["why"]).startswith(why), v["why"]
    assert view("s-1", None, state, use, depot, stock) is None  # no part named: nothing to say


def test_the_catalogue_is_the_parts_the_diagnoses_name() -> None:
    assert {"battery (CR123A or the model's own)", "PSU", "detector", "repeater"} <= catalogue()
    assert "none" not in catalogue()


# A ticket's versions as the site sends them: (state, stamps), each a version above the last.
LIFECYCLES = {
    "repaired": ["open", "acknowledged", "dispatched", "on_site", "resolved", "closed"],
    "remote": ["open", "acknowledged", "resolved", "closed"],
    "abandoned": ["open", "acknowledged", "dispatched", "closed"],
}
STAMP = {"dispatched": "dispatched_at", "on_site": "on_site_at", "resolved": "resolved_at", "closed": "closed_at"}


def versions(states: list[str]) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    stamps: dict[str, object] = {}
    for s in states:
        if s in STAMP:
            stamps = {**stamps, STAMP[s]: T}
        out.append((s, dict(stamps)))
    return out


@pytest.mark.parametrize("name", sorted(LIFECYCLES))
@pytest.mark.parametrize("free", [0, 1])
def test_every_delivery_order_moves_the_part_once(name: str, free: int) -> None:
    """The centre keeps the newest version delivered so far and settles the part as it asks:
    whatever the order, and each version twice, each move happens at most once, a repair
    consumes one part, a remote fix takes none, and a ticket closed unresolved gives its
    reservation back (or had none, when the close came first)."""
    vs = versions(LIFECYCLES[name])
    for order in itertools.permutations(range(len(vs))):
        stock, kinds, use = settle_all(vs, [i for i in order for _ in range(2)], free)
        assert len(kinds) == len(set(kinds)), (order, kinds)
        if name == "repaired":
            assert (use, kinds.count("consume")) == ("consumed", 1)
            assert stock == Stock(free - 1 if free else 0, 0, 0), order  # none free: it came from elsewhere
        else:
            assert use in ({None} if name == "remote" else {None, "released"}), order
            assert stock == Stock(free, 0, 0), order
            assert "consume" not in kinds


def settle_all(
    vs: list[tuple[str, dict[str, object]]], order: list[int], free: int
) -> tuple[Stock, list[str], Use | None]:
    stock, use, newest, kinds = Stock(free, 0, 0), None, -1, []
    for i in order:
        newest = max(newest, i)  # an older version than the stored one changes nothing
        state, stamps = vs[newest]
        use, steps = settle(use, need(state, stamps), stock.free)
        for s in steps:
            kinds.append(s.kind)
            if s.from_stock:
                stock = after(stock, s.kind)
    return stock, sorted(kinds), use
