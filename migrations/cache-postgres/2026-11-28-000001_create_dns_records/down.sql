DROP TABLE cache_state;
DROP TABLE dns_records;
