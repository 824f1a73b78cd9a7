-- tracking-service's database: what the app tracks, what each source
-- declares, and what orphan cleanup deleted. A record is app-managed only if
-- this database says so: a comment or tag at the provider is never proof of
-- ownership. Timestamps are unix milliseconds.
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
    -- The source that first declared (or hand-tracked) the record; every
    -- declaring source is in dns_declarations.
    source TEXT NOT NULL DEFAULT '',
    is_orphaned BOOLEAN NOT NULL DEFAULT 0,
    orphaned_at BIGINT,
    -- Set when a fresh cache no longer holds the record (not the same as orphaned).
    is_missing BOOLEAN NOT NULL DEFAULT 0,
    missing_since BIGINT,
    -- Non-empty when the provider's copy differs from what was written or seen.
    drift TEXT NOT NULL DEFAULT '',
    tracked_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    UNIQUE (provider, record_id)
);
CREATE INDEX dns_tracked_records_name_type ON dns_tracked_records (name, type);
-- Lookups and set-based updates by id alone (the unique key leads with provider).
CREATE INDEX dns_tracked_records_record_id ON dns_tracked_records (record_id);
CREATE INDEX dns_tracked_records_orphaned ON dns_tracked_records (is_orphaned);
CREATE INDEX dns_tracked_records_source ON dns_tracked_records (source);

-- What each source declares now: one row per (source, name, type). A record
-- stays while any source declares it, so one source never orphans another's.
CREATE TABLE dns_declarations (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    proxied BOOLEAN NOT NULL DEFAULT 0,
    priority INTEGER,
    declared_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (source, name, type)
);
CREATE INDEX dns_declarations_name_type ON dns_declarations (name, type);

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

-- Key/value state of the tracker (the last sweep).
CREATE TABLE tracker_state (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
