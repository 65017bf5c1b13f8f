"""The share of service clocks met, over every ticket of every site opened since a day (UTC),
grouped by fault kind, site, area or assigned engineer; as JSON or CSV.

A clock still running is judged as of now: past its due time it is breached already. The
counting is `alarmgw.diagnostics.sla.share_report`, as the gateway's `sla-report` does it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any, Literal

import psycopg

from alarmgw.clock import parse_iso
from alarmgw.diagnostics.sla import ClockState, ClockStatus, share_report

Conn = psycopg.AsyncConnection[tuple[object, ...]]
By = Literal["fault", "site", "area", "engineer"]
COLUMNS = ("group", "clock", "met", "breached", "running", "not_needed", "share_met")
FETCH = 2000  # rows a round trip; the report holds only its counts, never all tickets

ALL = """
SELECT x.site_id, x.fault, coalesce(s.area, x.ticket ->> 'area'), a.engineer, x.ticket -> 'clocks'
FROM (
    SELECT site_id, ticket_id::text AS ref, fault, opened_at, payload AS ticket FROM tickets
    UNION ALL
    SELECT site_id, 'c' || id, fault, opened_at, ticket FROM centre_tickets
) x
LEFT JOIN sites s ON s.id = x.site_id
LEFT JOIN desk_assignments a ON a.site_id = x.site_id AND a.ticket_ref = x.ref
WHERE x.opened_at >= %s
"""


async def report(conn: Conn, since: date, by: By, now: datetime) -> dict[str, dict[str, dict[str, float]]]:
    """group -> clock -> met, breached, running, not_needed and share_met (NaN: none decided)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    column = {"site": 0, "fault": 1, "area": 2, "engineer": 3}[by]

    totals: dict[str, dict[str, dict[str, float]]] = {}
    async with conn.transaction(), conn.cursor(name="desk_sla") as cur:
        await cur.execute(ALL, (start,))
        while rows := await cur.fetchmany(FETCH):
            page = share_report(
                (str(r[column]) if r[column] is not None else "(none)", list(_statuses(r[4], now))) for r in rows
            )
            for group, clocks in page.items():
                for clock, cell in clocks.items():
                    into = totals.setdefault(group, {}).setdefault(clock, dict.fromkeys(cell, 0.0))
                    for k in ("met", "breached", "running", "not_needed"):
                        into[k] += cell[k]
    for clocks in totals.values():
        for cell in clocks.values():
            decided = cell["met"] + cell["breached"]
            cell["share_met"] = cell["met"] / decided if decided else math.nan
    return totals


def _statuses(raw: Any, now: datetime) -> Iterator[ClockStatus]:
    if not isinstance(raw, dict):
        return
    for name, c in raw.items():
        if not isinstance(c, dict) or "due" not in c:
            continue
        due = parse_iso(str(c["due"]))
        stopped = parse_iso(str(c["stopped_at"])) if c.get("stopped_at") else None
        state = ClockState(str(c.get("state", "running")))
        if stopped is None and state is not ClockState.NOT_NEEDED:
            state = ClockState.RUNNING if due >= now else ClockState.BREACHED
        yield ClockStatus(str(name), due, stopped, state, 0.0)


def as_json(report_: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """NaN (nothing decided) as null, counts as integers."""
    return {
        g: {
            clock: {
                k: (None if math.isnan(v) else (round(v, 4) if k == "share_met" else int(v))) for k, v in cell.items()
            }
            for clock, cell in clocks.items()
        }
        for g, clocks in sorted(report_.items())
    }


def as_csv(report_: dict[str, dict[str, dict[str, float]]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for g, clocks in as_json(report_).items():
        for clock, cell in sorted(clocks.items()):
            share = cell["share_met"]
            w.writerow([_cell(g), clock, *(cell[k] for k in COLUMNS[2:6]), "" if share is None else f"{share:.4f}"])
    return out.getvalue()


def _cell(text: str) -> str:
    """A site or engineer name cannot start a formula when the file is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
