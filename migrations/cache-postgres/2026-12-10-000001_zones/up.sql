-- The twin of migrations/cache/2026-12-10-000001 (SQLite).
-- Many zones per cache-service: the state of each zone's refresh, keyed by
-- zone. `cache_state` keeps what is service-wide (the provider, the zones
-- served joined by ",", the one generation sequence, the journal id); a
-- zone's `generation` is the value of that sequence at the zone's last change.
CREATE TABLE zone_state (
    zone TEXT PRIMARY KEY NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    last_refreshed BIGINT,
    last_attempt BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    last_refresh_duration_ms BIGINT NOT NULL DEFAULT 0
);
-- The one zone served before this migration keeps its freshness (on a new
-- PostgreSQL database there is none: kept so both backends run the same steps).
INSERT INTO zone_state (zone, generation, last_refreshed, last_attempt, last_error, last_refresh_duration_ms)
    SELECT zone, generation, last_refreshed, last_attempt, last_error, last_refresh_duration_ms
    FROM cache_state WHERE id = 1 AND zone <> '';
-- A refresh reads and replaces one zone's rows; ListRecords filters and
-- pages by zone in (name, type, record_id) order.
CREATE INDEX dns_records_zone_name_type ON dns_records (zone, name, type, record_id);
-- The zone a journaled change was sent to, so it is settled by looking in
-- that zone ('' for entries journaled before zones: found by name).
ALTER TABLE change_journal ADD COLUMN zone TEXT NOT NULL DEFAULT '';
