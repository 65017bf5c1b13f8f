-- Maintenance visits escalate like a clock: each mark (`sites.visit_marks_days` before the
-- window closes; 0 = overdue) reached by a planned visit of a site's retained assets doc with
-- no visit done is recorded once, whichever worker judged it, and handed to the notifier.
-- A visit is its number and its window's last day: a plan made again with other windows is
-- a new visit. Rows of visits that are history (closed more than 90 days ago) are deleted.
CREATE TABLE visit_escalations (
    site_id     text NOT NULL,
    visit_n     integer NOT NULL,
    closes      date NOT NULL,               -- the window's last day (UTC)
    mark_days   integer NOT NULL,
    kind        text NOT NULL,
    opens       date NOT NULL,
    due         timestamptz NOT NULL,        -- the end of the window: the day after `closes`, 00:00 UTC
    at          timestamptz NOT NULL,        -- when the mark was reached
    noticed_at  timestamptz NOT NULL,        -- when the centre saw it reached
    notified    boolean NOT NULL,            -- false: passed together with a later mark, which alone was sent
    PRIMARY KEY (site_id, visit_n, closes, mark_days)
);
CREATE INDEX visit_escalations_closes ON visit_escalations (closes);
