"""Tickets and their log. At most one ticket per (device, fault) is not closed: a fault that
persists across a restart finds its ticket again instead of opening a second one.

Every write of a ticket puts its uplink message into the outbox in the same transaction,
whoever writes it (the gateway, the command line, the HTTP API): a move is a move.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from alarmgw.clock import iso, parse_iso
from alarmgw.diagnostics.tickets import Ticket, TicketError, TicketState

from ..messages import OutboxMessage, ticket_messages
from .db import MAX_ID, Db, StoreError, TicketNotFound
from .outbox import Outbox

_DATES = (
    "opened_at",
    "raised_at",
    "acknowledged_at",
    "dispatched_at",
    "on_site_at",
    "resolved_at",
    "closed_at",
    "restored_at",
    "down_since",
    "back_at",
)

MAX_USER_ACTION = 1000  # characters of the user's measures kept on a ticket


class Tickets:
    def __init__(self, db: Db, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox

    # --- reading ------------------------------------------------------------------------

    def get(self, ticket_id: int) -> Ticket:
        if not 1 <= ticket_id <= MAX_ID:
            raise TicketNotFound(f"no ticket {ticket_id} in {self._db.path}: ticket numbers run from 1 to {MAX_ID}")
        row = self._db.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id} in {self._db.path}")
        return _from_row(row)

    def live(self, device_id: str, fault: str) -> Ticket | None:
        """The ticket of this (device, fault) that is not closed, if any."""
        row = self._db.conn.execute(
            "SELECT * FROM tickets WHERE device_id = ? AND fault = ? AND state != 'closed'", (device_id, fault)
        ).fetchone()
        return _from_row(row) if row else None

    def all(self, *, include_closed: bool = True) -> list[Ticket]:
        sql = "SELECT * FROM tickets" + ("" if include_closed else " WHERE state != 'closed'") + " ORDER BY id"
        return [_from_row(r) for r in self._db.conn.execute(sql)]

    def watched_for_downtime(self) -> list[Ticket]:
        """Tickets whose device is watched for downtime: the engineer is on site, the
        device was taken out of service, or a downtime they started still runs."""
        rows = self._db.conn.execute(
            "SELECT * FROM tickets WHERE state = 'on_site' OR (state != 'closed' AND"
            " (out_of_service = 1 OR (down_since IS NOT NULL AND back_at IS NULL))) ORDER BY id"
        )
        return [_from_row(r) for r in rows]

    def active_faults(self) -> list[tuple[str, str]]:
        """(device, fault) of live tickets whose fault has not restored."""
        rows = self._db.conn.execute(
            "SELECT device_id, fault FROM tickets WHERE state != 'closed' AND fault_active = 1"
        )
        return [(r[0], r[1]) for r in rows]

    def log(self, ticket_id: int) -> list[dict[str, str]]:
        """Every change of the ticket, oldest first: at, action, state, actor, note."""
        rows = self._db.conn.execute(
            "SELECT at, action, state, actor, note FROM ticket_log WHERE ticket_id = ? ORDER BY rowid", (ticket_id,)
        )
        return [dict(r) for r in rows]

    # --- writing ------------------------------------------------------------------------

    def write(
        self,
        ticket: Ticket,
        action: str,
        at: datetime,
        *,
        actor: str = "gateway",
        note: str = "",
        messages: list[OutboxMessage] | None = None,
    ) -> Ticket:
        """Store a new ticket (id None) or a changed one (provided nobody changed it since it
        was read), its log line, its uplink message and `messages` (e.g. the fault event
        behind the change): all of it, or none of it. Returns the ticket as stored."""
        with self._db.tx() as conn:
            stored = self._write(conn, ticket, action, at, actor, note)
            root = self._outbox.root(conn)
            queued = [*(messages or []), *(ticket_messages(root, stored, action, at) if root else [])]
            self._outbox.add(conn, queued)
        return stored

    def set_user_action(self, ticket_id: int, text: str, at: datetime, *, actor: str) -> Ticket:
        """What the customer did about the failure, as whoever talked to them recorded it
        (the failure record's "measures taken by the user"); a new version of the ticket."""
        t = self.get(ticket_id)
        changed = dataclasses.replace(t, user_action=text[:MAX_USER_ACTION], version=t.version + 1)
        return self.write(changed, "user_action", at, actor=actor, note=text[:MAX_USER_ACTION])

    def set_out_of_service(
        self, ticket_id: int, out: bool, at: datetime, *, actor: str, last_heard: datetime | None = None
    ) -> Ticket:
        """An engineer takes the ticket's device out of service (its downtime runs from
        `last_heard`, by default `at`) or puts it back in service (its next reading ends the
        downtime). Unchanged if it already is so; TicketError on a closed ticket."""
        t = self.get(ticket_id)
        if t.state is TicketState.CLOSED:
            raise TicketError(f"ticket {ticket_id} is closed: its device's service is no longer its business")
        if out == t.out_of_service:
            return t
        changed = t.marked_out(min(last_heard or at, at)) if out else t.marked_in()
        return self.write(changed, "out_of_service" if out else "in_service", at, actor=actor, note=t.device_id)

    def move(self, ticket_id: int, to: TicketState, at: datetime, *, actor: str, note: str = "") -> Ticket:
        """A person moves a ticket along its lifecycle; raises IllegalTransition."""
        return self.write(self.get(ticket_id).moved(to, at), to.value, at, actor=actor, note=note)

    def _write(
        self, conn: sqlite3.Connection, ticket: Ticket, action: str, at: datetime, actor: str, note: str
    ) -> Ticket:
        row = _to_row(ticket)
        row.pop("id")
        if ticket.id is None:
            cols, marks = ", ".join(row), ", ".join("?" for _ in row)
            ticket_id = conn.execute(f"INSERT INTO tickets ({cols}) VALUES ({marks})", tuple(row.values())).lastrowid
            assert ticket_id is not None
            ticket = dataclasses.replace(ticket, id=ticket_id)
            note = note or ticket.title
        else:
            sets = ", ".join(f"{c} = ?" for c in row)
            cur = conn.execute(
                f"UPDATE tickets SET {sets} WHERE id = ? AND version = ?",
                (*row.values(), ticket.id, ticket.version - 1),
            )
            if cur.rowcount != 1:
                raise StoreError(f"ticket {ticket.id} changed meanwhile; read it again")
        assert ticket.id is not None
        conn.execute(
            "INSERT INTO ticket_log (ticket_id, at, action, state, actor, note) VALUES (?, ?, ?, ?, ?, ?)",
            (ticket.id, iso(at), action, str(ticket.state), actor, note),
        )
        return ticket


def _to_row(t: Ticket) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in Ticket.__dataclass_fields__:
        v = getattr(t, name)
        if name in _DATES:
            v = iso(v) if v is not None else None
        elif name in ("affected", "casualties", "sia"):
            v = json.dumps(list(v)) if v is not None else None
        elif name in ("evidence", "diagnosis"):
            v = json.dumps(dict(v), sort_keys=True)
        elif name in ("fault_active", "in_warranty", "out_of_service"):
            v = None if v is None else int(v)
        elif name == "state":
            v = str(v)
        row[name] = v
    return row


def _from_row(row: Mapping[str, Any]) -> Ticket:
    kw: dict[str, Any] = {}
    for name in Ticket.__dataclass_fields__:
        v = row[name]
        if name in _DATES:
            v = parse_iso(v) if v is not None else None
        elif name in ("affected", "casualties"):
            v = tuple(json.loads(v))
        elif name == "sia":
            v = tuple(json.loads(v)) if v else None
        elif name in ("evidence", "diagnosis"):
            v = json.loads(v)
        elif name in ("fault_active", "out_of_service"):
            v = bool(v)
        elif name == "in_warranty":
            v = None if v is None else bool(v)
        elif name == "state":
            v = TicketState(v)
        kw[name] = v
    return Ticket(**kw)
