-- 0098: a webhook delivery pends for a bounded time (an outside probe on 2026-11-30, Medium). A delivery the sender
-- gives up on after its retry window is failed; one that was never tried (behind a disabled endpoint, an open
-- circuit, or an earlier delivery of its connection that kept failing) stayed pending for good, and such a backlog
-- only grew. Now what is still pending CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS (3 days, as Stripe retries) after its
-- event (or its last redeliver request) becomes `expired`, with the reason it was not sent: `endpoint_disabled`,
-- `circuit_open` (the endpoint's circuit had not closed since it opened) or `max_age` (it waited behind an earlier
-- delivery of its connection, or no sender ran). Expired deliveries are listed, can be redelivered, and are dropped
-- with the rest of the history after the retention period. The scheduled function expires them a batch per run,
-- oldest first, through webhook_deliveries_age_idx; a delivery in flight is left to its sender.

ALTER TABLE webhook_deliveries
    ADD COLUMN expired_reason text
        CONSTRAINT webhook_deliveries_expired_reason_check
        CHECK (expired_reason IN ('endpoint_disabled', 'circuit_open', 'max_age'));
COMMENT ON COLUMN webhook_deliveries.expired_reason IS
    'Why an expired delivery was not sent before it expired: endpoint_disabled, circuit_open (its circuit had not '
    'closed since it opened) or max_age; NULL unless status is expired.';
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check
    CHECK (status IN ('pending', 'delivered', 'failed', 'expired'));
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_expired_with_reason
    CHECK ((status = 'expired') = (expired_reason IS NOT NULL));
COMMENT ON COLUMN webhook_deliveries.status IS
    'pending (to send or retry), delivered (a 2xx came back), failed (retry window over; can be redelivered), '
    'expired (still pending CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS after its event; can be redelivered).';

CREATE INDEX webhook_deliveries_age_idx ON webhook_deliveries (retry_from) WHERE status = 'pending';
COMMENT ON INDEX webhook_deliveries_age_idx IS 'Expiry: the longest pending deliveries first.';

-- Across tenants, in bounded batches, oldest first; returns how many deliveries expired. Those ahead of others of
-- their connection release them (trigger webhook_deliveries_release_next), which then expire in turn or go.
CREATE FUNCTION connvault_expire_webhook_deliveries(p_now timestamptz, p_pending_since timestamptz, p_limit integer)
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
    DECLARE
        expired integer;
    BEGIN
        WITH due AS (
            SELECT d.id FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.retry_from < p_pending_since
              AND (d.lease_until IS NULL OR d.lease_until <= p_now)
            ORDER BY d.retry_from
            LIMIT p_limit
            FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE webhook_deliveries d
        SET status = 'expired', lease_until = NULL, lease_owner = NULL, held_until = NULL,
            expired_reason = CASE
                WHEN NOT e.enabled THEN 'endpoint_disabled'
                WHEN e.circuit_open_until IS NOT NULL THEN 'circuit_open'
                ELSE 'max_age'
            END
        FROM due, webhook_endpoints e
        WHERE d.id = due.id AND e.id = d.endpoint_id;
        GET DIAGNOSTICS expired = ROW_COUNT;
        RETURN expired;
    END
    $$;
COMMENT ON FUNCTION connvault_expire_webhook_deliveries(timestamptz, timestamptz, integer) IS
    'Ends, across tenants, up to p_limit deliveries still pending since before p_pending_since (not in flight) as '
    'expired, with the reason they were not sent (migration 0098).';
