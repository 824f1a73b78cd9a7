DROP INDEX dns_declarations_declared_at;
DROP TABLE dns_pending_intents;
