-- The provider cache: every record of the zone as the provider holds it.
-- Timestamps are unix milliseconds.
CREATE TABLE dns_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    provider TEXT NOT NULL,
    zone TEXT NOT NULL,
    record_id TEXT NOT NULL,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    proxied BOOLEAN NOT NULL DEFAULT 0,
    priority INTEGER,
    comment TEXT NOT NULL DEFAULT '',
    -- The seed's orphan columns. Orphan state belongs to tracking-service; the
    -- cache keeps the columns for schema compatibility and never sets them.
    is_orphaned BOOLEAN NOT NULL DEFAULT 0,
    orphaned_at BIGINT,
    tracked_at BIGINT,
    updated_at BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    last_refreshed BIGINT NOT NULL,
    UNIQUE (provider, record_id)
);
CREATE INDEX dns_records_name_type ON dns_records (name, type);
-- Point lookups, updates and deletes by the provider's id.
CREATE INDEX dns_records_record_id ON dns_records (record_id);

-- One row: the state of the cache as a whole.
CREATE TABLE cache_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    provider TEXT NOT NULL DEFAULT '',
    zone TEXT NOT NULL DEFAULT '',
    generation BIGINT NOT NULL DEFAULT 0,
    last_refreshed BIGINT,
    last_attempt BIGINT,
    last_error TEXT NOT NULL DEFAULT '',
    last_refresh_duration_ms BIGINT NOT NULL DEFAULT 0
);
INSERT INTO cache_state (id) VALUES (1);
