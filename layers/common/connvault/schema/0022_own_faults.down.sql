-- Reverses 0022 (parked connections become error, keeping their reason).
UPDATE connections SET status = 'error' WHERE status = 'parked';
ALTER TABLE connections DROP CONSTRAINT connections_status_check;
ALTER TABLE connections ADD CONSTRAINT connections_status_check
    CHECK (status IN ('pending', 'active', 'expired', 'needs_reauth', 'revoked', 'error'));
ALTER TABLE connections DROP COLUMN fault_count, DROP COLUMN fault_code;
