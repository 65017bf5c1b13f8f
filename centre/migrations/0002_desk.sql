-- The desk: its users, their bearer tokens, what they did, and the dispatch board.
-- Every time is timestamptz, written in UTC.

CREATE TABLE desk_users (
    name           text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('viewer', 'engineer', 'dispatcher')),
    password_hash  text NOT NULL,            -- argon2id, with its own salt and parameters
    created_at     timestamptz NOT NULL
);

-- A token is shown once, at login; only its SHA-256 is kept, so a copy of this table logs
-- nobody in.
CREATE TABLE desk_tokens (
    token_sha256  bytea PRIMARY KEY,
    user_name     text NOT NULL REFERENCES desk_users (name) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX desk_tokens_expires ON desk_tokens (expires_at);

-- Who did what, when, and how it ended: logins (failed ones too), assignments, moves.
CREATE TABLE desk_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    user_name  text NOT NULL,                -- as given at login when it failed
    action     text NOT NULL,
    target     text NOT NULL DEFAULT '',     -- site/ticket, or empty
    result     text NOT NULL,                -- "ok", or the refusal in words
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX desk_audit_at ON desk_audit (at);

-- The dispatch board: who goes to which ticket, and when they plan to be there. A ticket is
-- `ticket_ref`: a gateway ticket's id, or `c` and the id of one of the centre's own.
CREATE TABLE desk_assignments (
    site_id          text NOT NULL,
    ticket_ref       text NOT NULL,
    engineer         text NOT NULL,
    planned_arrival  timestamptz NOT NULL,
    assigned_by      text NOT NULL,
    assigned_at      timestamptz NOT NULL,
    PRIMARY KEY (site_id, ticket_ref)
);
CREATE INDEX desk_assignments_engineer ON desk_assignments (engineer);
