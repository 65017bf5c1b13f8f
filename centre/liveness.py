"""A site gone dark is the centre's ticket: `site_offline`, with a gateway ticket's clocks.

A site is dark when its retained status says `offline` (its Last Will: the broker lost the
gateway), or when it claims `online` and nothing has come from it for `offline_after_s`.
The ticket opens at detection (the Last Will's arrival, or the moment the silence passed
the bound), lists what the site had open when it went dark, and restores once the site is
online and has sent something since; dark again before a person closed it, it recurs (one
episode, as on a gateway). `judge` is pure; `LivenessRunner` applies it every
`check_interval_s` in one of the workers at a time (a transaction-scoped advisory lock).

The centre's tickets escalate like a gateway's: in the same turn, each mark a running clock
of an open centre ticket has reached (`diagnostics.escalation`) is recorded once in
`centre_escalations` and, after the turn commits, handed to `on_escalations` (the notifier).
So do the sites' planned maintenance visits with none done (`visit_marks`, recorded in
`visit_escalations`, handed to `on_visits`). The turn also deletes what is kept only for a
while: dead letters, and the oldest days of the devices' daily readings.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal, LiteralString

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from alarmgw.clock import Clock, iso, parse_iso
from alarmgw.diagnostics.escalation import Escalation, due_escalations
from alarmgw.diagnostics.sla import Area
from alarmgw.diagnostics.tickets import Ticket, TicketState, ticket_json

from . import telemetry_daily, visit_marks
from .config import SitesConfig
from .db import LIVENESS_LOCK
from .rota import VisitNotice
from .rota import title as rota_title

log = logging.getLogger(__name__)

FAULT = "site_offline"
TITLE = "Site offline: no word from its gateway"
IMPACT = "critical: site unmonitored, no word from its gateway"
BY = "centre"
Conn = psycopg.AsyncConnection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class DarkTicket:
    """The site's centre ticket that is not closed yet."""

    id: int
    fault_active: bool
    dark_since: datetime


@dataclass(frozen=True, slots=True)
class SiteState:
    site_id: str
    status: Literal["unknown", "online", "offline"]
    status_at: datetime | None
    last_heard_at: datetime | None
    area: Area
    ticket: DarkTicket | None = None


@dataclass(frozen=True, slots=True)
class GoneDark:
    site_id: str
    detected_at: datetime
    cause: str


@dataclass(frozen=True, slots=True)
class BackOnline:
    site_id: str
    ticket_id: int
    at: datetime


def judge(sites: Iterable[SiteState], now: datetime, offline_after_s: float) -> list[GoneDark | BackOnline]:
    """What to do about each site at `now`: open (or recur) a dark-site ticket, restore one,
    or nothing."""
    out: list[GoneDark | BackOnline] = []
    bound = timedelta(seconds=offline_after_s)
    for s in sites:
        dark = _dark(s, now, bound)
        active = s.ticket is not None and s.ticket.fault_active
        if dark is not None and not active:
            out.append(dark)
        elif dark is None and s.ticket is not None and active:
            heard_since = s.last_heard_at is not None and s.last_heard_at > s.ticket.dark_since
            if heard_since and s.status != "offline":
                out.append(BackOnline(s.site_id, s.ticket.id, now))
    return out


def _dark(s: SiteState, now: datetime, bound: timedelta) -> GoneDark | None:
    if s.status == "offline":
        at = s.status_at or now
        return GoneDark(s.site_id, at, "status offline: the broker lost the gateway's connection (its Last Will)")
    words = [t for t in (s.last_heard_at, s.status_at if s.status == "online" else None) if t is not None]
    if not words:
        return None  # never heard from: nothing to miss yet
    last = max(words)
    if now - last > bound:
        cause = f"silent for more than {bound.total_seconds():g} s while its status says {s.status}"
        return GoneDark(s.site_id, last + bound, cause)
    return None


def dark_ticket(site_id: str, area: Area, detected_at: datetime, now: datetime, ticket_id: int, cause: str) -> Ticket:
    """The centre's ticket for a site gone dark, with the clocks of any other ticket."""
    return Ticket(
        ticket_id,
        site_id,
        site_id,  # the device is the site's gateway
        "gateway",
        FAULT,
        TITLE,
        "",
        area,
        "equipment",
        IMPACT,
        detected_at,
        now,
        cause=cause,
    )


def ticket_doc(t: Ticket, now: datetime) -> dict[str, object]:
    """The ticket in the shape of a gateway's ticket-event `ticket` (the same serializer),
    with its area, which the site's uplink does not carry and the centre's ticket needs."""
    return {**ticket_json(t, now), "area": t.area}


def ticket_from_doc(doc: dict[str, object]) -> Ticket:
    """The inverse of `ticket_doc`, for the centre's own tickets."""

    def at(key: str) -> datetime | None:
        v = doc.get(key)
        return parse_iso(str(v)) if v else None

    return Ticket(
        int(str(doc["id"])),
        str(doc["site"]),
        str(doc["device"]),
        str(doc["device_kind"]),
        str(doc["fault"]),
        str(doc["title"]),
        str(doc["location"]),
        "suburb" if doc.get("area") == "suburb" else "city",
        "accessory" if doc.get("repair_class") == "accessory" else "equipment",
        str(doc["impact"]),
        parse_iso(str(doc["opened_at"])),
        parse_iso(str(doc["raised_at"])),
        state=TicketState(str(doc["state"])),
        acknowledged_at=at("acknowledged_at"),
        dispatched_at=at("dispatched_at"),
        on_site_at=at("on_site_at"),
        resolved_at=at("resolved_at"),
        closed_at=at("closed_at"),
        restored_at=at("restored_at"),
        fault_active=bool(doc["fault_active"]),
        occurrences=int(str(doc["occurrences"])),
        cause=str(doc.get("cause", "")),
        version=int(str(doc["version"])),
    )


class LivenessRunner:
    """Judges every site each `check_interval_s`; one worker at a time does it."""

    def __init__(
        self, pool: AsyncConnectionPool, sites: SitesConfig, clock: Clock, ready: Callable[[], bool] = lambda: True
    ) -> None:
        self.pool = pool
        self.sites = sites
        self.clock = clock
        # Whether this worker hears the broker now: a centre cut off from its broker hears
        # no site, and that silence is the centre's, not the sites'.
        self.ready = ready
        self.rounds = 0
        self.skipped = 0  # turns passed because this worker did not hear the broker
        # Marks reached by the centre's own tickets' clocks, each once, after its turn commits.
        self.on_escalations: Callable[[Sequence[tuple[str, Escalation]]], None] | None = None
        self.escalated: list[tuple[str, Escalation]] = []  # those of the last turn
        # Marks reached by the sites' planned maintenance visits, each once, after its turn commits.
        self.on_visits: Callable[[Sequence[VisitNotice]], None] | None = None
        self.visits: list[VisitNotice] = []  # those of the last turn
        self._visits_judged: tuple[date, float] | None = None  # UTC day and monotonic time
        self.looked = asyncio.Event()  # pulsed after each turn, judged or skipped

    async def run(self) -> None:
        while True:
            await self.clock.sleep_until(self.clock.monotonic() + self.sites.check_interval_s)
            if not self.ready():
                self.skipped += 1
            else:
                try:
                    await self.round()
                except (psycopg.OperationalError, PoolTimeout) as exc:
                    log.warning("liveness: database: %s; trying again next round", str(exc).strip()[:200])
            self.looked.set()
            self.looked.clear()

    async def round(self) -> list[GoneDark | BackOnline] | None:
        """One look at every site; None if another worker holds the turn."""
        now = self.clock.now()
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LIVENESS_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return None
            cur = await conn.execute(
                """
                SELECT s.id, s.status, s.status_at, s.last_heard_at, coalesce(s.area, %s),
                       t.id, t.fault_active, t.dark_since
                FROM sites s LEFT JOIN centre_tickets t
                  ON t.site_id = s.id AND t.fault = %s AND t.state <> 'closed'
                """,
                (self.sites.default_area, FAULT),
            )
            states = [
                SiteState(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    DarkTicket(r[5], r[6], r[7]) if r[5] is not None else None,
                )
                for r in await cur.fetchall()
            ]
            decisions = judge(states, now, self.sites.offline_after_s)
            by_site = {s.site_id: s for s in states}
            for d in decisions:
                if isinstance(d, GoneDark):
                    await _gone_dark(conn, d, by_site[d.site_id], now)
                else:
                    await _back_online(conn, d)
            escalated = await _escalate(conn, now)
            visits: list[VisitNotice] = []
            judged: tuple[date, float] | None = None
            mono = self.clock.monotonic()
            if visit_marks.time_to_judge(self._visits_judged, now, mono):
                visits = await visit_marks.escalate(conn, now, self.sites.visit_marks_days)
                judged = (now.astimezone(UTC).date(), mono)
            await conn.execute(
                "DELETE FROM dead_letters WHERE received_at < %s",
                (now - timedelta(days=self.sites.dead_letters_keep_days),),
            )
            pruned = await telemetry_daily.prune(conn, now, self.sites.telemetry_daily_keep_days)
        if pruned:
            keep = self.sites.telemetry_daily_keep_days
            log.info("daily readings: %d device-days older than %d days deleted", pruned, keep)
        if judged is not None:  # committed: the next look is due a day or EVERY_S on
            self._visits_judged = judged
        self.rounds += 1
        self.escalated = escalated
        if escalated:
            for site_id, e in escalated:
                log.warning("site %s: %s", site_id, e.describe())
            if self.on_escalations is not None:
                self.on_escalations(escalated)
        self.visits = visits
        if visits:
            for v in visits:
                log.warning("%s", rota_title(v))
            if self.on_visits is not None:
                self.on_visits(visits)
        return decisions


async def _gone_dark(c: Conn, d: GoneDark, s: SiteState, now: datetime) -> None:
    site_open = await _open_tickets(c, d.site_id)
    note = {"at": iso(now), "action": "opened", "by": BY, "note": d.cause}
    if s.ticket is None:
        ticket_id = await _one(c, "SELECT nextval(pg_get_serial_sequence('centre_tickets', 'id'))")
        t = dark_ticket(d.site_id, s.area, d.detected_at, now, int(str(ticket_id)), d.cause)
        await c.execute(
            """
            INSERT INTO centre_tickets (id, site_id, fault, state, fault_active, opened_at, dark_since, version,
                                        ticket, site_open, history)
            VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb)
            """,
            (
                t.id,
                t.site_id,
                FAULT,
                t.state.value,
                t.opened_at,
                d.detected_at,
                t.version,
                json.dumps(ticket_doc(t, now)),
                json.dumps(site_open),
                json.dumps([note]),
            ),
        )
        log.warning("site %s dark: ticket %s opened (%s)", d.site_id, t.id, d.cause)
        return
    doc = await _one(c, "SELECT ticket FROM centre_tickets WHERE id = %s FOR UPDATE", (s.ticket.id,))
    t = ticket_from_doc(doc).recurred()  # type: ignore[arg-type]
    note["action"] = "recurred"
    await c.execute(
        """
        UPDATE centre_tickets SET fault_active = true, restored_at = NULL, dark_since = %s, version = %s,
               ticket = %s::jsonb, site_open = %s::jsonb, history = history || %s::jsonb
        WHERE id = %s
        """,
        (d.detected_at, t.version, json.dumps(ticket_doc(t, now)), json.dumps(site_open), json.dumps([note]), t.id),
    )
    log.warning("site %s dark again: ticket %s recurred (%s)", d.site_id, t.id, d.cause)


async def _back_online(c: Conn, d: BackOnline) -> None:
    doc = await _one(c, "SELECT ticket FROM centre_tickets WHERE id = %s FOR UPDATE", (d.ticket_id,))
    t = ticket_from_doc(doc).restored(d.at)  # type: ignore[arg-type]
    note = {"at": iso(d.at), "action": "restored", "by": BY, "note": "the site is online and sending again"}
    await c.execute(
        """
        UPDATE centre_tickets SET fault_active = false, restored_at = %s, version = %s,
               ticket = %s::jsonb, history = history || %s::jsonb
        WHERE id = %s
        """,
        (d.at, t.version, json.dumps(ticket_doc(t, d.at)), json.dumps([note]), t.id),
    )
    log.info("site %s back: ticket %s restored", d.site_id, t.id)


async def move(c: Conn, site_id: str, ticket_id: int, to: TicketState, at: datetime, by: str, note: str) -> Ticket:
    """A person moves a centre ticket along the lifecycle, at the centre (nothing to send to
    the site: the ticket is the centre's); IllegalTransition if it may not, LookupError if
    there is no such ticket. The caller holds the transaction."""
    cur = await c.execute(
        "SELECT ticket FROM centre_tickets WHERE site_id = %s AND id = %s FOR UPDATE", (site_id, ticket_id)
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no centre ticket {ticket_id} at site {site_id}")
    t = ticket_from_doc(row[0]).moved(to, at)  # type: ignore[arg-type]
    entry = {"at": iso(at), "action": to.value, "by": by, "note": note}
    await c.execute(
        """
        UPDATE centre_tickets SET state = %s, version = %s, ticket = %s::jsonb, history = history || %s::jsonb
        WHERE id = %s
        """,
        (t.state.value, t.version, json.dumps(ticket_doc(t, at)), json.dumps([entry]), ticket_id),
    )
    log.info("site %s: centre ticket %s %s by %s", site_id, ticket_id, to.value, by)
    return t


async def _escalate(c: Conn, now: datetime) -> list[tuple[str, Escalation]]:
    """Record the marks reached by the running clocks of open centre tickets, each once."""
    cur = await c.execute("SELECT site_id, ticket FROM centre_tickets WHERE state NOT IN ('resolved', 'closed')")
    tickets = [(str(site_id), ticket_from_doc(doc)) for site_id, doc in await cur.fetchall()]  # type: ignore[arg-type]
    cur = await c.execute(
        "SELECT ticket_id, clock, mark_s FROM centre_escalations"
        " WHERE ticket_id IN (SELECT id FROM centre_tickets WHERE state NOT IN ('resolved', 'closed'))"
    )
    sent = {(int(str(i)), str(clock), float(str(mark))) for i, clock, mark in await cur.fetchall()}
    out = []
    for site_id, t in tickets:
        for e in due_escalations([t], now, sent=sent):
            cur = await c.execute(
                """
                INSERT INTO centre_escalations (ticket_id, clock, mark_s, due, at, noticed_at)
                VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
                """,
                (e.ticket_id, e.clock, e.mark_s, e.due, e.at, now),
            )
            if cur.rowcount == 1:
                out.append((site_id, e))
    return out


async def _open_tickets(conn: Conn, site_id: str) -> Sequence[dict[str, object]]:
    cur = await conn.execute(
        """
        SELECT ticket_id, device, fault, state,
               to_char(opened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        FROM tickets
        WHERE site_id = %s AND state NOT IN ('resolved', 'closed') ORDER BY ticket_id
        """,
        (site_id,),
    )
    return [{"id": r[0], "device": r[1], "fault": r[2], "state": r[3], "opened_at": r[4]} for r in await cur.fetchall()]


async def _one(conn: Conn, query: LiteralString, params: tuple[object, ...] = ()) -> object:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    if row is None:
        raise AssertionError(f"no row from {query[:60]}")
    return row[0]
