-- 0094 down: the device poller's claim and next-poll time as migration 0061 made them.

CREATE OR REPLACE FUNCTION connvault_claim_device_polls(
        p_now timestamptz, p_limit integer, p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT d.id FROM device_sessions d
            WHERE d.status = 'pending' AND d.next_poll_at <= p_now
              AND (d.poll_lease_until IS NULL OR d.poll_lease_until <= p_now)
            ORDER BY d.next_poll_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE device_sessions d
        SET poll_lease_until = p_lease_until, poll_lease_owner = p_owner,
            next_poll_at = p_now + make_interval(secs => d.interval_seconds)
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.tenant_id
    $$;
COMMENT ON FUNCTION connvault_claim_device_polls(timestamptz, integer, uuid, timestamptz) IS
    'The device poller''s claim across tenants: leases pending sessions due for a poll (SKIP LOCKED), moves their '
    'next poll one interval ahead, and returns ids only. Each poll then runs under its own tenant.';

CREATE OR REPLACE FUNCTION connvault_next_device_poll() RETURNS timestamptz
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT min(d.next_poll_at) FROM device_sessions d WHERE d.status = 'pending' $$;
COMMENT ON FUNCTION connvault_next_device_poll() IS
    'When the poller has work next: the earliest next poll of any pending session, across tenants; NULL when none '
    'is pending (the poller stops). A time only, nothing of any tenant.';
