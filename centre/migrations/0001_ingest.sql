-- The centre's first schema: what the sites report, and the centre's own dark-site tickets.
-- Every time is timestamptz, written in UTC.

CREATE TABLE sites (
    id              text PRIMARY KEY,
    topic_root      text NOT NULL,
    area            text CHECK (area IN ('city', 'suburb')),
    status          text NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'online', 'offline')),
    status_at       timestamptz,            -- when the centre received the current status
    last_heard_at   timestamptz,            -- the latest message of any other kind
    replayed_at     timestamptz,            -- the gateway's outbox was empty again at this moment
    first_heard_at  timestamptz NOT NULL
);

-- Ticket, fault and escalation events, each once (the uplink is at least once).
CREATE TABLE events (
    event_id     text PRIMARY KEY,
    site_id      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('ticket', 'fault', 'escalation')),
    topic        text NOT NULL,
    at           timestamptz NOT NULL,      -- when it happened at the site
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL
);
CREATE INDEX events_site_at ON events (site_id, at);

-- Each site's tickets as their latest version: a row only moves forward.
CREATE TABLE tickets (
    site_id       text NOT NULL,
    ticket_id     bigint NOT NULL,
    version       integer NOT NULL,
    state         text NOT NULL,
    fault         text NOT NULL,
    device        text NOT NULL,
    fault_active  boolean NOT NULL,
    opened_at     timestamptz NOT NULL,
    changed_at    timestamptz NOT NULL,     -- the `at` of the event that brought this version
    payload       jsonb NOT NULL,           -- the ticket object of that event, whole
    received_at   timestamptz NOT NULL,
    PRIMARY KEY (site_id, ticket_id)
);
CREATE INDEX tickets_open ON tickets (site_id) WHERE state NOT IN ('resolved', 'closed');

-- The latest reading of each device; long history belongs in InfluxDB.
CREATE TABLE telemetry_latest (
    site_id      text NOT NULL,
    device_id    text NOT NULL,
    at           timestamptz NOT NULL,
    "values"     jsonb NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (site_id, device_id)
);

-- What could not be taken, and why; the payload cut to a bound.
CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    topic         text NOT NULL,
    reason        text NOT NULL,
    payload       bytea NOT NULL,
    payload_size  integer NOT NULL,          -- the size it arrived with
    received_at   timestamptz NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);

-- The centre's own tickets (a site gone dark), with the same clocks as a gateway's.
CREATE TABLE centre_tickets (
    id            bigserial PRIMARY KEY,
    site_id       text NOT NULL REFERENCES sites (id),
    fault         text NOT NULL,
    state         text NOT NULL,
    fault_active  boolean NOT NULL,
    opened_at     timestamptz NOT NULL,
    restored_at   timestamptz,
    dark_since    timestamptz NOT NULL,     -- this episode's latest going dark (opened, or recurred)
    version       integer NOT NULL,
    ticket        jsonb NOT NULL,           -- the ticket as the gateway's ticket-event shows one
    site_open     jsonb NOT NULL,           -- the site's own open tickets when it went dark
    history       jsonb NOT NULL            -- [{at, action, by, note}]
);
-- One episode at a time per site and fault: a site dark again before its ticket is closed
-- is the same episode, recurred.
CREATE UNIQUE INDEX centre_tickets_one_open ON centre_tickets (site_id, fault) WHERE state <> 'closed';
