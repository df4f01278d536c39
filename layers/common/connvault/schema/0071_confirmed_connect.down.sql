-- Reverses 0071: parked grants go (unrevoked: revoke them first by letting the sweep run past confirm_by).
DROP FUNCTION connvault_unconfirmed_grants(timestamptz, integer);
DROP TABLE connect_confirmations;
ALTER TABLE oauth_sessions DROP COLUMN require_confirmation;
