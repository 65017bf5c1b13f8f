-- Customers' complaints about the service ("User Complaints and Handling Records"): who,
-- which site, how it came, what it says, the tickets it concerns; acknowledged and resolved
-- against clocks of their own, every step stamped in `history` and in the desk's audit.
CREATE TABLE complaints (
    id               bigserial PRIMARY KEY,
    site_id          text NOT NULL,
    customer         text NOT NULL,
    channel          text NOT NULL,
    body             text NOT NULL,
    tickets          text[] NOT NULL DEFAULT '{}',   -- ticket refs at that site: 17, c3
    received_at      timestamptz NOT NULL,
    recorded_by      text NOT NULL,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,
    resolution       text,
    history          jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX complaints_open ON complaints (received_at) WHERE resolved_at IS NULL;
