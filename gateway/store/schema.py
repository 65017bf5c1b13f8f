"""The store's schema and its versions: `PRAGMA user_version` says which steps a file has had.

Each step is a function that takes a file from the version before it to its own; a store of
any earlier release is brought up to date by the steps it has not had, in order, in one
transaction. Stores made before versioning (user_version 0) were created with
`CREATE ... IF NOT EXISTS` by every release, so step 1 fills in whatever tables and columns
such a file lacks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

V1_TABLES = """
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
    detail TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT 'mqtt'
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

# Columns that releases before versioning added to tables an older release had created.
V1_LATE_COLUMNS = {
    "tickets": {"diagnosis": "TEXT NOT NULL DEFAULT '{}'"},
    "audit": {"channel": "TEXT NOT NULL DEFAULT 'mqtt'"},  # how the request came: mqtt | http
}


def _v1(db: sqlite3.Connection) -> None:
    """Whatever an unversioned store lacks: tables, indexes, triggers, late columns."""
    for statement in _statements(V1_TABLES):
        db.execute(statement)
    for table, columns in V1_LATE_COLUMNS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns.items():
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


def _v2(db: sqlite3.Connection) -> None:
    """Settings every process holding the file must agree on (the uplink's topic root, so a
    ticket moved from the command line reaches the outbox too), and an index for replacing
    a queued retained message by a newer one on the same topic."""
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("CREATE INDEX outbox_retained_by_topic ON outbox (topic) WHERE retain = 1")


def _v3(db: sqlite3.Connection) -> None:
    """The audit log gets a retention: rows older than the `audit_pruned_before` setting may
    be deleted (the gateway's prune moves it), rows at or after it still may not, and the
    setting can never come within 30 days of the present (by the system clock). Rows say
    whether the user they name was verified (NULL: written before this step). Refusals of
    unauthenticated requests past the first of each kind in a minute are only counted."""
    db.execute("ALTER TABLE audit ADD COLUMN verified INTEGER")
    db.execute("CREATE INDEX audit_by_at ON audit (at)")
    db.execute("DROP TRIGGER IF EXISTS audit_append_only_delete")
    db.execute(
        """CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
        WHEN old.at >= COALESCE((SELECT value FROM settings WHERE key = 'audit_pruned_before'), '')
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only inside its retention'); END"""
    )
    for event in ("INSERT", "UPDATE"):
        db.execute(
            f"""CREATE TRIGGER audit_retention_floor_{event.lower()} BEFORE {event} ON settings
            WHEN NEW.key = 'audit_pruned_before'
                AND NEW.value > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-30 days')
            BEGIN SELECT RAISE(ABORT, 'the audit log keeps at least 30 days'); END"""
        )
    db.execute(
        """CREATE TABLE audit_refusals (
            minute TEXT NOT NULL,
            channel TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (minute, channel, reason)
        )"""
    )


def _v4(db: sqlite3.Connection) -> None:
    """Tickets measure the downtime of a component replaced on site (from its last reading
    before it went away to its first after it is back), and remember a device an engineer
    took out of service."""
    db.execute("ALTER TABLE tickets ADD COLUMN down_since TEXT")
    db.execute("ALTER TABLE tickets ADD COLUMN back_at TEXT")
    db.execute("ALTER TABLE tickets ADD COLUMN out_of_service INTEGER NOT NULL DEFAULT 0")


def _v5(db: sqlite3.Connection) -> None:
    """Maintenance visits: who started and finished each, its time limit, what the gateway
    saw of every device during it, and its report. At most one runs at a time."""
    db.execute(
        """CREATE TABLE visits (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            started_by TEXT NOT NULL,
            ends_by TEXT NOT NULL,
            finished_at TEXT,
            finished_by TEXT,
            ended TEXT,
            findings TEXT NOT NULL,
            report TEXT
        )"""
    )
    db.execute("CREATE UNIQUE INDEX one_running_visit ON visits ((finished_at IS NULL)) WHERE finished_at IS NULL")


# Step n takes a store from version n-1 to n. Append; never edit a step that has shipped.
STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4, _v5)
VERSION = len(STEPS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the file up to `VERSION` in one transaction; the version it had before.
    A file from a newer release is refused rather than written with an older schema."""
    db.execute("BEGIN IMMEDIATE")  # two processes opening one old file: one migrates
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > VERSION:
            raise sqlite3.DatabaseError(f"made by a newer alarmgw (schema {found}; this one knows up to {VERSION})")
        for step in STEPS[found:]:
            step(db)
        db.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (triggers hold `;` inside BEGIN ... END)."""
    out, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return out
