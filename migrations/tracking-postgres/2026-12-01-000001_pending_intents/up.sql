-- The twin of migrations/tracking/2026-12-01-000001 (SQLite).
-- Writes sent to cache-service whose outcome is not recorded yet: one row per
-- create or update, written in one transaction before ApplyChanges and
-- cleared in the transaction that records the outcome. A row left behind
-- means a reconcile was cut off (or cache-service did not answer in time)
-- after the write may have reached the provider: the next reconcile claims
-- an untracked record matching it (name, type, content) as app-managed
-- instead of adopting the app's own record as someone else's.
CREATE TABLE dns_pending_intents (
    -- "<run>:<index>": unique per reconcile run and change.
    id TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL,
    -- "create" or "update".
    action TEXT NOT NULL,
    -- The record updated; empty for a create.
    record_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    ttl INTEGER NOT NULL,
    proxied BOOLEAN NOT NULL DEFAULT false,
    priority INTEGER,
    created_at BIGINT NOT NULL
);
CREATE INDEX dns_pending_intents_name_type ON dns_pending_intents (name, type);
CREATE INDEX dns_pending_intents_created_at ON dns_pending_intents (created_at);

-- "The first declaration stands" orders declarations by declared_at, which
-- each reconcile stamps strictly after every earlier one: MAX() reads this index.
CREATE INDEX dns_declarations_declared_at ON dns_declarations (declared_at);
