-- Reverses 0023: the claim and backlog as 0005 left them.
DROP FUNCTION connvault_claim_due_refreshes(
    timestamptz, integer, integer, uuid, timestamptz, timestamptz, integer, uuid, uuid[]);

CREATE FUNCTION connvault_claim_due_refreshes(
        p_now timestamptz, p_horizon_seconds integer, p_limit integer, p_owner uuid, p_lease_until timestamptz,
        p_run_started timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid, stale boolean)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT c.id, c.refresh_lease_owner IS NOT NULL AS stale FROM connections c
            WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
              AND c.expires_at IS NOT NULL
              AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
              AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
              AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
              AND (c.last_refresh_at IS NULL OR c.last_refresh_at < p_run_started)
            ORDER BY c.expires_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE connections c
        SET refresh_lease_until = p_lease_until, refresh_lease_owner = p_owner
        FROM due WHERE c.id = due.id
        RETURNING c.id, c.tenant_id, due.stale
    $$;
COMMENT ON FUNCTION connvault_claim_due_refreshes(timestamptz, integer, integer, uuid, timestamptz, timestamptz) IS
    'The scheduler''s claim across tenants: leases due rows (SKIP LOCKED) not yet refreshed in this run, and '
    'returns ids only. Each refresh then runs under its own tenant.';

CREATE OR REPLACE FUNCTION connvault_due_backlog(p_now timestamptz, p_horizon_seconds integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT count(*) FROM connections c
        WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
          AND c.expires_at IS NOT NULL
          AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
          AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
          AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
    $$;
COMMENT ON FUNCTION connvault_due_backlog(timestamptz, integer) IS 'How many connections are due now (a metric).';

DROP INDEX connections_refresh_tenant_idx;
