-- The twin of migrations/cache/2026-12-02-000001 (SQLite).
-- The change journal: one row per change sent to ApplyChanges with a caller's
-- change_id. Written (state 'pending') before the change goes to the
-- provider, and settled ('applied' or 'failed') in the same transaction as
-- the cache row the change produced, so a caller that lost the answer can ask
-- what became of it (GetChangeOutcomes) and a re-sent change is never applied
-- twice. A 'pending' row left by a process that died is settled by looking at
-- the provider. Timestamps are unix milliseconds.
CREATE TABLE change_journal (
    change_id TEXT PRIMARY KEY NOT NULL,
    -- 'create', 'update' or 'delete'.
    op TEXT NOT NULL,
    -- SHA-256 of the change itself: a change_id reused for another change is refused.
    op_fingerprint TEXT NOT NULL,
    -- The record updated or deleted ('' for a create).
    target_id TEXT NOT NULL DEFAULT '',
    -- The name, type and content looked for when the change is settled by looking.
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL DEFAULT '',
    -- The TTL (1: any) and priority written, also compared when settling.
    ttl INTEGER NOT NULL DEFAULT 1,
    priority INTEGER,
    -- JSON array: the ids the cache held at (name, type) when the change was
    -- sent; a record found there later with another id is the change's own.
    prior_ids TEXT NOT NULL DEFAULT '[]',
    -- 'pending', 'applied' or 'failed'.
    state TEXT NOT NULL,
    -- gRPC code and message of a failure.
    code INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    -- The record the change produced (JSON of the provider record), when applied.
    record_id TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    settled_at BIGINT
);
CREATE INDEX change_journal_state ON change_journal (state);
CREATE INDEX change_journal_created_at ON change_journal (created_at);

-- The journal's id, made (at random) when the database is first opened by a
-- cache-service that journals: an unknown change_id proves "never sent" only
-- for changes sent while this id was current.
ALTER TABLE cache_state ADD COLUMN journal_id TEXT NOT NULL DEFAULT '';
