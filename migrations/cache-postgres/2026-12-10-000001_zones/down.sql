ALTER TABLE change_journal DROP COLUMN zone;
DROP INDEX dns_records_zone_name_type;
DROP TABLE zone_state;
