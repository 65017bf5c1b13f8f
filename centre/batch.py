"""One batch of parsed uplink messages into PostgreSQL, in one transaction, idempotently.

A statement per table, each over all of the batch's rows (`unnest` of arrays): events once
by `event_id`; a ticket row only moves forward (a version not above the stored one changes
nothing, since shared subscriptions keep no order across workers); the latest telemetry per
device, and each device's day of battery and signal (`telemetry_daily`, every reading of the
batch); each site's status and last word. Rows go in sorted by key, so two workers writing
the same sites lock them in the same order. Should PostgreSQL refuse a batch for what one
message holds, the batch is written again a message at a time, each under a savepoint, and
the message it refuses becomes a dead letter with PostgreSQL's reason. The tickets written
have their spare part reserved, consumed or released in the same transaction (`parts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from . import parts, telemetry_daily
from .parse import Assets, Dead, Event, Parsed, Replayed, Status, Telemetry, TicketVersion, dead

Conn = psycopg.AsyncConnection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as received, with what `parse` made of it."""

    topic: str
    payload: bytes
    parsed: Sequence[Parsed]


@dataclass(slots=True)
class Written:
    stored: int = 0  # messages taken (an event new to the centre, a status, telemetry ...)
    duplicates: int = 0  # events the centre had already
    dead: int = 0
    reasons: list[str] = field(default_factory=list)  # of the dead, for the log
    escalations: list[str] = field(default_factory=list)  # escalation events new to the centre (JSON)
    parts_low: list[parts.Low] = field(default_factory=list)  # parts that went low at their depot


@dataclass(frozen=True, slots=True)
class SiteBook:
    """What the centre knows of sites before they speak: their topic and their area."""

    topic_root: str
    area_of: Callable[[str], str]


async def write(conn: Conn, batch: Sequence[Incoming], received_at: datetime, book: SiteBook) -> Written:
    """Write the batch in one transaction (the caller's connection, not in a transaction)."""
    try:
        async with conn.transaction():
            return await _write(conn, batch, received_at, book)
    except (psycopg.DataError, psycopg.IntegrityError):
        pass  # something one message holds; find it below
    out = Written()
    async with conn.transaction():
        for m in batch:
            try:
                async with conn.transaction():  # a savepoint
                    one = await _write(conn, [m], received_at, book)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                reason = f"refused by the database: {str(exc).strip().splitlines()[0][:200]}"
                refused = Incoming(m.topic, m.payload, [dead(m.topic, reason, m.payload)])
                one = await _write(conn, [refused], received_at, book)
            out.stored += one.stored
            out.duplicates += one.duplicates
            out.dead += one.dead
            out.reasons += one.reasons
            out.parts_low += one.parts_low
    return out


async def _write(conn: Conn, batch: Sequence[Incoming], received_at: datetime, book: SiteBook) -> Written:
    events: dict[str, Event] = {}
    tickets: dict[tuple[str, int], TicketVersion] = {}
    telemetry: dict[tuple[str, str], Telemetry] = {}
    every_reading: list[Telemetry] = []
    status: dict[str, Status] = {}
    replayed: dict[str, datetime] = {}
    assets: dict[str, Assets] = {}
    heard: set[str] = set()
    deads: list[Dead] = []
    for m in batch:
        for p in m.parsed:
            if isinstance(p, Dead):
                deads.append(p)
                continue
            if isinstance(p, Status):
                status[p.site_id] = p  # the last one received wins
                continue
            heard.add(p.site_id)
            if isinstance(p, Event):
                events.setdefault(p.event_id, p)
            elif isinstance(p, TicketVersion):
                key = (p.site_id, p.ticket_id)
                if key not in tickets or p.version > tickets[key].version:
                    tickets[key] = p
            elif isinstance(p, Telemetry):
                every_reading.append(p)
                tkey = (p.site_id, p.device_id)
                if tkey not in telemetry or p.at > telemetry[tkey].at:
                    telemetry[tkey] = p
            elif isinstance(p, Replayed):
                replayed[p.site_id] = max(p.at, replayed.get(p.site_id, p.at))
            elif isinstance(p, Assets) and (p.site_id not in assets or p.at > assets[p.site_id].at):
                assets[p.site_id] = p
    await _sites(conn, heard, status, replayed, received_at, book)
    new_ids = await _events(conn, events, received_at)
    parts_low = await write_tickets(conn, tickets, received_at)
    fresh = await _telemetry(conn, telemetry, received_at)
    await telemetry_daily.write(conn, every_reading)
    await _assets(conn, assets, received_at)
    await _dead(conn, deads, received_at)
    out = Written(dead=len(deads), reasons=[d.reason for d in deads], parts_low=parts_low)
    out.escalations = [e.payload for i, e in events.items() if e.kind == "escalation" and i in new_ids]
    for m in batch:
        ids = [p.event_id for p in m.parsed if isinstance(p, Event)]
        if any(isinstance(p, Dead) for p in m.parsed):
            continue
        readings = [p for p in m.parsed if isinstance(p, Telemetry)]
        if ids and not any(i in new_ids for i in ids):
            out.duplicates += 1
        elif readings and not any((k := (p.site_id, p.device_id)) in fresh and telemetry[k] is p for p in readings):
            out.duplicates += 1  # telemetry sent again, or older than the latest kept (its day still takes it)
        else:
            out.stored += 1
        for i in ids:
            new_ids.discard(i)  # the same event twice in one batch: the second is a duplicate
    return out


async def _sites(
    conn: Conn,
    heard: set[str],
    status: dict[str, Status],
    replayed: dict[str, datetime],
    at: datetime,
    book: SiteBook,
) -> None:
    ids = sorted(heard | status.keys())
    if not ids:
        return
    await conn.execute(
        """
        INSERT INTO sites AS s (id, topic_root, area, status, status_at, last_heard_at, replayed_at, first_heard_at)
        SELECT u.id, u.root, u.area, coalesce(u.status, 'unknown'), u.status_at, u.heard, u.replayed, %(at)s
        FROM unnest(%(id)b::text[], %(root)b::text[], %(area)b::text[], %(status)b::text[],
                    %(status_at)b::timestamptz[], %(heard)b::timestamptz[], %(replayed)b::timestamptz[])
             AS u(id, root, area, status, status_at, heard, replayed)
        ON CONFLICT (id) DO UPDATE SET
            area = excluded.area,
            status = CASE WHEN excluded.status_at >= coalesce(s.status_at, '-infinity')
                          THEN excluded.status ELSE s.status END,
            status_at = CASE WHEN excluded.status_at >= coalesce(s.status_at, '-infinity')
                             THEN excluded.status_at ELSE s.status_at END,
            last_heard_at = greatest(s.last_heard_at, excluded.last_heard_at),
            replayed_at = greatest(s.replayed_at, excluded.replayed_at)
        """,
        {
            "at": at,
            "id": ids,
            "root": [f"{book.topic_root}/{i}" for i in ids],
            "area": [book.area_of(i) for i in ids],
            "status": [("online" if status[i].online else "offline") if i in status else None for i in ids],
            "status_at": [at if i in status else None for i in ids],
            "heard": [at if i in heard else None for i in ids],
            "replayed": [replayed.get(i) for i in ids],
        },
    )


async def _events(conn: Conn, events: dict[str, Event], at: datetime) -> set[str]:
    if not events:
        return set()
    rows = [events[k] for k in sorted(events)]
    cur = await conn.execute(
        """
        INSERT INTO events (event_id, site_id, kind, topic, at, payload, received_at)
        SELECT u.e, u.s, u.k, u.t, u.a, u.p::jsonb, %s
        FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[])
             AS u(e, s, k, t, a, p)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
        """,
        (
            at,
            [e.event_id for e in rows],
            [e.site_id for e in rows],
            [e.kind for e in rows],
            [e.topic for e in rows],
            [e.at for e in rows],
            [e.payload for e in rows],
        ),
    )
    return {str(r[0]) for r in await cur.fetchall()}


async def write_tickets(conn: Conn, tickets: dict[tuple[str, int], TicketVersion], at: datetime) -> list[parts.Low]:
    """Each ticket's row, moved only forward (a version above the stored one), then its part
    reserved, consumed or released as its stored version asks; the parts that went low."""
    if not tickets:
        return []
    rows = [tickets[k] for k in sorted(tickets)]
    await conn.execute(
        """
        INSERT INTO tickets AS t (site_id, ticket_id, version, state, fault, device, fault_active,
                                  opened_at, changed_at, payload, received_at)
        SELECT u.s, u.i, u.v, u.st, u.f, u.d, u.fa, u.o, u.c, u.p::jsonb, %s
        FROM unnest(%b::text[], %b::bigint[], %b::integer[], %b::text[], %b::text[], %b::text[], %b::boolean[],
                    %b::timestamptz[], %b::timestamptz[], %b::text[]) AS u(s, i, v, st, f, d, fa, o, c, p)
        ON CONFLICT (site_id, ticket_id) DO UPDATE SET
            version = excluded.version, state = excluded.state, fault = excluded.fault, device = excluded.device,
            fault_active = excluded.fault_active, opened_at = excluded.opened_at, changed_at = excluded.changed_at,
            payload = excluded.payload, received_at = excluded.received_at
        WHERE excluded.version > t.version
        """,
        (
            at,
            [r.site_id for r in rows],
            [r.ticket_id for r in rows],
            [r.version for r in rows],
            [r.state for r in rows],
            [r.fault for r in rows],
            [r.device for r in rows],
            [r.fault_active for r in rows],
            [r.opened_at for r in rows],
            [r.changed_at for r in rows],
            [r.ticket for r in rows],
        ),
    )
    return await parts.settle_tickets(conn, tickets.keys(), at)


async def _telemetry(conn: Conn, telemetry: dict[tuple[str, str], Telemetry], at: datetime) -> set[tuple[str, str]]:
    """Each device's latest reading, kept if newer than the stored one; the devices written."""
    if not telemetry:
        return set()
    rows = [telemetry[k] for k in sorted(telemetry)]
    cur = await conn.execute(
        """
        INSERT INTO telemetry_latest AS l (site_id, device_id, at, "values", received_at)
        SELECT u.s, u.d, u.a, u.v::jsonb -> 'values', %s
        FROM unnest(%b::text[], %b::text[], %b::timestamptz[], %b::text[]) AS u(s, d, a, v)
        ON CONFLICT (site_id, device_id) DO UPDATE SET
            at = excluded.at, "values" = excluded."values", received_at = excluded.received_at
        WHERE excluded.at > l.at
        RETURNING site_id, device_id
        """,
        (at, [r.site_id for r in rows], [r.device_id for r in rows], [r.at for r in rows], [r.payload for r in rows]),
    )
    return {(str(s), str(d)) for s, d in await cur.fetchall()}


async def _assets(conn: Conn, assets: dict[str, Assets], at: datetime) -> None:
    """Each site's register and plan, kept if newer than the stored one (sites restart rarely)."""
    for a in assets.values():
        await conn.execute(
            """
            INSERT INTO site_assets AS s (site_id, at, doc, received_at) VALUES (%s, %s, %s::jsonb, %s)
            ON CONFLICT (site_id) DO UPDATE SET at = excluded.at, doc = excluded.doc, received_at = excluded.received_at
            WHERE excluded.at > s.at
            """,
            (a.site_id, a.at, a.doc, at),
        )


async def _dead(conn: Conn, deads: list[Dead], at: datetime) -> None:
    if not deads:
        return
    await conn.execute(
        """
        INSERT INTO dead_letters (topic, reason, payload, payload_size, received_at)
        SELECT u.t, u.r, u.p, u.n, %s FROM unnest(%b::text[], %b::text[], %b::bytea[], %b::integer[]) AS u(t, r, p, n)
        """,
        (at, [d.topic for d in deads], [d.reason for d in deads], [d.payload for d in deads], [d.size for d in deads]),
    )
