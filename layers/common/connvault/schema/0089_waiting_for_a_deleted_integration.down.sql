-- 0089 down: the claim and the backlog leave out only refused integrations again, as migration 0063 made them.

CREATE OR REPLACE FUNCTION connvault_claim_due_refreshes(
        p_now timestamptz, p_horizon_seconds integer, p_limit integer, p_owner uuid, p_lease_until timestamptz,
        p_run_started timestamptz, p_per_tenant integer, p_after_tenant uuid, p_skip_providers uuid[])
    RETURNS TABLE (id uuid, tenant_id uuid, provider_id uuid, stale boolean)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT picked.id, picked.stale
            FROM (SELECT t.id FROM tenants t ORDER BY t.id <= p_after_tenant, t.id) AS ts
            CROSS JOIN LATERAL (
                SELECT c.id, c.refresh_lease_owner IS NOT NULL AS stale FROM connections c
                WHERE c.tenant_id = ts.id
                  AND c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
                  AND c.expires_at IS NOT NULL
                  AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
                  AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
                  AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
                  AND (c.last_refresh_at IS NULL OR c.last_refresh_at < p_run_started)
                  AND c.provider_id <> ALL (p_skip_providers)
                  AND (c.renews_with_own_client OR NOT EXISTS (
                      SELECT 1 FROM integrations i
                      WHERE i.tenant_id = c.tenant_id AND i.provider_id = c.provider_id
                        AND i.status = 'invalid_credentials'))
                ORDER BY c.expires_at
                LIMIT p_per_tenant
                FOR UPDATE OF c SKIP LOCKED
            ) AS picked
            LIMIT p_limit
        )
        UPDATE connections c
        SET refresh_lease_until = p_lease_until, refresh_lease_owner = p_owner
        FROM due WHERE c.id = due.id
        RETURNING c.id, c.tenant_id, c.provider_id, due.stale
    $$;
COMMENT ON FUNCTION connvault_claim_due_refreshes(
        timestamptz, integer, integer, uuid, timestamptz, timestamptz, integer, uuid, uuid[]) IS
    'The scheduler''s claim across tenants: leases due rows (SKIP LOCKED) not yet refreshed in this run, at most '
    'p_per_tenant per tenant, tenants round robin after p_after_tenant, none of the providers in p_skip_providers '
    'nor, unless they renew with their own client, of integrations whose credentials were refused; returns ids '
    'only. Each refresh then runs under its tenant.';

CREATE OR REPLACE FUNCTION connvault_due_backlog(p_now timestamptz, p_horizon_seconds integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT count(*) FROM connections c
        WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
          AND c.expires_at IS NOT NULL
          AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
          AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
          AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
          AND (c.renews_with_own_client OR NOT EXISTS (
              SELECT 1 FROM integrations i
              WHERE i.tenant_id = c.tenant_id AND i.provider_id = c.provider_id AND i.status = 'invalid_credentials'))
    $$;
COMMENT ON FUNCTION connvault_due_backlog(timestamptz, integer) IS
    'How many connections are due now and could be refreshed (a metric).';
