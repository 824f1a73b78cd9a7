-- The twin of migrations/tracking/2026-12-02-000001 (SQLite).
-- Each pending intent's id is the change_id it was sent to cache-service
-- under; journal_id is the id of cache-service's change journal at the time,
-- which vouches for "never sent" (CHANGE_STATE_UNKNOWN) only while it is the
-- same. '' for intents written before the change-id protocol.
ALTER TABLE dns_pending_intents ADD COLUMN journal_id TEXT NOT NULL DEFAULT '';
