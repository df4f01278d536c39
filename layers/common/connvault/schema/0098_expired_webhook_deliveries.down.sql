-- 0098 down: no expiry; an expired delivery becomes failed (ended, listed, re-sendable, as before 0098).
-- data-loss: expired deliveries become failed, and the reason each expired is dropped

DROP FUNCTION connvault_expire_webhook_deliveries(timestamptz, timestamptz, integer);
DROP INDEX webhook_deliveries_age_idx;
UPDATE webhook_deliveries SET status = 'failed' WHERE status = 'expired';
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_expired_with_reason;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed'));
ALTER TABLE webhook_deliveries DROP COLUMN expired_reason;
COMMENT ON COLUMN webhook_deliveries.status IS
    'pending (to send or retry), delivered (a 2xx came back), failed (retry window over; can be redelivered).';
