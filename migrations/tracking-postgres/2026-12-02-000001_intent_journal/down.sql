ALTER TABLE dns_pending_intents DROP COLUMN journal_id;
