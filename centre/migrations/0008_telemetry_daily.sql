-- A bounded daily history of each device's battery and signal: one row per UTC day, site and
-- device, holding for each quantity the day's minimum, maximum and last reading, written in
-- the ingest batch's transaction and pruned after `sites.telemetry_daily_keep_days`.
-- A quantity a device does not report stays NULL. `last_at` is the time of the day's latest
-- reading: a quantity's last is the one of the latest reading that carried it.
-- The day leads the key: a batch's upserts all land in today's end of the index, pruning takes
-- the oldest days from its start, and a month of one site is 28 to 31 probes (day, site).
CREATE TABLE telemetry_daily (
    day                date NOT NULL,
    site_id            text NOT NULL,
    device_id          text NOT NULL,
    samples            integer NOT NULL,        -- readings taken that day (a reading sent twice may count twice)
    last_at            timestamptz NOT NULL,
    battery_v_min      double precision,
    battery_v_max      double precision,
    battery_v_last     double precision,
    battery_pct_min    double precision,
    battery_pct_max    double precision,
    battery_pct_last   double precision,
    rssi_dbm_min       double precision,
    rssi_dbm_max       double precision,
    rssi_dbm_last      double precision,
    link_quality_min   double precision,
    link_quality_max   double precision,
    link_quality_last  double precision,
    PRIMARY KEY (day, site_id, device_id)
) WITH (fillfactor = 70);
-- A device's row of the day is updated with each batch that carries its telemetry: room left in
-- each page keeps those updates in the page (HOT), without a new index entry or a bloated table.
