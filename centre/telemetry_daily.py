"""A bounded daily history of each device's battery and signal (`telemetry_daily`): per UTC
day, site and device, each quantity's minimum, maximum and last reading, and how many readings
the day took.

The arithmetic is pure and here: `of_reading` makes one reading a day's summary, `merge` folds
two summaries of one day into one, `days` folds a batch's readings per (day, site, device).
`write` upserts a batch's summaries in the batch's transaction, PostgreSQL applying `merge`
to the stored row (the same rules, in SQL); `prune` deletes the oldest days a bounded number
of rows at a time; `month` reads a site's days for the monthly report.

A quantity's `last` is the one of the latest reading that carried it. Readings of a device
come in order almost always; one arriving after a later one of its day (shared subscriptions
keep no order across workers) leaves `last` alone unless the day had none of that quantity.
A reading with the same time as the day's latest, alone in its batch, is the same reading
sent again: it changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

import psycopg

if TYPE_CHECKING:
    from .parse import Telemetry

Conn = psycopg.AsyncConnection[tuple[object, ...]]

# The telemetry values kept per day (alarmgw.model's names for them), in the columns' order.
KEYS = ("battery_v", "battery_pct", "rssi_dbm", "link_quality")
PRUNE_MAX_ROWS = 20_000  # deleted in one judging turn at most: a big first prune spreads over turns

Numbers = tuple[float | None, ...]  # a reading's value of each of KEYS, None where it has none


class Span(NamedTuple):
    """One quantity over a day (a tuple: made for every reading a batch takes)."""

    min: float
    max: float
    last: float


class Day(NamedTuple):
    """One device's day: readings taken, the latest one's time, and each of KEYS' span."""

    samples: int
    last_at: datetime
    spans: tuple[Span | None, ...]


def numbers(values: Mapping[str, object]) -> Numbers:
    """The kept quantities of a telemetry message's `values` (a true or false is no number)."""
    out: list[float | None] = []
    for k in KEYS:
        v = values.get(k)
        try:
            f = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
        except OverflowError:  # a whole number past a double's range
            f = math.nan
        out.append(f if math.isfinite(f) else None)
    return tuple(out)


def of_reading(at: datetime, values: Numbers) -> Day | None:
    """One reading as a day's summary; None if it carries none of the kept quantities."""
    if values.count(None) == len(values):
        return None
    return Day(1, at, tuple(None if v is None else Span(v, v, v) for v in values))


def _span(stored: Span | None, incoming: Span | None, incoming_is_later: bool) -> Span | None:
    if stored is None or incoming is None:
        return stored or incoming
    last = incoming.last if incoming_is_later else stored.last
    return Span(min(stored.min, incoming.min), max(stored.max, incoming.max), last)


def merge(stored: Day, incoming: Day) -> Day:
    """`incoming` folded into `stored` (both of one device and day), as the upsert does."""
    if incoming.samples == 1 and incoming.last_at == stored.last_at:
        return stored  # the day's latest reading sent again
    later = incoming.last_at >= stored.last_at
    return Day(
        stored.samples + incoming.samples,
        max(stored.last_at, incoming.last_at),
        tuple(_span(s, i, later) for s, i in zip(stored.spans, incoming.spans, strict=True)),
    )


Key = tuple[date, str, str]  # day (UTC), site, device


def days(readings: Iterable[Telemetry]) -> dict[Key, Day]:
    """A batch's readings folded per (day, site, device), oldest first, each reading once."""
    out: dict[Key, Day] = {}
    seen: set[tuple[str, str, datetime]] = set()
    for r in sorted(readings, key=_at):
        one = of_reading(r.at, r.numbers)
        if one is None or (r.site_id, r.device_id, r.at) in seen:
            continue
        seen.add((r.site_id, r.device_id, r.at))
        key = (utc_day(r.at), r.site_id, r.device_id)
        stored = out.get(key)
        out[key] = one if stored is None else merge(stored, one)
    return out


def _at(r: Telemetry) -> datetime:
    return r.at


def utc_day(at: datetime) -> date:
    """The UTC day of an aware time."""
    return at.astimezone(UTC).date()


# --- PostgreSQL ------------------------------------------------------------------------------

COLUMNS = ", ".join(f"{k}_{p}" for k in KEYS for p in ("min", "max", "last"))
_SET = ",\n    ".join(
    f"{k}_min = least(d.{k}_min, excluded.{k}_min), {k}_max = greatest(d.{k}_max, excluded.{k}_max),"
    f" {k}_last = CASE WHEN excluded.last_at >= d.last_at THEN coalesce(excluded.{k}_last, d.{k}_last)"
    f" ELSE coalesce(d.{k}_last, excluded.{k}_last) END"
    for k in KEYS
)
UPSERT = f"""
INSERT INTO telemetry_daily AS d (day, site_id, device_id, samples, last_at, {COLUMNS})
SELECT * FROM unnest(%b::date[], %b::text[], %b::text[], %b::integer[], %b::timestamptz[],
                     {", ".join(["%b::float8[]"] * (3 * len(KEYS)))})
ON CONFLICT (day, site_id, device_id) DO UPDATE SET
    samples = d.samples + excluded.samples,
    last_at = greatest(d.last_at, excluded.last_at),
    {_SET}
WHERE NOT (excluded.samples = 1 AND excluded.last_at = d.last_at)
"""


async def write(conn: Conn, readings: Iterable[Telemetry]) -> int:
    """Upsert the batch's days, in key order (two workers lock rows in the same order); how
    many (day, site, device) rows the batch touched."""
    folded = days(readings)
    if not folded:
        return 0
    keys = sorted(folded)
    rows = [folded[k] for k in keys]
    spans: list[list[float | None]] = []
    for i in range(len(KEYS)):
        of_key = [r.spans[i] for r in rows]
        spans.append([None if s is None else s.min for s in of_key])
        spans.append([None if s is None else s.max for s in of_key])
        spans.append([None if s is None else s.last for s in of_key])
    await conn.execute(
        UPSERT,
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [r.samples for r in rows],
            [r.last_at for r in rows],
            *spans,
        ),
    )
    return len(keys)


async def prune(conn: Conn, now: datetime, keep_days: int, max_rows: int = PRUNE_MAX_ROWS) -> int:
    """Delete days older than `keep_days` before today (UTC), at most `max_rows` of them;
    how many were deleted."""
    oldest = utc_day(now) - timedelta(days=keep_days)
    cur = await conn.execute(
        "DELETE FROM telemetry_daily WHERE ctid = ANY(ARRAY(SELECT ctid FROM telemetry_daily WHERE day < %s LIMIT %s))",
        (oldest, max_rows),
    )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class DeviceDay:
    """One device's day as the report reads it: each of KEYS' span, or None."""

    device: str
    day: date
    samples: int
    last_at: datetime
    spans: Mapping[str, Span]


async def month(conn: Conn, site: str, first: date, last: date, max_devices: int) -> list[DeviceDay]:
    """A site's days from `first` to `last` (UTC, both included) of its first `max_devices`
    devices by name, by device and day."""
    span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    cur = await conn.execute(
        f"""
        SELECT device_id, day, samples, last_at, {COLUMNS} FROM telemetry_daily
        WHERE day = ANY(%(days)s::date[]) AND site_id = %(site)s AND device_id IN (
            SELECT DISTINCT device_id FROM telemetry_daily
            WHERE day = ANY(%(days)s::date[]) AND site_id = %(site)s ORDER BY device_id LIMIT %(n)s)
        ORDER BY device_id, day
        """,
        {"days": span, "site": site, "n": max_devices},
    )
    out = []
    for row in await cur.fetchall():
        device, day, samples, last_at, *values = row
        assert isinstance(day, date) and isinstance(last_at, datetime)
        out.append(DeviceDay(str(device), day, int(str(samples)), last_at, _spans(values)))
    return out


def _spans(values: Sequence[object]) -> dict[str, Span]:
    out = {}
    for i, k in enumerate(KEYS):
        lo, hi, last = values[3 * i : 3 * i + 3]
        if isinstance(lo, float) and isinstance(hi, float) and isinstance(last, float):
            out[k] = Span(lo, hi, last)
    return out
