DROP TABLE change_journal;
ALTER TABLE cache_state DROP COLUMN journal_id;
