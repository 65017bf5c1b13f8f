"""The local store: tickets and their history in one SQLite file (WAL).

Writes happen only when a fault or a ticket changes, never per reading. The schema keeps at
most one ticket per (device, fault) that is not closed: a fault that persists across a
restart finds its ticket again instead of opening a second one.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alarmgw.diagnostics.tickets import Ticket, TicketState

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_kind TEXT NOT NULL,
    fault TEXT NOT NULL,
    title TEXT NOT NULL,
    location TEXT NOT NULL,
    area TEXT NOT NULL,
    repair_class TEXT NOT NULL,
    impact TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    contact_id INTEGER,
    sia TEXT,
    state TEXT NOT NULL,
    acknowledged_at TEXT,
    dispatched_at TEXT,
    on_site_at TEXT,
    resolved_at TEXT,
    closed_at TEXT,
    fault_active INTEGER NOT NULL,
    restored_at TEXT,
    occurrences INTEGER NOT NULL,
    affected TEXT NOT NULL,
    casualties TEXT NOT NULL,
    evidence TEXT NOT NULL,
    cause TEXT NOT NULL,
    diagnosis TEXT NOT NULL DEFAULT '{}',
    user_action TEXT NOT NULL,
    in_warranty INTEGER,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_ticket_per_fault
    ON tickets (device_id, fault) WHERE state != 'closed';
CREATE TABLE IF NOT EXISTS ticket_log (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_log_by_ticket ON ticket_log (ticket_id);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_kind ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS history (
    device_id TEXT NOT NULL,
    at TEXT NOT NULL,
    readings TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_device ON history (device_id, at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS escalations (
    ticket_id INTEGER NOT NULL,
    clock TEXT NOT NULL,
    mark_s REAL NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (ticket_id, clock, mark_s)
);
"""

# Columns added after the first release, with their definitions, for stores made before.
MIGRATIONS = {
    "tickets": {"diagnosis": "TEXT NOT NULL DEFAULT '{}'"},
    "audit": {"channel": "TEXT NOT NULL DEFAULT 'mqtt'"},  # how the request came: mqtt | http
}

# Outbox kinds, in the order they are given up when the outbox is full: telemetry first;
# fault and ticket events never (the bound is exceeded, loudly, rather than lose them).
EVICTABLE = ("telemetry",)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    kind: str  # ticket | fault | telemetry
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


# Builds the messages a ticket change sends, inside the transaction that stores it.
OutboxHook = Callable[[Ticket, str, datetime], list[OutboxMessage]]

_DATES = (
    "opened_at",
    "raised_at",
    "acknowledged_at",
    "dispatched_at",
    "on_site_at",
    "resolved_at",
    "closed_at",
    "restored_at",
)


def iso(at: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


MAX_ID = 2**63 - 1  # SQLite's largest integer, so the largest ticket number


class StoreError(Exception):
    """The store file cannot be used (wrong file, locked, unreadable)."""


class TicketNotFound(StoreError):
    pass


class Store:
    """Tickets on disk. Use as a context manager or call `close()`."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0, outbox_max: int = 10_000) -> None:
        self.path = Path(path)
        self.outbox_max = outbox_max
        self.outbox_hook: OutboxHook | None = None
        self.on_enqueue: Callable[[], None] | None = None
        self.outbox_evicted = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Another process (the tickets CLI) may hold the write lock for a moment.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_s)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
            for table, columns in MIGRATIONS.items():
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                for name, definition in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot use as a ticket store: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- reading ------------------------------------------------------------------------

    def get(self, ticket_id: int) -> Ticket:
        if not 1 <= ticket_id <= MAX_ID:
            raise TicketNotFound(f"no ticket {ticket_id} in {self.path}: ticket numbers run from 1 to {MAX_ID}")
        row = self._db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id} in {self.path}")
        return _from_row(row)

    def live_ticket(self, device_id: str, fault: str) -> Ticket | None:
        """The ticket of this (device, fault) that is not closed, if any."""
        row = self._db.execute(
            "SELECT * FROM tickets WHERE device_id = ? AND fault = ? AND state != 'closed'", (device_id, fault)
        ).fetchone()
        return _from_row(row) if row else None

    def tickets(self, *, include_closed: bool = True) -> list[Ticket]:
        sql = "SELECT * FROM tickets" + ("" if include_closed else " WHERE state != 'closed'") + " ORDER BY id"
        return [_from_row(r) for r in self._db.execute(sql)]

    def active_faults(self) -> list[tuple[str, str]]:
        """(device, fault) of live tickets whose fault has not restored."""
        rows = self._db.execute("SELECT device_id, fault FROM tickets WHERE state != 'closed' AND fault_active = 1")
        return [(r[0], r[1]) for r in rows]

    def history(self, ticket_id: int) -> list[dict[str, str]]:
        rows = self._db.execute(
            "SELECT at, action, state, actor, note FROM ticket_log WHERE ticket_id = ? ORDER BY rowid", (ticket_id,)
        )
        return [dict(r) for r in rows]

    # --- writing ------------------------------------------------------------------------

    def insert(self, ticket: Ticket, *, actor: str = "gateway") -> Ticket:
        row = _to_row(ticket)
        row.pop("id")
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._tx() as db:
            cur = db.execute(f"INSERT INTO tickets ({cols}) VALUES ({marks})", tuple(row.values()))
            ticket_id = cur.lastrowid
            assert ticket_id is not None
            self._log(db, ticket_id, ticket.raised_at, "opened", ticket.state, actor, ticket.title)
            if self.outbox_hook is not None:
                self._enqueue(
                    db, self.outbox_hook(dataclasses.replace(ticket, id=ticket_id), "opened", ticket.raised_at)
                )
        self._notify()
        return self.get(ticket_id)

    def update(self, ticket: Ticket, action: str, at: datetime, *, actor: str = "gateway", note: str = "") -> Ticket:
        """Write a changed ticket, provided nobody changed it since it was read."""
        if ticket.id is None:
            raise StoreError("update of a ticket that was never stored")
        row = _to_row(ticket)
        row.pop("id")
        sets = ", ".join(f"{c} = ?" for c in row)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE tickets SET {sets} WHERE id = ? AND version = ?",
                (*row.values(), ticket.id, ticket.version - 1),
            )
            if cur.rowcount != 1:
                raise StoreError(f"ticket {ticket.id} changed meanwhile; read it again")
            self._log(db, ticket.id, at, action, ticket.state, actor, note)
            if self.outbox_hook is not None:
                self._enqueue(db, self.outbox_hook(ticket, action, at))
        self._notify()
        return ticket

    # --- outbox: what the uplink still has to deliver, oldest first -----------------------

    def enqueue(self, messages: list[OutboxMessage]) -> None:
        with self._tx() as db:
            self._enqueue(db, messages)
        self._notify()

    def _enqueue(self, db: sqlite3.Connection, messages: list[OutboxMessage]) -> None:
        now = iso(datetime.now(UTC))
        db.executemany(
            "INSERT INTO outbox (kind, topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(m.kind, m.topic, m.payload, m.qos, int(m.retain), now) for m in messages],
        )
        excess = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.outbox_max
        if excess > 0:
            marks = ", ".join("?" for _ in EVICTABLE)
            cur = db.execute(
                "DELETE FROM outbox WHERE seq IN "
                f"(SELECT seq FROM outbox WHERE kind IN ({marks}) ORDER BY seq LIMIT ?)",
                (*EVICTABLE, excess),
            )
            self.outbox_evicted += cur.rowcount

    def _notify(self) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue()

    def outbox_batch(self, limit: int = 100) -> list[tuple[int, OutboxMessage]]:
        rows = self._db.execute(
            "SELECT seq, kind, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [(r[0], OutboxMessage(r[1], r[2], bytes(r[3]), r[4], bool(r[5]))) for r in rows]

    def outbox_done(self, seq: int) -> None:
        """The broker has the message (PUBACK for QoS 1): it may go."""
        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    # --- history: sampled readings per device, for diagnosis ------------------------------

    def add_history(self, samples: list[tuple[str, datetime, Mapping[str, float | int | bool]]]) -> None:
        """Many samples in one transaction."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO history (device_id, at, readings) VALUES (?, ?, ?)",
                [(d, iso(at), json.dumps(dict(v), sort_keys=True)) for d, at, v in samples],
            )

    def history_of(self, device_id: str, limit: int = 200) -> list[tuple[datetime, dict[str, float | int | bool]]]:
        """The device's most recent samples, oldest first."""
        rows = self._db.execute(
            "SELECT at, readings FROM history WHERE device_id = ? ORDER BY at DESC LIMIT ?", (device_id, limit)
        ).fetchall()
        return [(parse_iso(r[0]), json.loads(r[1])) for r in reversed(rows)]

    def prune_history(self, before: datetime) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM history WHERE at < ?", (iso(before),)).rowcount

    # --- remote requests: single-use nonces and the append-only audit log ----------------

    def claim_nonce(self, nonce: str, at: datetime, forget_before: datetime) -> bool:
        """True the first time a nonce is seen; nonces older than `forget_before` are dropped
        (requests that old are refused as stale anyway)."""
        with self._tx() as db:
            db.execute("DELETE FROM nonces WHERE at < ?", (iso(forget_before),))
            cur = db.execute("INSERT OR IGNORE INTO nonces (nonce, at) VALUES (?, ?)", (nonce, iso(at)))
            return cur.rowcount == 1

    def audit(
        self, at: datetime, user: str, command: str, args: object, result: str, detail: str, channel: str = "mqtt"
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO audit (at, user, command, args, result, detail, channel) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    iso(at),
                    user,
                    command,
                    json.dumps(args, sort_keys=True, default=str)[:2000],
                    result,
                    detail[:2000],
                    channel,
                ),
            )

    def audit_log(self) -> list[dict[str, str]]:
        rows = self._db.execute("SELECT at, user, command, args, result, detail, channel FROM audit ORDER BY seq")
        return [dict(r) for r in rows]

    # --- escalations: each (ticket, clock, mark) once, across restarts --------------------

    def escalations_sent(self) -> set[tuple[int, str, float]]:
        return {(r[0], r[1], r[2]) for r in self._db.execute("SELECT ticket_id, clock, mark_s FROM escalations")}

    def record_escalation(
        self, ticket_id: int, clock: str, mark_s: float, at: datetime, messages: list[OutboxMessage] | None = None
    ) -> bool:
        """True if this mark was not recorded before; its uplink messages go in the same
        transaction."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO escalations (ticket_id, clock, mark_s, at) VALUES (?, ?, ?, ?)",
                (ticket_id, clock, mark_s, iso(at)),
            )
            new = cur.rowcount == 1
            if new and messages:
                self._enqueue(db, messages)
        if new and messages:
            self._notify()
        return new

    def outbox_depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    @staticmethod
    def _log(
        db: sqlite3.Connection, ticket_id: int, at: datetime, action: str, state: str, actor: str, note: str
    ) -> None:
        db.execute(
            "INSERT INTO ticket_log (ticket_id, at, action, state, actor, note) VALUES (?, ?, ?, ?, ?, ?)",
            (ticket_id, iso(at), action, str(state), actor, note),
        )


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
        elif name in ("fault_active", "in_warranty"):
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
        elif name == "fault_active":
            v = bool(v)
        elif name == "in_warranty":
            v = None if v is None else bool(v)
        elif name == "state":
            v = TicketState(v)
        kw[name] = v
    return Ticket(**kw)
