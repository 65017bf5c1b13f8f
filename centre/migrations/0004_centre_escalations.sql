-- The centre's own clocks escalate like a gateway's: each mark reached by a centre ticket's
-- running clock is recorded once (whichever worker judged it) and handed to the notifier.
CREATE TABLE centre_escalations (
    ticket_id   bigint NOT NULL REFERENCES centre_tickets (id),
    clock       text NOT NULL,
    mark_s      double precision NOT NULL,
    due         timestamptz NOT NULL,
    at          timestamptz NOT NULL,        -- when the mark was reached
    noticed_at  timestamptz NOT NULL,        -- when the centre saw it reached
    PRIMARY KEY (ticket_id, clock, mark_s)
);
