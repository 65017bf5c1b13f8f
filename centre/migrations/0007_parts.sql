-- Spare parts: depots, what each holds of each part, which depot serves which site, the part
-- each dispatched ticket uses (reserved at dispatch, consumed at resolution, released when
-- the ticket closes unresolved or a dispatcher lets it go), and every move of stock, each
-- ticket's reservation, consumption and release once.
CREATE TABLE depots (
    name        text PRIMARY KEY,
    is_default  boolean NOT NULL DEFAULT false,   -- serves every site no other depot serves
    created_at  timestamptz NOT NULL,
    created_by  text NOT NULL
);
CREATE UNIQUE INDEX depots_one_default ON depots (is_default) WHERE is_default;

CREATE TABLE depot_sites (
    site_id  text PRIMARY KEY,
    depot    text NOT NULL REFERENCES depots (name),
    set_at   timestamptz NOT NULL,
    set_by   text NOT NULL
);

-- A part by the name the diagnosis gives it ("battery (CR123A or the model's own)"). Free is
-- on hand less reserved; a part is low when free is at or below `low_at`.
CREATE TABLE depot_stock (
    depot       text NOT NULL REFERENCES depots (name),
    part        text NOT NULL,
    on_hand     integer NOT NULL CHECK (on_hand BETWEEN 0 AND 1000000),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    low_at      integer NOT NULL DEFAULT 1 CHECK (low_at BETWEEN 0 AND 1000000),
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (depot, part)
);

-- One per dispatched ticket that names a part: `waiting` while none is free at its depot (the
-- part is out), then reserved, then consumed or released.
CREATE TABLE part_uses (
    site_id        text NOT NULL,
    ticket_ref     text NOT NULL,              -- a gateway ticket's id: 17
    part           text NOT NULL,
    depot          text NOT NULL REFERENCES depots (name),
    state          text NOT NULL CHECK (state IN ('waiting', 'reserved', 'consumed', 'released')),
    billable       boolean,                    -- out of warranty: the part is charged at cost; null: unknown
    dispatched_at  timestamptz NOT NULL,       -- waiting tickets get parts in this order
    changed_at     timestamptz NOT NULL,
    PRIMARY KEY (site_id, ticket_ref)
);
CREATE INDEX part_uses_waiting ON part_uses (depot, part, dispatched_at) WHERE state = 'waiting';

CREATE TABLE part_moves (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    depot       text NOT NULL REFERENCES depots (name),
    part        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('receipt', 'count', 'reserve', 'consume', 'release')),
    quantity    integer NOT NULL,              -- the change on hand (a count: what it found less what was kept)
    on_hand     integer NOT NULL,              -- after the move
    reserved    integer NOT NULL,
    site_id     text,                          -- the ticket a reservation, consumption or release is for
    ticket_ref  text,
    billable    boolean,
    by_name     text NOT NULL,                 -- a desk user, or "centre" for what a site's ticket did
    note        text NOT NULL DEFAULT ''
);
-- Each ticket's part is reserved, consumed and released at most once, whoever writes it.
CREATE UNIQUE INDEX part_moves_once ON part_moves (site_id, ticket_ref, kind) WHERE ticket_ref IS NOT NULL;
CREATE INDEX part_moves_at ON part_moves (at);
