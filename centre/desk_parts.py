"""The desk's spare parts: the depots with what each holds of each part (on hand, reserved,
free, low), the tickets whose part is out, and the journal of moves (receipts, counts,
reservations, consumptions, releases, with their ticket, site and whether the part is
charged). A dispatcher names the depots, the default one, and which sites each serves, counts
stock and sets when a part is low, and lets a ticket's part go; an engineer or dispatcher
records parts received. Every change is audited, refusals too; parts received or freed go
to the tickets waiting for them at once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alarmgw.clock import iso

from . import desk_auth as auth
from . import desk_store, parts
from .desk_api import need  # the desk's one permission check; desk_api takes this router in at build time
from .desk_auth import Permission, User
from .parts import MAX_ON_HAND, MAX_PART, Kind, Stock

log = logging.getLogger(__name__)
router = APIRouter()

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # a depot's name, like a site's id
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
MAX_RECEIPT = 10_000  # parts in one delivery; more is a typo
MAX_LIST = 5000
MAX_SITES = 1000  # sites mapped in one request
DepotName = Annotated[str, Path(pattern=NAME, description="a depot's name")]
SiteId = Annotated[str, Path(pattern=NAME)]
Ref = Annotated[str, Path(pattern=r"^[0-9]{1,18}$", description="a gateway ticket's id")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Part(_Strict):
    part: str = Field(
        min_length=1, max_length=MAX_PART, pattern=PRINTABLE, description="as the diagnosis names it: battery, PSU ..."
    )

    @field_validator("part")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        value = value.strip()
        if not value or value.lower() in parts.NO_PART:
            raise ValueError("name the part, as the diagnosis names it (battery, PSU ...)")
        return value


Note = Annotated[str, Field(max_length=500, pattern=PRINTABLE)]


class DepotIn(_Strict):
    default: bool = Field(default=False, description="serves every site no other depot serves")


class SitesIn(_Strict):
    sites: list[Annotated[str, Field(pattern=NAME)]] = Field(min_length=1, max_length=MAX_SITES)

    @field_validator("sites")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ReceiptIn(_Part):
    quantity: int = Field(strict=True, ge=1, le=MAX_RECEIPT)
    low_at: int | None = Field(default=None, strict=True, ge=0, le=MAX_ON_HAND, description="low at this many free")
    note: Note = ""
    new_part: bool = Field(default=False, description="stock a part no diagnosis names and no depot holds yet")


class CountIn(_Part):
    on_hand: int = Field(strict=True, ge=0, le=MAX_ON_HAND, description="what the count found")
    note: Note = ""


class ThresholdIn(_Part):
    low_at: int = Field(strict=True, ge=0, le=MAX_ON_HAND, description="low when this many or fewer are free")


class ReleaseIn(_Strict):
    note: Note = ""


def _desk(request: Request) -> Any:
    return request.app.state.desk


def _line(depot: str, part: str, s: Stock) -> dict[str, object]:
    return {
        "depot": depot,
        "part": part,
        "on_hand": s.on_hand,
        "reserved": s.reserved,
        "free": s.free,
        "low_at": s.low_at,
        "low": s.low,
    }


async def _rows(conn: Any, query: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows: list[dict[str, Any]] = await cur.fetchall()
        return rows


async def _unknown_depot(conn: Any, depot: str) -> tuple[int, str] | None:
    if await _rows(conn, "SELECT 1 FROM depots WHERE name = %s", (depot,)):
        return None
    names = [str(r["name"]) for r in await _rows(conn, "SELECT name FROM depots ORDER BY name LIMIT 21")]
    known = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none yet"
    return 404, f"no depot {depot!r} (depots: {known}); a dispatcher makes one with PUT /api/parts/depots/NAME"


async def _not_stocked(conn: Any, depot: str, part: str) -> tuple[int, str]:
    held = [
        str(r["part"])
        for r in await _rows(conn, "SELECT part FROM depot_stock WHERE depot = %s ORDER BY part LIMIT 30", (depot,))
    ]
    return 404, f"depot {depot} holds no {part[:60]!r} (it holds: {', '.join(held) or 'nothing yet'})"


async def annotate(conn: Any, tickets: list[dict[str, object]]) -> None:
    """Each ticket as the desk shows it gets its `part`: None, or where it comes from and whether it is out."""
    for t, v in zip(tickets, await parts.views(conn, tickets), strict=True):
        t["part"] = v


@router.get(
    "/api/parts", summary="Depots with their stock (on hand, reserved, free, low), and the tickets whose part is out"
)
async def stock(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    depot: Annotated[str | None, Query(pattern=NAME)] = None,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    async with desk.pool.connection() as conn:
        depots = await _rows(
            conn,
            "SELECT d.name, d.is_default, (SELECT count(*) FROM depot_sites s WHERE s.depot = d.name) AS sites"
            " FROM depots d WHERE %s::text IS NULL OR d.name = %s ORDER BY d.name",
            (depot, depot),
        )
        lines = await _rows(
            conn,
            "SELECT depot, part, on_hand, reserved, low_at FROM depot_stock WHERE %s::text IS NULL OR depot = %s"
            " ORDER BY depot, part LIMIT %s",
            (depot, depot, MAX_LIST),
        )
        awaiting = await _rows(
            conn,
            "SELECT t.site_id AS site, t.ticket_id::text AS ref, t.state, t.payload -> 'diagnosis' AS diagnosis,"
            " t.payload -> 'clocks' -> 'repair' ->> 'due' AS repair_due FROM tickets t"
            " WHERE t.state IN ('acknowledged', 'dispatched', 'on_site')"
            " AND lower(btrim(coalesce(t.payload -> 'diagnosis' ->> 'part', ''))) NOT IN ('', 'none')"
            " ORDER BY t.opened_at, t.site_id, t.ticket_id LIMIT %s",
            (MAX_LIST,),
        )
        seen = await parts.views(conn, awaiting)
    by_depot: dict[str, list[dict[str, object]]] = {}
    for r in lines:
        by_depot.setdefault(r["depot"], []).append(
            _line(r["depot"], r["part"], Stock(r["on_hand"], r["reserved"], r["low_at"]))
        )
    out = [
        {"site": t["site"], "ref": t["ref"], "state": t["state"], "repair_due": t["repair_due"], **v}
        for t, v in zip(awaiting, seen, strict=True)
        if v is not None and v["out"] and (depot is None or v["depot"] == depot)
    ]
    return {
        "at": iso(now),
        "depots": [
            {"name": d["name"], "default": d["is_default"], "sites": d["sites"], "stock": by_depot.get(d["name"], [])}
            for d in depots
        ],
        "low": [x for xs in by_depot.values() for x in xs if x["low"]],
        "out": out,
        "truncated": len(lines) >= MAX_LIST or len(awaiting) >= MAX_LIST,
    }


@router.get("/api/parts/moves", summary="The journal of parts moves, newest first")
async def moves(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    depot: Annotated[str | None, Query(pattern=NAME)] = None,
    part: Annotated[str | None, Query(max_length=MAX_PART, pattern=PRINTABLE)] = None,
    site: Annotated[str | None, Query(pattern=NAME)] = None,
    kind: Kind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, object]:
    desk = _desk(request)
    async with desk.pool.connection() as conn:
        rows = await _rows(
            conn,
            "SELECT * FROM part_moves WHERE (%s::text IS NULL OR depot = %s) AND (%s::text IS NULL OR part = %s)"
            " AND (%s::text IS NULL OR site_id = %s) AND (%s::text IS NULL OR kind = %s) ORDER BY id DESC LIMIT %s",
            (depot, depot, part, part, site, site, kind, kind, limit),
        )
    return {
        "at": iso(desk.clock.now()),
        "moves": [
            {
                "id": r["id"],
                "at": iso(r["at"]),
                "depot": r["depot"],
                "part": r["part"],
                "kind": r["kind"],
                "quantity": r["quantity"],
                "on_hand": r["on_hand"],
                "reserved": r["reserved"],
                "site": r["site_id"],
                "ticket": r["ticket_ref"],
                "billable": r["billable"],
                "by": r["by_name"],
                "note": r["note"],
            }
            for r in rows
        ],
    }


@router.get("/api/parts/depots/{depot}", summary="One depot: its stock and the sites mapped to it")
async def one_depot(
    request: Request, _u: Annotated[User, Depends(need(Permission.READ))], depot: DepotName
) -> dict[str, object]:
    desk = _desk(request)
    async with desk.pool.connection() as conn:
        found = await _rows(conn, "SELECT name, is_default FROM depots WHERE name = %s", (depot,))
        if not found:
            why = await _unknown_depot(conn, depot)
            raise HTTPException(*(why or (404, f"no depot {depot!r}")))
        lines = await _rows(
            conn, "SELECT part, on_hand, reserved, low_at FROM depot_stock WHERE depot = %s ORDER BY part", (depot,)
        )
        sites = await _rows(
            conn, "SELECT site_id FROM depot_sites WHERE depot = %s ORDER BY site_id LIMIT %s", (depot, MAX_LIST)
        )
    return {
        "at": iso(desk.clock.now()),
        "name": depot,
        "default": found[0]["is_default"],
        "stock": [_line(depot, r["part"], Stock(r["on_hand"], r["reserved"], r["low_at"])) for r in lines],
        "sites": [r["site_id"] for r in sites],
    }


@router.put("/api/parts/depots/{depot}", summary="Make a depot, or change whether it is the default one")
async def put_depot(
    request: Request,
    response: Response,
    user: Annotated[User, Depends(need(Permission.ASSIGN, "depot"))],
    depot: DepotName,
    body: DepotIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    async with desk.pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (parts.DEPOT_LOCK,))
        existed = bool(await _rows(conn, "SELECT 1 FROM depots WHERE name = %s", (depot,)))
        if body.default:
            await conn.execute("UPDATE depots SET is_default = false WHERE is_default AND name <> %s", (depot,))
        await conn.execute(
            "INSERT INTO depots (name, is_default, created_at, created_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET is_default = excluded.is_default",
            (depot, body.default, now, user.name),
        )
        await auth.audit(
            conn, now, user.name, "depot", f"depot/{depot}", "ok", {"default": body.default, "new": not existed}
        )
    response.status_code = 200 if existed else 201
    return {"name": depot, "default": body.default}


@router.post("/api/parts/depots/{depot}/sites", summary="The depot serves these sites from now on")
async def map_sites(
    request: Request,
    user: Annotated[User, Depends(need(Permission.ASSIGN, "depot_sites"))],
    depot: DepotName,
    body: SitesIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    target = f"depot/{depot}"
    async with desk.pool.connection() as conn, conn.transaction():
        why = await _unknown_depot(conn, depot)
        unheard: list[str] = []
        if why is None:
            await conn.execute(
                "INSERT INTO depot_sites (site_id, depot, set_at, set_by)"
                " SELECT s, %s, %s, %s FROM unnest(%s::text[]) s"
                " ON CONFLICT (site_id) DO UPDATE SET depot = excluded.depot, set_at = excluded.set_at,"
                " set_by = excluded.set_by",
                (depot, now, user.name, body.sites),
            )
            heard = await _rows(conn, "SELECT id FROM sites WHERE id = ANY(%s)", (body.sites,))
            known = {str(r["id"]) for r in heard}
            unheard = [s for s in body.sites if s not in known]
        detail = {"sites": len(body.sites), "first": body.sites[:20]}
        await auth.audit(conn, now, user.name, "depot_sites", target, f"refused: {why[1]}" if why else "ok", detail)
    if why:
        raise HTTPException(*why)
    return {"depot": depot, "sites": len(body.sites), "not_heard_from": unheard[:100]}


async def _stocked(
    conn: parts.Conn,
    now: datetime,
    depot: str,
    part: str,
    kind: Kind,
    held: Stock | None,
    line: Stock,
    user: User,
    note: str,
) -> tuple[list[tuple[str, str]], Stock | None]:
    """Record a change of stock made at the desk, hand what it frees to the tickets waiting
    (oldest dispatch first), and read the line again: (the tickets served, the line)."""
    await parts.record(conn, now, depot, part, kind, held, line, by=user.name, note=note)
    why = "on receipt" if kind == "receipt" else "after a count"
    served = await parts.allocate(conn, depot, part, now, user.name, why)
    return served, await parts.lock_stock(conn, depot, part)


def _stock_answer(depot: str, part: str, line: Stock, served: list[tuple[str, str]]) -> dict[str, object]:
    return {**_line(depot, part, line), "reserved_for": [{"site": s, "ref": r} for s, r in served]}


@router.post("/api/parts/depots/{depot}/receipt", summary="Parts received at a depot; they go to tickets waiting first")
async def receipt(
    request: Request,
    user: Annotated[User, Depends(need(Permission.MOVE, "part_receipt"))],
    depot: DepotName,
    body: ReceiptIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    why: tuple[int, str] | None = None
    served: list[tuple[str, str]] = []
    line: Stock | None = None
    async with desk.pool.connection() as conn, conn.transaction():
        why = await _unknown_depot(conn, depot)
        if why is None:
            held = await parts.lock_stock(conn, depot, body.part)
            if held is None and not body.new_part and body.part not in parts.catalogue():
                stocked = await _rows(conn, "SELECT 1 FROM depot_stock WHERE part = %s LIMIT 1", (body.part,))
                if not stocked:
                    known = ", ".join(sorted(parts.catalogue()))
                    why = (
                        422,
                        f"part: no diagnosis names {body.part[:60]!r} and no depot holds it (known: {known});"
                        ' to stock a new part, say "new_part": true',
                    )
            if why is None and (held.on_hand if held else 0) + body.quantity > MAX_ON_HAND:
                why = (422, f"quantity: a depot holds at most {MAX_ON_HAND} of a part")
            if why is None:
                base = held or Stock(0, 0, parts.DEFAULT_LOW_AT)
                line = parts.after(base, "receipt", body.quantity)
                if body.low_at is not None:
                    line = Stock(line.on_hand, line.reserved, body.low_at)
                served, line = await _stocked(conn, now, depot, body.part, "receipt", held, line, user, body.note)
        detail = {"part": body.part, "quantity": body.quantity, "reserved_for": [f"{s}/{r}" for s, r in served]}
        result = f"refused: {why[1]}" if why else "ok"
        await auth.audit(conn, now, user.name, "part_receipt", f"depot/{depot}", result, detail)
    if why:
        raise HTTPException(*why)
    assert line is not None
    return _stock_answer(depot, body.part, line, served)


@router.post("/api/parts/depots/{depot}/count", summary="A count of a part at a depot corrects what is on hand")
async def count(
    request: Request,
    user: Annotated[User, Depends(need(Permission.ASSIGN, "part_count"))],
    depot: DepotName,
    body: CountIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    served: list[tuple[str, str]] = []
    line: Stock | None = None
    async with desk.pool.connection() as conn, conn.transaction():
        why = await _unknown_depot(conn, depot)
        held = None
        if why is None:
            held = await parts.lock_stock(conn, depot, body.part)
            if held is None:
                why = await _not_stocked(conn, depot, body.part)
            elif body.on_hand < held.reserved:
                why = (
                    409,
                    f"{held.reserved} of {body.part!r} at depot {depot} are reserved for tickets, more than"
                    f" the {body.on_hand} counted: release the reservations of the parts that are gone first",
                )
        if why is None and held is not None:
            line = parts.after(held, "count", body.on_hand)
            served, line = await _stocked(conn, now, depot, body.part, "count", held, line, user, body.note)
            if line is not None and parts.went_low(held, line):
                log.warning("spare parts: %s", parts.Low(depot, body.part, line.free, line.low_at).describe())
        detail = {"part": body.part, "on_hand": body.on_hand, "was": held.on_hand if held else None}
        result = f"refused: {why[1]}" if why else "ok"
        await auth.audit(conn, now, user.name, "part_count", f"depot/{depot}", result, detail)
    if why:
        raise HTTPException(*why)
    assert line is not None
    return _stock_answer(depot, body.part, line, served)


@router.post("/api/parts/depots/{depot}/threshold", summary="When a part at a depot is low: this many free or fewer")
async def threshold(
    request: Request,
    user: Annotated[User, Depends(need(Permission.ASSIGN, "part_threshold"))],
    depot: DepotName,
    body: ThresholdIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    line: Stock | None = None
    async with desk.pool.connection() as conn, conn.transaction():
        why = await _unknown_depot(conn, depot)
        if why is None:
            held = await parts.lock_stock(conn, depot, body.part)
            if held is None:
                why = await _not_stocked(conn, depot, body.part)
            else:
                line = Stock(held.on_hand, held.reserved, body.low_at)
                await parts.write_stock(conn, depot, body.part, line, now)
        detail = {"part": body.part, "low_at": body.low_at}
        result = f"refused: {why[1]}" if why else "ok"
        await auth.audit(conn, now, user.name, "part_threshold", f"depot/{depot}", result, detail)
    if why:
        raise HTTPException(*why)
    assert line is not None
    return _line(depot, body.part, line)


@router.post("/api/tickets/{site}/{ref}/part/release", summary="Let a ticket's reserved or awaited part go")
async def release(
    request: Request,
    user: Annotated[User, Depends(need(Permission.ASSIGN, "part_release"))],
    site: SiteId,
    ref: Ref,
    body: ReleaseIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    why: tuple[int, str] | None = None
    async with desk.pool.connection() as conn, conn.transaction():
        found = await _rows(
            conn, "SELECT depot, part FROM part_uses WHERE site_id = %s AND ticket_ref = %s", (site, ref)
        )
        if not found:
            why = (404, f"no part is reserved or awaited for ticket {ref} at site {site}")
        else:
            depot, part = str(found[0]["depot"]), str(found[0]["part"])
            held = await parts.lock_stock(conn, depot, part)  # the line first, as ingest locks them
            use = (
                await _rows(
                    conn,
                    "SELECT state, billable FROM part_uses WHERE site_id = %s AND ticket_ref = %s FOR UPDATE",
                    (site, ref),
                )
            )[0]
            _, steps = parts.settle(use["state"], "release", held.free if held else 0)
            if use["state"] not in ("waiting", "reserved"):
                why = (409, f"the part of ticket {ref} at site {site} is {use['state']} already")
            else:
                line = held
                for step in steps:
                    moved = parts.after(line, step.kind) if line is not None else None
                    if await parts.record(
                        conn,
                        now,
                        depot,
                        part,
                        step.kind,
                        line,
                        moved,
                        site=site,
                        ref=ref,
                        bill=use["billable"],
                        by=user.name,
                        note=body.note,
                    ):
                        line = moved
                await conn.execute(
                    "UPDATE part_uses SET state = 'released', changed_at = %s WHERE site_id = %s AND ticket_ref = %s",
                    (now, site, ref),
                )
                await parts.allocate(conn, depot, part, now, user.name, f"released by {site}/{ref}")
        result = f"refused: {why[1]}" if why else "ok"
        await auth.audit(conn, now, user.name, "part_release", f"{site}/{ref}", result, {"note": body.note})
        got = await desk_store.ticket(conn, site, ref, now)
        if got is not None:
            await annotate(conn, [got])
    if why:
        raise HTTPException(*why)
    return {"detail": f"the part of ticket {ref} at site {site} is released", "part": got["part"] if got else None}
