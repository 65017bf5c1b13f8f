-- Engineers' moves made at the desk, on their way to the site's gateway as signed remote
-- commands. A move is recorded here at the moment it is made (made_at) and delivered when
-- the site is online, with that time: the gateway stamps the ticket with it.
CREATE TABLE relay_queue (
    id            bigserial PRIMARY KEY,
    site_id       text NOT NULL,
    ticket_id     bigint NOT NULL,
    action        text NOT NULL,
    engineer      text NOT NULL,
    note          text NOT NULL DEFAULT '',
    made_at       timestamptz NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'refused')),
    attempts      integer NOT NULL DEFAULT 0,
    last_try_at   timestamptz,
    answer        jsonb,                    -- the gateway's answer: the ticket, or why not
    done_at       timestamptz
);
-- The sender's look: what still waits, oldest first, per site in the order it was made.
CREATE INDEX relay_pending ON relay_queue (site_id, id) WHERE state = 'pending';
