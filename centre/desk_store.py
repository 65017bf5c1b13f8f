"""What the desk reads and writes in the centre's database: open tickets of every site (the
gateways' and the centre's own, one list), one ticket with its history and its device's
readings, the sites, and the dispatch board.

A ticket is named by its site and a `ref`: a gateway ticket's id (`17`), or `c` and the id of
one of the centre's own (`c3`: a site gone dark), since the two are numbered apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alarmgw.clock import iso, parse_iso

Conn = psycopg.AsyncConnection[tuple[object, ...]]
REF = re.compile(r"^c?[0-9]{1,18}$")
CLOSED_STATES = ("resolved", "closed")
TREND_KEYS = ("battery_v", "battery_pct", "rssi_dbm")  # alarmgw.model's names for them
MAX_HISTORY = 500  # events shown with one ticket, the newest
MAX_TREND_TICKETS = 200  # earlier tickets of the same device whose evidence makes the trend

# Every open ticket, gateway and centre alike, with the columns the desk shows.
OPEN = """
WITH open_tickets AS (
    SELECT t.site_id, t.ticket_id::text AS ref, 'gateway' AS source, t.state, t.fault, t.device,
           t.fault_active, t.opened_at, t.payload AS ticket
    FROM tickets t WHERE t.state NOT IN ('resolved', 'closed')
    UNION ALL
    SELECT c.site_id, 'c' || c.id, 'centre', c.state, c.fault, c.site_id, c.fault_active, c.opened_at, c.ticket
    FROM centre_tickets c WHERE c.state NOT IN ('resolved', 'closed')
)
"""
# The earliest due time among a ticket's clocks still running (stopped ones are decided).
NEXT_DUE = """
CROSS JOIN LATERAL (
    SELECT min((k.value ->> 'due')::timestamptz) AS next_due
    FROM jsonb_each(CASE WHEN jsonb_typeof(o.ticket -> 'clocks') = 'object'
                         THEN o.ticket -> 'clocks' ELSE '{}'::jsonb END) k
    WHERE k.value ->> 'stopped_at' IS NULL AND k.value ->> 'state' IS DISTINCT FROM 'not_needed'
) n
"""


@dataclass(frozen=True, slots=True)
class TicketFilter:
    site: str | None = None
    area: str | None = None
    fault: str | None = None
    state: str | None = None
    engineer: str | None = None


async def open_tickets(conn: Conn, now: datetime, f: TicketFilter, limit: int) -> tuple[int, list[dict[str, object]]]:
    """Open tickets matching `f`, the nearest breach first (late ones first of all), at most
    `limit`; and how many match in all."""
    where = """
    WHERE (%(site)s::text IS NULL OR o.site_id = %(site)s)
      AND (%(area)s::text IS NULL OR coalesce(s.area, o.ticket ->> 'area') = %(area)s)
      AND (%(fault)s::text IS NULL OR o.fault = %(fault)s)
      AND (%(state)s::text IS NULL OR o.state = %(state)s)
      AND (%(engineer)s::text IS NULL OR a.engineer = %(engineer)s)
    """
    joins = """
    FROM open_tickets o
    LEFT JOIN sites s ON s.id = o.site_id
    LEFT JOIN desk_assignments a ON a.site_id = o.site_id AND a.ticket_ref = o.ref
    """
    params: dict[str, Any] = {**_params(f), "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(OPEN + "SELECT count(*) AS n" + joins + where, params)
        total = int((await cur.fetchone() or {"n": 0})["n"])
        await cur.execute(
            OPEN + "SELECT o.*, coalesce(s.area, o.ticket ->> 'area') AS area, a.engineer, a.planned_arrival,"
            " a.assigned_by, a.assigned_at, n.next_due"
            + joins
            + NEXT_DUE
            + where
            + " ORDER BY n.next_due NULLS LAST, o.opened_at, o.site_id, o.ref LIMIT %(limit)s",
            params,
        )
        rows = await cur.fetchall()
    return total, [ticket_out(r, now) for r in rows]


def _params(f: TicketFilter) -> dict[str, Any]:
    return {"site": f.site, "area": f.area, "fault": f.fault, "state": f.state, "engineer": f.engineer}


def ticket_out(r: Mapping[str, Any], now: datetime) -> dict[str, object]:
    """One ticket as the desk shows it: its clocks as of `now`, its diagnosis and its plan."""
    doc: Mapping[str, Any] = r["ticket"] if isinstance(r["ticket"], dict) else {}
    clocks = clocks_at(doc.get("clocks"), now)
    next_due: datetime | None = r.get("next_due")
    plan = None
    if r.get("engineer") is not None:
        arrival_due = clocks.get("arrival", {}).get("due")
        planned: datetime = r["planned_arrival"]
        margin = (parse_iso(str(arrival_due)) - planned).total_seconds() if arrival_due else None
        plan = {
            "engineer": r["engineer"],
            "planned_arrival": iso(planned),
            "assigned_by": r["assigned_by"],
            "assigned_at": iso(r["assigned_at"]),
            "arrival_due": arrival_due,
            "margin_s": None if margin is None else round(margin),  # negative: the plan is late
        }
    diagnosis = doc.get("diagnosis")
    return {
        "site": r["site_id"],
        "ref": r["ref"],
        "source": r["source"],
        "state": r["state"],
        "fault": r["fault"],
        "device": r["device"],
        "device_kind": doc.get("device_kind", ""),
        "title": doc.get("title", ""),
        "location": doc.get("location", ""),
        "area": r.get("area"),
        "impact": doc.get("impact", ""),
        "cause": doc.get("cause", ""),
        "fault_active": r["fault_active"],
        "opened_at": iso(r["opened_at"]),
        "next_due": iso(next_due) if next_due else None,
        "to_breach_s": round((next_due - now).total_seconds()) if next_due else None,
        "clocks": clocks,
        "affected": list(doc.get("affected") or []),
        "diagnosis": diagnosis if isinstance(diagnosis, dict) and diagnosis else None,
        "plan": plan,
    }


def clocks_at(raw: object, now: datetime) -> dict[str, dict[str, Any]]:
    """The ticket's clocks as of `now`: a running clock's time left counts on from its due
    time (the stored `remaining_s` is as of publication); a stopped one stays as it was."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(raw, dict):
        return out
    for name, c in raw.items():
        if not isinstance(c, dict) or "due" not in c:
            continue
        c = dict(c)
        if c.get("stopped_at") is None and c.get("state") != "not_needed":
            left = (parse_iso(str(c["due"])) - now).total_seconds()
            c["remaining_s"] = round(left, 1)
            c["state"] = "running" if left >= 0 else "breached"
        out[str(name)] = c
    return out


async def ticket(conn: Conn, site: str, ref: str, now: datetime) -> dict[str, object] | None:
    """One ticket, open or not, with its history and its device's readings; None if unknown."""
    if ref.startswith("c"):
        query = (
            "SELECT c.site_id, 'c' || c.id AS ref, 'centre' AS source, c.state, c.fault, c.site_id AS device,"
            " c.fault_active, c.opened_at, c.ticket, c.history FROM centre_tickets c"
            " WHERE c.site_id = %(site)s AND c.id = %(id)s"
        )
    else:
        query = (
            "SELECT t.site_id, t.ticket_id::text AS ref, 'gateway' AS source, t.state, t.fault, t.device,"
            " t.fault_active, t.opened_at, t.payload AS ticket, NULL AS history FROM tickets t"
            " WHERE t.site_id = %(site)s AND t.ticket_id = %(id)s"
        )
    params = {"site": site, "id": int(ref.lstrip("c")), "ref": ref}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT x.*, coalesce(s.area, x.ticket ->> 'area') AS area, a.engineer, a.planned_arrival,"
            " a.assigned_by, a.assigned_at, n.next_due"
            f" FROM ({query}) x LEFT JOIN sites s ON s.id = x.site_id"
            " LEFT JOIN desk_assignments a ON a.site_id = x.site_id AND a.ticket_ref = %(ref)s"
            + NEXT_DUE.replace("o.ticket", "x.ticket"),
            params,
        )
        row = await cur.fetchone()
    if row is None:
        return None
    out = ticket_out(row, now)
    if row["source"] == "centre":
        out["history"] = [h for h in (row["history"] or []) if isinstance(h, dict)][-MAX_HISTORY:]
        out["trend"] = {"sources": [], "series": {}}
    else:
        out["history"] = await _history(conn, site, ref)
        out["trend"] = await _trend(conn, site, str(row["device"]))
    return out


async def _history(conn: Conn, site: str, ref: str) -> list[dict[str, object]]:
    cur = await conn.execute(
        "SELECT at, payload ->> 'action', payload -> 'ticket' ->> 'state', payload -> 'ticket' ->> 'version'"
        " FROM events WHERE site_id = %s AND kind = 'ticket' AND payload -> 'ticket' ->> 'id' = %s"
        " ORDER BY at DESC LIMIT %s",
        (site, ref, MAX_HISTORY),
    )
    rows = await cur.fetchall()
    return [
        {"at": iso(r[0]), "action": r[1], "state": r[2], "version": int(str(r[3])) if r[3] else None}  # type: ignore[arg-type]
        for r in reversed(rows)
    ]


async def _trend(conn: Conn, site: str, device: str) -> dict[str, object]:
    """Battery and signal of the device over time, from what the centre keeps: the evidence
    of each of the device's tickets (as of its detection) and its latest telemetry. Longer
    series live in InfluxDB, which the desk does not read."""
    series: dict[str, list[tuple[str, float]]] = {k: [] for k in TREND_KEYS}
    cur = await conn.execute(
        "SELECT DISTINCT ON (payload -> 'ticket' ->> 'id') payload -> 'ticket' ->> 'opened_at',"
        " payload -> 'ticket' -> 'evidence' FROM events"
        " WHERE site_id = %s AND kind = 'ticket' AND payload -> 'ticket' ->> 'device' = %s"
        " ORDER BY payload -> 'ticket' ->> 'id', at DESC LIMIT %s",
        (site, device, MAX_TREND_TICKETS),
    )
    for at, evidence in await cur.fetchall():
        _add(series, str(at), evidence)
    cur = await conn.execute(
        'SELECT at, "values" FROM telemetry_latest WHERE site_id = %s AND device_id = %s', (site, device)
    )
    latest = await cur.fetchone()
    if latest is not None:
        _add(series, iso(latest[0]), latest[1])  # type: ignore[arg-type]
    for points in series.values():
        points.sort()
    return {
        "sources": ["ticket evidence", *(["latest telemetry"] if latest else [])],
        "series": {k: [[at, v] for at, v in points] for k, points in series.items() if points},
    }


def _add(series: dict[str, list[tuple[str, float]]], at: str, values: object) -> None:
    if not isinstance(values, dict):
        return
    for key, points in series.items():
        v = values.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            points.append((iso(parse_iso(at)), float(v)))


async def sites(conn: Conn, limit: int) -> tuple[int, list[dict[str, object]]]:
    """Every site with its status, last word, devices in fault and open tickets; dark ones first."""
    cur = await conn.execute("SELECT count(*) FROM sites")
    total = int(str((await cur.fetchone() or (0,))[0]))
    async with conn.cursor(row_factory=dict_row) as dcur:
        await dcur.execute(
            """
            SELECT * FROM (
            SELECT s.id, s.area, s.status, s.status_at, s.last_heard_at,
              (SELECT count(*) FROM tickets t WHERE t.site_id = s.id AND t.state NOT IN ('resolved', 'closed'))
              + (SELECT count(*) FROM centre_tickets c WHERE c.site_id = s.id
                 AND c.state NOT IN ('resolved', 'closed')) AS open_tickets,
              (SELECT count(DISTINCT d.device) FROM tickets t CROSS JOIN LATERAL (
                  SELECT t.device UNION SELECT jsonb_array_elements_text(
                    CASE WHEN jsonb_typeof(t.payload -> 'affected') = 'array' THEN t.payload -> 'affected'
                         ELSE '[]'::jsonb END)) d(device)
               WHERE t.site_id = s.id AND t.fault_active AND t.state <> 'closed') AS devices_in_fault,
              EXISTS (SELECT 1 FROM centre_tickets c WHERE c.site_id = s.id AND c.fault_active
                      AND c.state <> 'closed') AS dark
            FROM sites s
            ) x  -- the dark and the offline first, then the never heard, then the online
            ORDER BY CASE WHEN x.dark OR x.status = 'offline' THEN 0 WHEN x.status = 'unknown' THEN 1 ELSE 2 END, x.id
            LIMIT %s
            """,
            (limit,),
        )
        rows = await dcur.fetchall()
    return total, [
        {
            "site": r["id"],
            "area": r["area"],
            "status": r["status"],
            "online": r["status"] == "online" and not r["dark"],
            "dark": r["dark"],
            "status_at": iso(r["status_at"]) if r["status_at"] else None,
            "last_heard_at": iso(r["last_heard_at"]) if r["last_heard_at"] else None,
            "devices_in_fault": r["devices_in_fault"],
            "open_tickets": r["open_tickets"],
        }
        for r in rows
    ]


async def open_summaries(conn: Conn) -> Sequence[tuple[str, str, str | None, str, datetime, str]]:
    """(site, ref, area, fault, opened_at, state) of every open ticket, for incidents."""
    cur = await conn.execute(
        OPEN + "SELECT o.site_id, o.ref, coalesce(s.area, o.ticket ->> 'area'), o.fault, o.opened_at, o.state"
        " FROM open_tickets o LEFT JOIN sites s ON s.id = o.site_id"
    )
    return [(str(r[0]), str(r[1]), r[2], str(r[3]), r[4], str(r[5])) for r in await cur.fetchall()]  # type: ignore[misc]


async def is_open(conn: Conn, site: str, ref: str) -> bool | None:
    """True for an open ticket, False for a resolved or closed one, None for none."""
    if ref.startswith("c"):
        query = "SELECT state FROM centre_tickets WHERE site_id = %s AND id = %s"
    else:
        query = "SELECT state FROM tickets WHERE site_id = %s AND ticket_id = %s"
    cur = await conn.execute(query, (site, int(ref.lstrip("c"))))
    row = await cur.fetchone()
    return None if row is None else str(row[0]) not in CLOSED_STATES


async def assign(conn: Conn, site: str, ref: str, engineer: str, planned: datetime, by: str, now: datetime) -> None:
    """Put `engineer` on the ticket, arriving at `planned`; a second assignment replaces it."""
    await conn.execute(
        "INSERT INTO desk_assignments (site_id, ticket_ref, engineer, planned_arrival, assigned_by, assigned_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, ticket_ref) DO UPDATE SET"
        " engineer = excluded.engineer, planned_arrival = excluded.planned_arrival,"
        " assigned_by = excluded.assigned_by, assigned_at = excluded.assigned_at",
        (site, ref, engineer, planned, by, now),
    )


async def engineer_role(conn: Conn, name: str) -> str | None:
    cur = await conn.execute("SELECT role FROM desk_users WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])
