-- What the app tracks. A record is app-managed only if this table says so:
-- a comment or tag at the provider is never proof of ownership.
-- Timestamps are unix milliseconds.
CREATE TABLE dns_tracked_records (
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
    fingerprint TEXT NOT NULL DEFAULT '',
    -- Promoted from metadata because queries filter on them.
    app_managed BOOLEAN NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    is_orphaned BOOLEAN NOT NULL DEFAULT 0,
    orphaned_at BIGINT,
    is_missing BOOLEAN NOT NULL DEFAULT 0,
    missing_since BIGINT,
    tracked_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    UNIQUE (provider, record_id)
);
CREATE INDEX dns_tracked_records_name_type ON dns_tracked_records (name, type);
CREATE INDEX dns_tracked_records_orphaned ON dns_tracked_records (is_orphaned);
CREATE INDEX dns_tracked_records_source ON dns_tracked_records (source);

-- One row per record deleted by orphan cleanup.
CREATE TABLE orphaned_records_history (
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
    source TEXT NOT NULL DEFAULT '',
    orphaned_at BIGINT,
    deleted_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX orphaned_records_history_name ON orphaned_records_history (name, type);

-- Key/value state of the tracker (last sweep...).
CREATE TABLE tracker_state (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
