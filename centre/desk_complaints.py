"""The desk's complaints: recorded by an engineer or dispatcher with the customer, site,
channel, text and the tickets they concern; acknowledged, then resolved, each against its
clock (`desk.complaints`); every step stamped in the complaint's history and audited; and a
report of the clocks met beside the SLA report."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alarmgw.clock import iso

from . import desk_auth as auth
from . import desk_store
from .complaints import Channel, clocks, report
from .desk_api import need  # the desk's one permission check; desk_api takes this router in at build time
from .desk_auth import Permission, User

router = APIRouter()

SITE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # text may hold line breaks, nothing else unseen
RECEIVED_RANGE = timedelta(days=30)  # a complaint recorded later than this after it came is a typo
MAX_LIST = 1000
ComplaintId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class ComplaintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str = Field(pattern=SITE)
    customer: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    channel: Channel
    text: str = Field(min_length=1, max_length=4000, pattern=PRINTABLE)
    tickets: list[str] = Field(default=[], max_length=50, description="the site's tickets it concerns: 17, c3")
    received_at: datetime | None = Field(
        default=None, description="when it came (ISO 8601 with offset); now if left out"
    )

    @field_validator("tickets")
    @classmethod
    def _refs(cls, refs: list[str]) -> list[str]:
        for r in refs:
            if not desk_store.REF.match(r):
                raise ValueError(f"{r[:20]!r} is not a ticket ref (17, or c3 for the centre's own)")
        return refs


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=4000, pattern=PRINTABLE)


def _desk(request: Request) -> Any:
    return request.app.state.desk


def _out(r: dict[str, Any], desk: Any, now: datetime) -> dict[str, object]:
    return {
        "id": r["id"],
        "site": r["site_id"],
        "customer": r["customer"],
        "channel": r["channel"],
        "text": r["body"],
        "tickets": list(r["tickets"]),
        "received_at": iso(r["received_at"]),
        "recorded_by": r["recorded_by"],
        "acknowledged_at": iso(r["acknowledged_at"]) if r["acknowledged_at"] else None,
        "acknowledged_by": r["acknowledged_by"],
        "resolved_at": iso(r["resolved_at"]) if r["resolved_at"] else None,
        "resolved_by": r["resolved_by"],
        "resolution": r["resolution"],
        "clocks": clocks(r["received_at"], r["acknowledged_at"], r["resolved_at"], desk.config.complaints, now),
        "history": r["history"],
    }


async def _one(conn: Any, complaint_id: int, lock: bool = False) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM complaints WHERE id = %s" + (" FOR UPDATE" if lock else ""), (complaint_id,))
        row: dict[str, Any] | None = await cur.fetchone()
        return row


@router.post("/api/complaints", status_code=201, summary="Record a customer's complaint")
async def record(
    request: Request, user: Annotated[User, Depends(need(Permission.MOVE, "complaint"))], body: ComplaintIn
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    received = body.received_at or now
    if received.tzinfo is None:
        raise HTTPException(422, "received_at: give its UTC offset (Z or +01:00)")
    if received > now or now - received > RECEIVED_RANGE:
        raise HTTPException(422, f"received_at: within the last {RECEIVED_RANGE.days} days, not in the future")
    step = {"at": iso(now), "action": "recorded", "by": user.name, "note": ""}
    async with desk.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO complaints (site_id, customer, channel, body, tickets, received_at, recorded_by, history)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
            (body.site, body.customer, body.channel, body.text, body.tickets, received, user.name, json.dumps([step])),
        )
        row = await cur.fetchone()
        assert row is not None
        complaint_id = int(row[0])
        await auth.audit(conn, now, user.name, "complaint", f"complaint/{complaint_id}", "ok", {"site": body.site})
        got = await _one(conn, complaint_id)
    assert got is not None
    return _out(got, desk, now)


@router.get("/api/complaints", summary="Complaints, open ones first, nearest due first")
async def listing(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    open: Annotated[bool, Query(description="only those not resolved")] = True,
    site: Annotated[str | None, Query(pattern=SITE)] = None,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    where, params = ["true"], []
    if open:
        where.append("resolved_at IS NULL")
    if site:
        where.append("site_id = %s")
        params.append(site)
    async with desk.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM complaints WHERE " + " AND ".join(where) + " ORDER BY received_at LIMIT %s",
            (*params, MAX_LIST),
        )
        rows = await cur.fetchall()
    return {"at": iso(now), "complaints": [_out(r, desk, now) for r in rows]}


@router.get("/api/complaints/report", summary="Share of complaint clocks met since a day (UTC)")
async def complaints_report(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    since: Annotated[date, Query(description="YYYY-MM-DD, UTC")],
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    async with desk.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT received_at, acknowledged_at, resolved_at FROM complaints WHERE received_at >= %s",
            (datetime.combine(since, datetime.min.time()).replace(tzinfo=now.tzinfo),),
        )
        rows = await cur.fetchall()
    rules = desk.config.complaints
    return {
        "since": since.isoformat(),
        "at": iso(now),
        "complaints": len(rows),
        "clocks": report(clocks(r[0], r[1], r[2], rules, now) for r in rows),
    }


@router.get("/api/complaints/{complaint_id}", summary="One complaint with its history")
async def one(
    request: Request, _u: Annotated[User, Depends(need(Permission.READ))], complaint_id: ComplaintId
) -> dict[str, object]:
    desk = _desk(request)
    async with desk.pool.connection() as conn:
        got = await _one(conn, complaint_id)
    if got is None:
        raise HTTPException(404, f"no complaint {complaint_id}")
    return _out(got, desk, desk.clock.now())


@router.post("/api/complaints/{complaint_id}/{step}", summary="Acknowledge a complaint, or resolve it")
async def step(
    request: Request,
    user: Annotated[User, Depends(need(Permission.MOVE, "complaint"))],
    complaint_id: ComplaintId,
    step: Annotated[str, Path(pattern="^(acknowledge|resolve)$")],
    body: StepIn,
) -> dict[str, object]:
    desk = _desk(request)
    now = desk.clock.now()
    target = f"complaint/{complaint_id}"
    why: tuple[int, str] | None = None
    async with desk.pool.connection() as conn, conn.transaction():
        got = await _one(conn, complaint_id, lock=True)
        if got is None:
            why = (404, f"no complaint {complaint_id}")
        elif got["resolved_at"] is not None:
            why = (409, f"complaint {complaint_id} is resolved already")
        elif step == "acknowledge" and got["acknowledged_at"] is not None:
            why = (409, f"complaint {complaint_id} was acknowledged already")
        elif step == "resolve" and got["acknowledged_at"] is None:
            why = (409, f"complaint {complaint_id}: acknowledge it first")
        elif step == "resolve" and not body.note.strip():
            why = (422, "note: say how it was resolved")
        if why is None:
            entry = json.dumps([{"at": iso(now), "action": step, "by": user.name, "note": body.note}])
            if step == "acknowledge":
                sql = "UPDATE complaints SET acknowledged_at = %s, acknowledged_by = %s, history = history || %s::jsonb"
                params: tuple[object, ...] = (now, user.name, entry)
            else:
                sql = (
                    "UPDATE complaints SET resolved_at = %s, resolved_by = %s, resolution = %s,"
                    " history = history || %s::jsonb"
                )
                params = (now, user.name, body.note, entry)
            await conn.execute(sql + " WHERE id = %s", (*params, complaint_id))
        await auth.audit(conn, now, user.name, step, target, f"refused: {why[1]}" if why else "ok")
        got = await _one(conn, complaint_id)
    if why is not None:
        raise HTTPException(*why)
    assert got is not None
    return _out(got, desk, now)
