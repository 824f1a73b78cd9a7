DROP TABLE tracker_state;
DROP TABLE orphaned_records_history;
DROP TABLE dns_declarations;
DROP TABLE dns_tracked_records;
