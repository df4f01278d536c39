-- 0097 down: the claim of migration 0088 (with 0096's search path), the due index it read, no holds.

DROP TRIGGER webhook_deliveries_release_next ON webhook_deliveries;
DROP FUNCTION connvault_release_next_webhook_delivery();
DROP INDEX webhook_deliveries_ready_idx;
DROP INDEX webhook_deliveries_leased_idx;
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
ALTER TABLE webhook_deliveries DROP COLUMN held_until;

CREATE OR REPLACE FUNCTION connvault_claim_webhook_deliveries(
        p_now timestamptz, p_endpoints integer, p_per_endpoint integer, p_circuit_threshold integer,
        p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid, endpoint_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
    AS $$
        WITH sendable AS (
            -- An idle outbox is one empty range scan of the partial index, however many endpoints exist.
            SELECT d.endpoint_id, min(d.seq) AS oldest FROM webhook_deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= p_now
              AND (d.lease_until IS NULL OR d.lease_until <= p_now)
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries o
                  WHERE o.endpoint_id = d.endpoint_id AND o.subject_id = d.subject_id
                    AND o.status = 'pending' AND o.seq < d.seq)
            GROUP BY d.endpoint_id
        ),
        ready AS (
            SELECT e.id, e.tenant_id, s.oldest, e.consecutive_failures >= p_circuit_threshold AS half_open,
                   (SELECT count(*) FROM webhook_deliveries l
                    WHERE l.endpoint_id = e.id AND l.status = 'pending' AND l.lease_until > p_now) AS in_flight
            FROM sendable s JOIN webhook_endpoints e ON e.id = s.endpoint_id
            WHERE e.enabled AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= p_now)
        ),
        open AS (
            SELECT r.*, row_number() OVER (PARTITION BY r.tenant_id ORDER BY r.oldest) AS turn
            FROM ready r
            WHERE r.in_flight < CASE WHEN r.half_open THEN 1 ELSE p_per_endpoint END
        ),
        busy AS (
            -- What each tenant taking part has in flight, on any of its endpoints, whichever sender leased it.
            SELECT e.tenant_id, count(*) AS in_flight
            FROM webhook_endpoints e
            JOIN webhook_deliveries l ON l.endpoint_id = e.id AND l.status = 'pending' AND l.lease_until > p_now
            WHERE e.tenant_id IN (SELECT o.tenant_id FROM open o)
            GROUP BY e.tenant_id
        ),
        picked AS (
            SELECT due.id FROM (
                SELECT o.* FROM open o LEFT JOIN busy b ON b.tenant_id = o.tenant_id
                ORDER BY coalesce(b.in_flight, 0) + o.turn, o.oldest
                LIMIT p_endpoints
            ) r
            CROSS JOIN LATERAL (
                SELECT d.id FROM webhook_deliveries d
                WHERE d.endpoint_id = r.id AND d.status = 'pending' AND d.next_attempt_at <= p_now
                  AND (d.lease_until IS NULL OR d.lease_until <= p_now)
                  AND NOT EXISTS (
                      SELECT 1 FROM webhook_deliveries o
                      WHERE o.endpoint_id = d.endpoint_id AND o.subject_id = d.subject_id
                        AND o.status = 'pending' AND o.seq < d.seq)
                ORDER BY d.seq
                LIMIT 1
                FOR UPDATE OF d SKIP LOCKED
            ) due
        )
        UPDATE webhook_deliveries d SET lease_until = p_lease_until, lease_owner = p_owner
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.tenant_id, d.endpoint_id
    $$;
COMMENT ON FUNCTION connvault_claim_webhook_deliveries(timestamptz, integer, integer, integer, uuid, timestamptz) IS
    'The webhook sender''s claim across tenants: leases due deliveries in order per subject, at most one per endpoint '
    'and p_endpoints in all (the sender''s free slots), bounded in flight per endpoint; only endpoints with a '
    'delivery sendable now and room in flight take part, and each slot goes to the tenant with the fewest '
    'deliveries in flight (migration 0088). Returns ids only; each delivery is then sent under its own tenant.';
