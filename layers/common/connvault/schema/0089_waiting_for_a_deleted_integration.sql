-- 0089: a connection whose integration was deleted waits for it, as one whose integration was refused does (0021,
-- 0063), instead of being claimed, failing without a provider call and turning needs_reauth. Deleting an
-- integration is the tenant's change to its app, not the end users' grants (which stay valid at the provider): made
-- again, its connections refresh as before. The claim and the backlog now take only connections with an active
-- integration (or their own client); before, every scheduled run would have leased such connections again.
-- Connections that an earlier refresh turned needs_reauth for this alone (last_error_code integration_missing: no
-- provider was called, so their grants are as good as before) become active again; the events trigger reports
-- it. That part is not undone by the down step: it only corrects what the old rule did.

UPDATE connections SET status = 'active', last_error_code = NULL
WHERE status = 'needs_reauth' AND last_error_code = 'integration_missing';

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
                  AND (c.renews_with_own_client OR EXISTS (
                      SELECT 1 FROM integrations i
                      WHERE i.tenant_id = c.tenant_id AND i.provider_id = c.provider_id AND i.status = 'active'))
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
    'nor, unless they renew with their own client, of providers whose integration is missing or was refused '
    '(migration 0089); returns ids only. Each refresh then runs under its tenant.';

CREATE OR REPLACE FUNCTION connvault_due_backlog(p_now timestamptz, p_horizon_seconds integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT count(*) FROM connections c
        WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
          AND c.expires_at IS NOT NULL
          AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
          AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
          AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
          AND (c.renews_with_own_client OR EXISTS (
              SELECT 1 FROM integrations i
              WHERE i.tenant_id = c.tenant_id AND i.provider_id = c.provider_id AND i.status = 'active'))
    $$;
COMMENT ON FUNCTION connvault_due_backlog(timestamptz, integer) IS
    'How many connections are due now and could be refreshed (a metric): not those waiting for an integration '
    'that is missing or was refused, unless they renew with their own client.';
