-- Reverses 0021.
ALTER TABLE integrations DROP COLUMN status, DROP COLUMN status_reason, DROP COLUMN status_since;
