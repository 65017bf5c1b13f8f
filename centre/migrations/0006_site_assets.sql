-- Each site's asset register and maintenance plan, as its gateway last sent them (retained
-- `<root>/<site>/assets`): the centre plans across sites from it.
CREATE TABLE site_assets (
    site_id      text PRIMARY KEY,
    at           timestamptz NOT NULL,   -- when the gateway made it
    doc          jsonb NOT NULL,
    received_at  timestamptz NOT NULL
);
