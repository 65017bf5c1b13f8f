"""Plans across sites, from each site's asset register and maintenance plan (`site_assets`):
the maintenance visits due now or soon and those overdue, the warranties that end soon (the
pre-expiry visit and the renewal offer), and the devices at or near their rated life (a
replacement quote list)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from alarmgw.clock import iso
from alarmgw.diagnostics.maintenance import Visit, VisitState
from alarmgw.diagnostics.sla import add_months

from .desk_api import need  # the desk's one permission check; desk_api takes this router in at build time
from .desk_auth import Permission, User
from .visit_marks import HISTORY

router = APIRouter()

MAX_ROWS = 5000  # per list in one answer; `truncated` says when more matched
OVERDUE_SHOWN = HISTORY  # visits overdue longer than this are history, not a plan (nor escalated)


def _day(text: object) -> date | None:
    return date.fromisoformat(text) if isinstance(text, str) else None


def plans(sites: list[tuple[str, dict[str, Any]]], today: date, days: int, months: int) -> dict[str, object]:
    """Pure: the three lists over every site's register and plan, soonest first."""
    horizon, eol_by = today + timedelta(days=days), add_months(today, months)
    visits, ending, old = [], [], []
    for site, doc in sites:
        for v in doc.get("visits", []):
            visit = Visit(int(v["n"]), v["kind"], date.fromisoformat(v["opens"]), date.fromisoformat(v["closes"]))
            done = _day(v.get("done_on"))  # the day the site recorded the visit, if it did
            state = visit.state(today, [] if done is None else [done])
            soon, recent = visit.opens <= horizon, visit.closes >= today - OVERDUE_SHOWN
            if (state is VisitState.UPCOMING and soon) or (state is not VisitState.UPCOMING and recent):
                visits.append({"site": site, **v, "state": state.value})
        for d in doc.get("devices", []):
            until, eol = _day(d.get("warranty_until")), _day(d.get("end_of_life"))
            if until is not None and today <= until <= horizon:
                ending.append({"site": site, **d})
            if eol is not None and eol <= eol_by:
                old.append({"site": site, **d, "reached": eol <= today})
    visits.sort(key=lambda v: (v["closes"], v["site"]))
    ending.sort(key=lambda d: (d["warranty_until"], d["site"], d["device"]))
    old.sort(key=lambda d: (d["end_of_life"], d["site"], d["device"]))
    lists = {"visits": visits, "warranty_ending": ending, "end_of_life": old}
    out: dict[str, object] = {k: v[:MAX_ROWS] for k, v in lists.items()}
    out["truncated"] = [k for k, v in lists.items() if len(v) > MAX_ROWS]
    return out


@router.get("/api/plans", summary="Maintenance visits, warranties ending and devices at their rated life, across sites")
async def plans_route(
    request: Request,
    _u: Annotated[User, Depends(need(Permission.READ))],
    days: Annotated[int, Query(ge=0, le=366, description="visits and warranty ends within this many days")] = 14,
    months: Annotated[int, Query(ge=0, le=120, description="devices at their rated life within this many months")] = 6,
) -> dict[str, object]:
    desk = request.app.state.desk
    now = desk.clock.now()
    async with desk.pool.connection() as conn:
        cur = await conn.execute("SELECT site_id, doc FROM site_assets ORDER BY site_id")
        rows = [(str(r[0]), r[1]) for r in await cur.fetchall()]
    today = now.date()
    return {"at": iso(now), "today": today.isoformat(), "sites": len(rows), **plans(rows, today, days, months)}
