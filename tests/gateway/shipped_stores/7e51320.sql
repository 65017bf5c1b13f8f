-- the ticket store's schema as shipped by 7e51320 (2026-11-25): Uplink to the service centre: durable SQLite outbox written with each 
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE ticket_log (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE tickets (
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
    user_action TEXT NOT NULL,
    in_warranty INTEGER,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_live_ticket_per_fault
    ON tickets (device_id, fault) WHERE state != 'closed';
CREATE INDEX ticket_log_by_ticket ON ticket_log (ticket_id);
CREATE INDEX outbox_by_kind ON outbox (kind, seq);
