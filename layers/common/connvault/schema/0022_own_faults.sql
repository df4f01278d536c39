-- 0022: our own faults are counted apart from the provider's, and a row that keeps failing on our side is
-- parked (issue 23, item 2). A KMS or database outage no longer spends a connection's provider failure budget
-- (refresh_failures, which moves it to error and lengthens its backoff); a row whose refresh fails the same way
-- on our side again and again (an envelope that does not open) stops being claimed.

ALTER TABLE connections
    ADD COLUMN fault_count integer NOT NULL DEFAULT 0 CHECK (fault_count >= 0),
    ADD COLUMN fault_code text CHECK (fault_code ~ '^[a-z0-9_.-]{1,64}$');
COMMENT ON COLUMN connections.fault_count IS
    'Consecutive refresh attempts that failed on connvault''s side (KMS, database, an unreadable row); reset '
    'by any attempt that reached the provider. Never counted in refresh_failures.';
COMMENT ON COLUMN connections.fault_code IS 'The code of the last fault on connvault''s side.';

ALTER TABLE connections DROP CONSTRAINT connections_status_check;
ALTER TABLE connections ADD CONSTRAINT connections_status_check
    CHECK (status IN ('pending', 'active', 'expired', 'needs_reauth', 'revoked', 'error', 'parked'));
COMMENT ON CONSTRAINT connections_status_check ON connections IS
    'parked: its refresh failed the same way on connvault''s side too often (last_error_code says how); the '
    'scheduler no longer claims it. A successful refresh on fetch or a reconnect makes it active again.';
