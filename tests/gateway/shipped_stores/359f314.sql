-- the ticket store's schema as shipped by 359f314 (2026-11-25): Remote commands for engineers over MQTT 5 request/response: signed, fr
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    command TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE history (
    device_id TEXT NOT NULL,
    at TEXT NOT NULL,
    readings TEXT NOT NULL
);
CREATE TABLE nonces (nonce TEXT PRIMARY KEY, at TEXT NOT NULL);
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
    diagnosis TEXT NOT NULL DEFAULT '{}',
    user_action TEXT NOT NULL,
    in_warranty INTEGER,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_live_ticket_per_fault
    ON tickets (device_id, fault) WHERE state != 'closed';
CREATE INDEX ticket_log_by_ticket ON ticket_log (ticket_id);
CREATE INDEX outbox_by_kind ON outbox (kind, seq);
CREATE INDEX history_by_device ON history (device_id, at);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
