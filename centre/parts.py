"""Spare parts at the depots: a ticket's part is reserved when the ticket is dispatched,
consumed when it is resolved, released when it closes unresolved or a dispatcher lets it
go; each of those once per ticket. A depot serves the sites mapped to it, and the default
depot every other site. A part is low when its free stock (on hand less reserved) is at or
below its threshold; a dispatched ticket whose part none is free for waits for it (the part
is out), and gets it, oldest dispatch first, when parts are received or freed.

Pure first: what a ticket's stamps ask of its part (`need`), where its part use goes and the
stock moves that takes (`settle`), what a move does to a depot's stock (`after`), whether a
use is billable, and what the desk says of a ticket's part (`view`). Then the ledger in
PostgreSQL: `settle_tickets`, in the transaction that writes ticket versions (ingest, and
the relay's reconciliation); `allocate`, which gives free parts to the tickets waiting;
`record`, one line of the journal; and `views`, for the desk.

Exactly once, whatever the order and the repeats of ticket versions: the settling follows
the ticket's stored (newest) version, not the message; the ticket's row is locked by the
transaction that wrote it; the depot's stock line is locked before the ticket's part use
(lines in (depot, part) order, so two writers never wait on each other in a circle); and a
ticket's reserve, consume and release are rows of `part_moves` under a unique index, so a
move recorded already changes no stock again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, Literal, LiteralString

import psycopg
from psycopg.rows import dict_row

from alarmgw.clock import parse_iso
from alarmgw.diagnostics.diagnosis import load_causes

Conn = psycopg.AsyncConnection[tuple[object, ...]]
Use = Literal["waiting", "reserved", "consumed", "released"]
Kind = Literal["receipt", "count", "reserve", "consume", "release"]
Need = Literal["none", "reserve", "consume", "release"]
KINDS: tuple[Kind, ...] = ("receipt", "count", "reserve", "consume", "release")
NO_PART = frozenset({"", "none"})  # what a diagnosis says when the fix needs no part
MAX_PART = 200  # characters of a part's name
MAX_ON_HAND = 1_000_000
DEFAULT_LOW_AT = 1  # low when one or none is free, unless the depot says otherwise
BY = "centre"  # who moves stock for a site's ticket
DEPOT_LOCK = 0x41475743_0010  # pg_advisory_xact_lock: one change of the default depot at a time
AWAITING = ("acknowledged", "dispatched", "on_site")  # ticket states whose part may be out
BILLING = {True: "charged at cost (out of warranty)", False: "free (in warranty)", None: "warranty unknown"}


# --- pure rules --------------------------------------------------------------------------


def part_of(diagnosis: object) -> str | None:
    """The part a ticket's diagnosis names, None when it names none."""
    if not isinstance(diagnosis, Mapping):
        return None
    part = diagnosis.get("part")
    if not isinstance(part, str):
        return None
    part = part.strip()[:MAX_PART]
    return None if part.lower() in NO_PART else part


def need(state: str, stamps: Mapping[str, object]) -> Need:
    """What the ticket asks of its part, from its state and stamps (a version that skipped
    the dispatch still has its `dispatched_at`): nothing before dispatch or when fixed
    remotely; a reservation while dispatched; consumed once resolved; released when closed
    without being resolved."""
    dispatched = state in ("dispatched", "on_site") or bool(stamps.get("dispatched_at") or stamps.get("on_site_at"))
    if not dispatched:
        return "none"
    if state == "resolved" or stamps.get("resolved_at"):
        return "consume"
    if state == "closed":
        return "release"
    return "reserve"


@dataclass(frozen=True, slots=True)
class Step:
    kind: Kind
    from_stock: bool = True  # False: a part used that no reservation covered and none was free for


def settle(use: Use | None, asked: Need, free: int) -> tuple[Use | None, tuple[Step, ...]]:
    """Where a ticket's part use goes from `use` when the ticket asks `asked`, with `free`
    parts free at its depot, and the stock moves that takes. Consumed and released are final."""
    if use in ("consumed", "released") or asked == "none":
        return use, ()
    if asked == "reserve":
        if use == "reserved":
            return use, ()
        return ("reserved", (Step("reserve"),)) if free >= 1 else ("waiting", ())
    if asked == "consume":
        if use == "reserved":
            return "consumed", (Step("consume"),)
        # Never reserved (none was free, or the dispatch came with the resolution): one is
        # taken now if one is free; otherwise the part came from elsewhere, and its use is
        # recorded for the bill without touching the depot's stock.
        if free >= 1:
            return "consumed", (Step("reserve"), Step("consume"))
        return "consumed", (Step("consume", from_stock=False),)
    if use == "reserved":
        return "released", (Step("release"),)
    return ("released", ()) if use == "waiting" else (None, ())


@dataclass(frozen=True, slots=True)
class Stock:
    """One part at one depot."""

    on_hand: int
    reserved: int = 0
    low_at: int = DEFAULT_LOW_AT

    @property
    def free(self) -> int:
        return self.on_hand - self.reserved

    @property
    def low(self) -> bool:
        return self.free <= self.low_at


def after(s: Stock, kind: Kind, quantity: int = 0) -> Stock:
    """The stock after one move: a receipt adds `quantity`, a count finds `quantity` on hand,
    a reservation holds one, a consumption takes the one held, a release lets it go."""
    if kind == "receipt":
        return replace(s, on_hand=s.on_hand + quantity)
    if kind == "count":
        return replace(s, on_hand=quantity)
    if kind == "reserve":
        return replace(s, reserved=s.reserved + 1)
    if kind == "consume":
        return replace(s, on_hand=s.on_hand - 1, reserved=s.reserved - 1)
    return replace(s, reserved=s.reserved - 1)


def went_low(before: Stock | None, now: Stock | None) -> bool:
    return now is not None and now.low and (before is None or not before.low)


def billable(in_warranty: object) -> bool | None:
    """Parts are charged at cost out of warranty, free within it; unknown stays unknown."""
    return (not in_warranty) if isinstance(in_warranty, bool) else None


def view(
    site: str,
    part: str | None,
    state: str,
    use: Use | None,
    depot: str | None,
    stock: Stock | None,
    bill: bool | None = None,
) -> dict[str, object] | None:
    """What the desk says of a ticket's part: where it comes from, whether it is held for the
    ticket, and whether it is out (a dispatched ticket waiting for one, or an acknowledged
    one whose depot has none free: its repair clock cannot be met)."""
    if part is None:
        return None
    free = None if depot is None else (stock.free if stock is not None else 0)
    out = (use == "waiting" and state in AWAITING) or (
        use is None and state in AWAITING and free is not None and free < 1
    )
    if depot is None:
        why = f"no depot serves site {site}: map it to one, or name a default depot"
    elif out:
        why = f"part out: none free at depot {depot}; the repair clock cannot be met until one comes in"
    elif use == "reserved":
        why = f"reserved at depot {depot}"
    elif use == "consumed":
        why = f"used from depot {depot}, {BILLING[bill]}"
    elif use == "released":
        why = f"released at depot {depot}"
    else:
        why = f"{free} free at depot {depot}"
    return {"name": part, "depot": depot, "use": use, "out": out, "free": free, "billable": bill, "why": why}


@cache
def catalogue() -> frozenset[str]:
    """The parts the shipped diagnoses name."""
    causes = load_causes()
    return frozenset(p for cands in causes.faults.values() for c in cands if (p := part_of({"part": c.part})))


# --- the ledger in PostgreSQL --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Low:
    """A part that went low at a depot."""

    depot: str
    part: str
    free: int
    low_at: int

    def describe(self) -> str:
        return f"depot {self.depot}: {self.part} is low ({self.free} free, low at {self.low_at})"


async def _rows(
    conn: Conn, query: LiteralString, params: Sequence[object] | Mapping[str, object]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def lock_stock(conn: Conn, depot: str, part: str) -> Stock | None:
    """The line, locked for this transaction; None if the depot never held the part."""
    rows = await _rows(
        conn,
        "SELECT on_hand, reserved, low_at FROM depot_stock WHERE depot = %s AND part = %s FOR UPDATE",
        (depot, part),
    )
    return Stock(rows[0]["on_hand"], rows[0]["reserved"], rows[0]["low_at"]) if rows else None


async def write_stock(conn: Conn, depot: str, part: str, s: Stock, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO depot_stock (depot, part, on_hand, reserved, low_at, changed_at) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (depot, part) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved,"
        " low_at = excluded.low_at, changed_at = excluded.changed_at",
        (depot, part, s.on_hand, s.reserved, s.low_at, at),
    )


async def record(
    conn: Conn,
    at: datetime,
    depot: str,
    part: str,
    kind: Kind,
    before: Stock | None,
    now: Stock | None,
    *,
    site: str | None = None,
    ref: str | None = None,
    bill: bool | None = None,
    by: str = BY,
    note: str = "",
) -> bool:
    """One line of the journal, and the stock line as it now is (the caller holds its lock);
    False, and nothing changed, when this ticket's move of this kind is recorded already."""
    on_hand, reserved = (now.on_hand, now.reserved) if now else (0, 0)
    cur = await conn.execute(
        "INSERT INTO part_moves (at, depot, part, kind, quantity, on_hand, reserved, site_id, ticket_ref, billable,"
        " by_name, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (site_id, ticket_ref, kind) WHERE ticket_ref IS NOT NULL DO NOTHING",
        (
            at,
            depot,
            part,
            kind,
            on_hand - (before.on_hand if before else 0),
            on_hand,
            reserved,
            site,
            ref,
            bill,
            by,
            note,
        ),
    )
    if cur.rowcount != 1:
        return False
    if now is not None and now != before:
        await write_stock(conn, depot, part, now, at)
    return True


# The tickets just written whose part has something to do: dispatched with no part use yet,
# or resolved or closed with one still waiting or reserved. Most batches find none.
CANDIDATES = """
SELECT t.site_id, t.ticket_id::text AS ref, t.state,
       t.payload ->> 'dispatched_at' AS dispatched_at, t.payload ->> 'on_site_at' AS on_site_at,
       t.payload ->> 'resolved_at' AS resolved_at, t.payload -> 'diagnosis' ->> 'part' AS part,
       t.payload -> 'in_warranty' AS in_warranty, u.state AS use, u.part AS use_part, u.depot AS use_depot,
       coalesce(ds.depot, (SELECT d.name FROM depots d WHERE d.is_default)) AS depot
FROM unnest(%s::text[], %s::bigint[]) AS k(s, i)
JOIN tickets t ON t.site_id = k.s AND t.ticket_id = k.i
LEFT JOIN part_uses u ON u.site_id = t.site_id AND u.ticket_ref = t.ticket_id::text
LEFT JOIN depot_sites ds ON ds.site_id = t.site_id
WHERE CASE WHEN u.state IS NULL
           THEN (t.state IN ('dispatched', 'on_site') OR t.payload ->> 'dispatched_at' IS NOT NULL)
                AND lower(btrim(coalesce(t.payload -> 'diagnosis' ->> 'part', ''))) NOT IN ('', 'none')
           ELSE u.state IN ('waiting', 'reserved') AND t.state IN ('resolved', 'closed') END
"""


@dataclass(frozen=True, slots=True)
class _Work:
    depot: str
    part: str
    site: str
    ref: str
    asked: Need
    bill: bool | None
    dispatched_at: datetime


async def settle_tickets(conn: Conn, keys: Iterable[tuple[str, int]], at: datetime) -> list[Low]:
    """Reserve, consume or release the parts of these (site, ticket) as their stored versions
    ask, in the caller's transaction (which has written, and so locked, their rows); the
    parts that went low."""
    keys = sorted(keys)
    if not keys:
        return []
    rows = await _rows(conn, CANDIDATES, ([k[0] for k in keys], [k[1] for k in keys]))
    work = []
    for r in rows:
        depot, part = (r["use_depot"], r["use_part"]) if r["use"] else (r["depot"], part_of({"part": r["part"]}))
        asked = need(r["state"], r)
        if depot is None or part is None or asked == "none":
            continue  # no depot serves the site, or nothing to do
        stamp = r["dispatched_at"] or r["on_site_at"]
        dispatched = parse_iso(stamp) if isinstance(stamp, str) else at
        work.append(_Work(depot, part, r["site_id"], r["ref"], asked, billable(r["in_warranty"]), dispatched))
    low = []
    for w in sorted(work, key=lambda w: (w.depot, w.part, w.site, w.ref)):
        if (got := await _settle_one(conn, w, at)) is not None:
            low.append(got)
    return low


async def _settle_one(conn: Conn, w: _Work, at: datetime) -> Low | None:
    # A line for every part a ticket of the depot's sites asks for, at 0 if the depot never
    # held it: it shows as low, and a receipt racing this transaction waits for it.
    cur = await conn.execute(
        "INSERT INTO depot_stock (depot, part, on_hand, reserved, low_at, changed_at) VALUES (%s, %s, 0, 0, %s, %s)"
        " ON CONFLICT (depot, part) DO NOTHING",
        (w.depot, w.part, DEFAULT_LOW_AT, at),
    )
    created = cur.rowcount == 1
    first = await lock_stock(conn, w.depot, w.part)
    rows = await _rows(
        conn, "SELECT state FROM part_uses WHERE site_id = %s AND ticket_ref = %s FOR UPDATE", (w.site, w.ref)
    )
    use: Use | None = rows[0]["state"] if rows else None
    new, steps = settle(use, w.asked, first.free if first else 0)
    if new is None or (new == use and not steps):
        return None
    stock = first
    for step in steps:
        moved = after(stock, step.kind) if stock is not None and step.from_stock else stock
        note = "" if step.from_stock else "none was free at the depot: the part came from elsewhere"
        if await record(
            conn, at, w.depot, w.part, step.kind, stock, moved, site=w.site, ref=w.ref, bill=w.bill, note=note
        ):
            stock = moved
    await conn.execute(
        "INSERT INTO part_uses (site_id, ticket_ref, part, depot, state, billable, dispatched_at, changed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, ticket_ref) DO UPDATE SET"
        " state = excluded.state, billable = excluded.billable, changed_at = excluded.changed_at",
        (w.site, w.ref, w.part, w.depot, new, w.bill, w.dispatched_at, at),
    )
    if stock is not None and went_low(None if created else first, stock):
        return Low(w.depot, w.part, stock.free, stock.low_at)
    return None


async def allocate(conn: Conn, depot: str, part: str, at: datetime, by: str, note: str) -> list[tuple[str, str]]:
    """Give the parts free at the depot to the tickets waiting for one, oldest dispatch first;
    the (site, ref) of those served."""
    stock = await lock_stock(conn, depot, part)
    if stock is None or stock.free < 1:
        return []
    waiting = await _rows(
        conn,
        "SELECT site_id, ticket_ref, billable FROM part_uses WHERE depot = %s AND part = %s AND state = 'waiting'"
        " ORDER BY dispatched_at, site_id, ticket_ref LIMIT %s FOR UPDATE",
        (depot, part, stock.free),
    )
    served = []
    for u in waiting:
        moved = after(stock, "reserve")
        site, ref = str(u["site_id"]), str(u["ticket_ref"])
        if await record(
            conn, at, depot, part, "reserve", stock, moved, site=site, ref=ref, bill=u["billable"], by=by, note=note
        ):
            stock = moved
            await conn.execute(
                "UPDATE part_uses SET state = 'reserved', changed_at = %s WHERE site_id = %s AND ticket_ref = %s",
                (at, site, ref),
            )
            served.append((site, ref))
    return served


# What the desk needs to say of each ticket's part: its use, its depot and the depot's line.
VIEWS = """
SELECT k.n, u.state AS use, u.part AS use_part, u.billable, coalesce(u.depot, ds.depot, d.name) AS depot,
       st.on_hand, st.reserved, st.low_at
FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[]) AS k(n, s, r, p)
LEFT JOIN part_uses u ON u.site_id = k.s AND u.ticket_ref = k.r
LEFT JOIN depot_sites ds ON ds.site_id = k.s
LEFT JOIN depots d ON d.is_default
LEFT JOIN depot_stock st ON st.depot = coalesce(u.depot, ds.depot, d.name) AND st.part = coalesce(u.part, k.p)
"""


async def views(conn: Conn, tickets: Sequence[Mapping[str, Any]]) -> list[dict[str, object] | None]:
    """`view` of each ticket as the desk shows tickets (site, ref, state, diagnosis), in order."""
    named = [(i, t, part_of(t.get("diagnosis"))) for i, t in enumerate(tickets)]
    named = [(i, t, p) for i, t, p in named if p is not None and not str(t["ref"]).startswith("c")]
    out: list[dict[str, object] | None] = [None] * len(tickets)
    if not named:
        return out
    rows = await _rows(
        conn,
        VIEWS,
        (
            [i for i, _, _ in named],
            [str(t["site"]) for _, t, _ in named],
            [str(t["ref"]) for _, t, _ in named],
            [p for _, _, p in named],
        ),
    )
    for r in rows:
        t = tickets[r["n"]]
        part = r["use_part"] or part_of(t.get("diagnosis"))
        stock = Stock(r["on_hand"], r["reserved"], r["low_at"]) if r["on_hand"] is not None else None
        out[r["n"]] = view(str(t["site"]), part, str(t["state"]), r["use"], r["depot"], stock, r["billable"])
    return out
