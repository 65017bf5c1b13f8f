"""The monthly service report of one site, for its customer: the tickets opened in the month
and how each service clock did, the downtime, the maintenance visits, the devices at or near
their rated life, and the battery and signal readings of the month. One calendar month, UTC.

`gather` reads the month's facts from the centre's database; `build` turns them into the
report (pure, as of the `now` the facts were read at); `render_html` makes the printable page
(charts drawn by matplotlib as inline SVG, loaded only when a page is made) and `render_pdf`
prints that page with WeasyPrint. Every list is bounded; the report says when one is cut.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from alarmgw.clock import iso, parse_iso
from alarmgw.diagnostics.maintenance import Visit
from alarmgw.diagnostics.sla import CLOCK_NAMES, PROMISE, add_months, share_report

from . import telemetry_daily
from .desk_sla import _statuses as judged  # a stored clock as of now: a running clock past due is breached
from .desk_store import TREND_KEYS
from .desk_store import _add as add_readings  # a reading's battery and signal values, as the ticket's trend takes them

if TYPE_CHECKING:
    from .desk_store import Conn

COUNTS = ("met", "breached", "running", "not_needed")
MAX_TICKETS = 2000  # tickets of the month counted and listed; more is a site out of order, said so
MAX_DEVICES = 500  # devices in the rated-life and readings tables
MAX_CHARTS = 24  # devices charted, the lowest battery and signal first
MAX_POINTS = 500  # readings of one device and quantity, the latest
NEAR_END_OF_LIFE_MONTHS = 6  # a device this close to its rated life is listed for a replacement quote
MAX_NAMES = 50  # device names shown for one recorded visit's tested, untested, failed
MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
UNITS = {"battery_v": "V", "battery_pct": "%", "rssi_dbm": "dBm"}


class ReportError(ValueError):
    """A report that cannot be made as asked; the message says why, naming what was given."""


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM`; ReportError naming the text otherwise."""
        m = MONTH.match(text)
        if m is None or not 1 <= int(m[2]) <= 12 or int(m[1]) < 1970:
            raise ReportError(f"month {text[:20]!r} is not a month as YYYY-MM (e.g. 2026-11)")
        return cls(int(m[1]), int(m[2]))

    @classmethod
    def before(cls, now: datetime) -> Month:
        """The last whole month before `now`."""
        first = add_months(now.date().replace(day=1), -1)
        return cls(first.year, first.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the month."""
        nxt = add_months(date(self.year, self.month, 1), 1)
        return datetime(nxt.year, nxt.month, 1, tzinfo=UTC)

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(days=1)).date()

    def check(self, now: datetime) -> None:
        """A month that has not begun has no report (the current one has, to date)."""
        if self.start > now:
            raise ReportError(f"month {self} has not begun (it is {now.date()} UTC)")

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def title(self) -> str:
        return self.start.strftime("%B %Y")


@dataclass(frozen=True, slots=True)
class Down:
    """A ticket's downtime: from its device's last reading before it went away to its first
    reading once back (None: still away)."""

    ref: str
    device: str
    down_since: datetime
    back_at: datetime | None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the centre holds of one site for one month, read at `now`."""

    site: str
    area: str | None
    month: Month
    now: datetime
    tickets: list[dict[str, Any]]  # docs opened in the month, oldest first, each with its `ref`
    tickets_total: int
    down: list[Down]  # downtime that overlaps the month, whenever its ticket opened
    assets: dict[str, Any] | None  # the site's asset register and plan, as last sent
    latest: list[tuple[str, datetime, dict[str, Any]]]  # device, at, values: latest readings taken in the month
    daily: list[telemetry_daily.DeviceDay] = field(default_factory=list)  # the month's days, by device and day


# --- gathering -----------------------------------------------------------------------------

# A site's tickets, the gateway's and the centre's own (a site gone dark), as `ref` and doc.
SITE_TICKETS = """
SELECT ticket_id::text AS ref, opened_at, payload AS doc FROM tickets WHERE site_id = %(site)s
UNION ALL
SELECT 'c' || id, opened_at, ticket FROM centre_tickets WHERE site_id = %(site)s
"""


async def gather(conn: Conn, site: str, month: Month, now: datetime) -> Facts | None:
    """The month's facts of `site`; None if the centre has never heard of it."""
    cur = await conn.execute("SELECT area FROM sites WHERE id = %s", (site,))
    row = await cur.fetchone()
    if row is None:
        return None
    span = {"site": site, "start": month.start, "end": month.end, "limit": MAX_TICKETS}
    opened = f"SELECT ref, doc FROM ({SITE_TICKETS}) x WHERE opened_at >= %(start)s AND opened_at < %(end)s"
    cur = await conn.execute(f"SELECT count(*) FROM ({opened}) n", span)
    total = int(str((await cur.fetchone() or (0,))[0]))
    cur = await conn.execute(f"{opened} ORDER BY (doc ->> 'opened_at'), length(ref), ref LIMIT %(limit)s", span)
    tickets = [{**doc, "ref": ref} for ref, doc in await cur.fetchall()]  # type: ignore[dict-item]
    cur = await conn.execute(
        f"""
        SELECT ref, doc ->> 'device', doc ->> 'down_since', doc ->> 'back_at' FROM ({SITE_TICKETS}) x
        WHERE doc ->> 'down_since' IS NOT NULL AND (doc ->> 'down_since')::timestamptz < %(end)s
          AND (doc ->> 'back_at' IS NULL OR (doc ->> 'back_at')::timestamptz > %(start)s)
        ORDER BY (doc ->> 'down_since') LIMIT %(limit)s
        """,
        span,
    )
    down = [
        Down(str(r), str(d), parse_iso(str(s)), parse_iso(str(b)) if b else None) for r, d, s, b in await cur.fetchall()
    ]
    cur = await conn.execute("SELECT doc FROM site_assets WHERE site_id = %s", (site,))
    assets = await cur.fetchone()
    cur = await conn.execute(
        'SELECT device_id, at, "values" FROM telemetry_latest WHERE site_id = %s AND at >= %s AND at < %s'
        " ORDER BY device_id LIMIT %s",
        (site, month.start, month.end, MAX_DEVICES + 1),
    )
    latest = [(str(d), at, v) for d, at, v in await cur.fetchall() if isinstance(at, datetime) and isinstance(v, dict)]
    daily = await telemetry_daily.month(conn, site, month.start.date(), month.last_day, MAX_DEVICES + 1)
    register = assets[0] if assets is not None and isinstance(assets[0], dict) else None
    area = str(row[0]) if row[0] is not None else None
    return Facts(site, area, month, now, tickets, total, down, register, latest, daily)


# --- the report, pure ----------------------------------------------------------------------


def clock_counts(clocks: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, dict[str, int | float | None]]:
    """Per service clock over the tickets' stored clocks, judged at `now`: met, breached,
    running, not needed, and the share met among those decided (None: none decided)."""
    rows = share_report(("all", list(judged(c, now))) for c in clocks)
    cells = rows.get("all", {})
    out: dict[str, dict[str, int | float | None]] = {}
    for name in sorted(cells, key=lambda n: (CLOCK_NAMES.index(n) if n in CLOCK_NAMES else len(CLOCK_NAMES), n)):
        cell = cells[name]
        share = cell["share_met"]
        out[name] = {k: int(cell[k]) for k in COUNTS} | {"share_met": None if math.isnan(share) else round(share, 4)}
    return out


def downtime_within(d: Down, start: datetime, end: datetime, now: datetime) -> timedelta:
    """The part of one downtime inside [start, end): a downtime not over yet runs to `now`."""
    until = d.back_at if d.back_at is not None else now
    inside = min(until, end, now) - max(d.down_since, start)
    return max(inside, timedelta(0))


def _day(text: object) -> date | None:
    return date.fromisoformat(text) if isinstance(text, str) else None


def _when(text: object) -> datetime | None:
    return parse_iso(text) if isinstance(text, str) else None


def _names(value: object) -> dict[str, object] | None:
    """A recorded visit's tested, untested or failed: a count, or a list of devices."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return {"count": value, "devices": []}
    if isinstance(value, list):
        return {"count": len(value), "devices": [str(v) for v in value[:MAX_NAMES]]}
    return None


def visits(assets: Mapping[str, Any] | None, month: Month, today: date) -> dict[str, object]:
    """The plan's visits whose window meets the month, each with its state as of the month's
    last day (or today, in the month itself), and the visits the site recorded in the month."""
    first, last = month.start.date(), month.last_day
    as_of = min(last, today)
    if assets is None:
        return {"planned": [], "recorded": None, "register": False}
    planned = []
    for v in assets.get("visits", []):
        done = _day(v.get("done_on"))
        visit = Visit(int(v["n"]), v["kind"], date.fromisoformat(v["opens"]), date.fromisoformat(v["closes"]))
        if (visit.opens <= last and visit.closes >= first) or (done is not None and first <= done <= last):
            state = visit.state(as_of, [done] if done is not None and done <= as_of else [])
            day = done.isoformat() if done else None
            planned.append(
                {"n": visit.n, "kind": visit.kind, "opens": v["opens"], "closes": v["closes"], "done_on": day}
            )
            planned[-1]["state"] = state.value
    recorded: list[dict[str, object]] | None = None
    if "visits_done" in assets:
        recorded = []
        for r in assets.get("visits_done") or []:
            started = _when(r.get("started_at")) if isinstance(r, dict) else None
            if started is not None and month.start <= started < month.end:
                recorded.append(
                    {"started_at": iso(started), "finished_at": r.get("finished_at"), "by": r.get("by")}
                    | {k: _names(r.get(k)) for k in ("tested", "untested", "failed")}
                )
        recorded.sort(key=lambda r: str(r["started_at"]))
    return {"planned": planned, "recorded": recorded, "register": True}


def end_of_life(assets: Mapping[str, Any] | None, month: Month) -> dict[str, Any]:
    """Devices at their rated life by the month's last day, or within the months after it."""
    last = month.last_day
    by = add_months(last, NEAR_END_OF_LIFE_MONTHS)
    found = []
    for d in (assets or {}).get("devices", []):
        eol, until = _day(d.get("end_of_life")), _day(d.get("warranty_until"))
        if eol is not None and eol <= by:
            found.append(
                {k: d.get(k) for k in ("device", "kind", "commissioned_on", "warranty_until", "end_of_life")}
                | {"reached": eol <= last, "in_warranty": None if until is None else until >= last}
            )
    found.sort(key=lambda d: (str(d["end_of_life"]), str(d["device"])))
    return {"within_months": NEAR_END_OF_LIFE_MONTHS, "devices": found[:MAX_DEVICES], "total": len(found)}


def readings(facts: Facts) -> dict[str, Any]:
    """Battery and signal of each device in the month, the lowest first. From the centre's
    daily history (`telemetry_daily`: each day's minimum, maximum and last) for the devices it
    holds; for the others (months before it was kept), from each ticket's evidence at its
    detection and each device's latest reading.

    A device's row holds, per quantity, `min`, `last`, `last_at` and `count` (readings), and
    its points: `daily` as [day, min, max, last, readings] per UTC day, or `series` as
    [at, value] per reading."""
    by_day: dict[str, list[telemetry_daily.DeviceDay]] = {}
    for d in facts.daily:
        if facts.month.start.date() <= d.day <= facts.month.last_day:
            by_day.setdefault(d.device, []).append(d)
    series: dict[str, dict[str, list[tuple[str, float]]]] = {}

    def add(device: str, at: datetime, values: object) -> None:
        if facts.month.start <= at < facts.month.end and device not in by_day:
            add_readings(series.setdefault(device, {k: [] for k in TREND_KEYS}), iso(at), values)

    for t in facts.tickets:
        if isinstance(at := _when(t.get("opened_at")), datetime):
            add(str(t.get("device")), at, t.get("evidence"))
    for device, at, values in facts.latest:
        add(device, at, values)
    kinds = {str(d.get("device")): d.get("kind") for d in (facts.assets or {}).get("devices", [])}
    rows: list[dict[str, Any]] = []
    for device, days in by_day.items():
        row: dict[str, Any] = {"device": device, "kind": kinds.get(device), "series": {}, "daily": {}}
        for key in TREND_KEYS:
            got = sorted(((d, d.spans[key]) for d in days if key in d.spans), key=lambda x: x[0].day)
            if not got:
                continue
            last_day, last = got[-1]
            row[key] = {
                "min": min(s.min for _, s in got),
                "last": last.last,
                "last_at": iso(last_day.last_at),
                "count": sum(d.samples for d, _ in got),
            }
            row["daily"][key] = [[d.day.isoformat(), s.min, s.max, s.last, d.samples] for d, s in got]
        if row["daily"]:
            rows.append(row)
    for device, by_key in series.items():
        row = {"device": device, "kind": kinds.get(device), "series": {}}
        for key, points in by_key.items():
            if not points:
                continue
            points.sort()  # ISO times in UTC to the millisecond sort as the times do
            got_values = [v for _, v in points]
            row[key] = {"min": min(got_values), "last": got_values[-1], "last_at": points[-1][0], "count": len(points)}
            row["series"][key] = [list(p) for p in points[-MAX_POINTS:]]
        if row["series"]:
            rows.append(row)
    rows.sort(key=_lowest_first)
    sources = ["daily minimum, maximum and last reading"] if any("daily" in r for r in rows) else []
    if any("daily" not in r for r in rows) or not rows:
        sources += ["ticket evidence at detection", "latest reading"]
    return {
        "sources": sources,
        "devices": rows[:MAX_DEVICES],
        "total": len(rows),
        "charted": min(len(rows), MAX_CHARTS),
    }


def _lowest_first(row: Mapping[str, Any]) -> tuple[float, float, float, str]:
    def low(key: str) -> float:
        return float(row[key]["min"]) if key in row else math.inf

    return (low("battery_pct"), low("battery_v"), low("rssi_dbm"), str(row["device"]))


def build(facts: Facts) -> dict[str, object]:
    """The report as JSON-ready data."""
    month, now = facts.month, facts.now
    listed = []
    for t in facts.tickets:
        clocks = t.get("clocks") if isinstance(t.get("clocks"), dict) else {}
        listed.append(
            {k: t.get(k) for k in ("ref", "fault", "device", "title", "state", "opened_at", "acknowledged_at")}
            | {k: t.get(k) for k in ("on_site_at", "resolved_at", "closed_at", "down_since", "back_at")}
            | {"clocks": {s.name: s.state.value for s in judged(clocks, now)}}
        )
    down_rows: list[dict[str, Any]] = [
        {"ref": d.ref, "device": d.device, "down_since": iso(d.down_since), "back_at": d.back_at and iso(d.back_at)}
        | {"in_month_s": downtime_within(d, month.start, month.end, now).total_seconds()}
        for d in facts.down
    ]
    eol, seen = end_of_life(facts.assets, month), readings(facts)
    cut = {
        "tickets": facts.tickets_total > len(facts.tickets),
        "downtime": len(facts.down) >= MAX_TICKETS,
        "end_of_life": eol["total"] > MAX_DEVICES,
        "readings": seen["total"] > MAX_DEVICES,
        "charts": seen["total"] > MAX_CHARTS,
    }
    return {
        "site": facts.site,
        "area": facts.area,
        "month": str(month),
        "from": iso(month.start),
        "to": iso(month.end),
        "as_of": iso(now),
        "complete": now >= month.end,
        "tickets": {
            "total": facts.tickets_total,
            "listed": len(listed),
            "by_fault": dict(sorted(Counter(str(t.get("fault")) for t in facts.tickets).items())),
            "clocks": clock_counts((t.get("clocks") or {} for t in facts.tickets), now),
            "list": listed,
        },
        "downtime": {
            "total_s": sum(float(d["in_month_s"]) for d in down_rows),
            "promise_s": PROMISE.downtime.total_seconds(),
            "tickets": down_rows,
        },
        "visits": visits(facts.assets, month, now.date()),
        "end_of_life": eol,
        "readings": seen,
        "truncated": [name for name, was in cut.items() if was],
    }


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The report in a few lines of text, for a terminal."""
    t, down, v = report["tickets"], report["downtime"], report["visits"]
    lines = [
        f"service report: site {report['site']}, {report['month']} (UTC), as of {stamp_text(report['as_of'])}"
        + ("" if report["complete"] else " (month to date)"),
        f"tickets opened: {t['total']}"
        + (" (" + ", ".join(f"{f} {n}" for f, n in t["by_fault"].items()) + ")" if t["by_fault"] else ""),
    ]
    for name, c in t["clocks"].items():
        share = "no clock decided" if c["share_met"] is None else f"{c['share_met']:.0%} met"
        lines.append(
            f"  {name}: {c['met']} met, {c['breached']} breached, {c['running']} running,"
            f" {c['not_needed']} not needed: {share}"
        )
    lines.append(f"downtime: {duration_text(down['total_s'])} over {len(down['tickets'])} ticket(s)")
    done = sum(1 for p in v["planned"] if p["state"] == "done")
    recorded = "none recorded" if v["recorded"] is None else f"{len(v['recorded'])} recorded"
    lines.append(f"maintenance visits: {len(v['planned'])} planned in the month, {done} done; {recorded}")
    lines.append(f"devices at or near their rated life: {report['end_of_life']['total']}")
    lines.append(f"devices with readings: {report['readings']['total']}")
    if report["truncated"]:
        lines.append(f"cut to their bounds: {', '.join(report['truncated'])}")
    return lines


def duration_text(seconds: float) -> str:
    """`45 min`, `1 h`, `26 h 05 min`: to the minute."""
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


def stamp_text(text: object) -> str:
    """A stored time as people read it in the report: `2026-11-03 14:05 UTC`."""
    at = _when(text)
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"
