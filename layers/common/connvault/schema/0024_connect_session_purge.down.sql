-- Reverses 0024.
DROP FUNCTION connvault_purge_expired_sessions(timestamptz, integer);
