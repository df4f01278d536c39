-- 0024: one tenant's abandoned connect sessions no longer slow everyone's (issue 23, item 6).
-- Starting a connect session purged the caller's expired sessions through an index on expires_at alone, so
-- under row-level security it walked every tenant's expired rows. The per-tenant purge now filters by tenant
-- (through oauth_sessions_tenant_expires_idx, which migration 0030 creates), the scheduled function purges
-- expired sessions of all tenants with the function below.

CREATE FUNCTION connvault_purge_expired_sessions(p_now timestamptz, p_limit integer) RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH gone AS (
            DELETE FROM oauth_sessions s
            WHERE s.id IN (SELECT e.id FROM oauth_sessions e WHERE e.expires_at < p_now LIMIT p_limit)
            RETURNING 1
        )
        SELECT count(*)::integer FROM gone
    $$;
COMMENT ON FUNCTION connvault_purge_expired_sessions(timestamptz, integer) IS
    'The scheduled function''s housekeeping across tenants: deletes up to p_limit expired connect sessions '
    '(their sealed PKCE verifiers with them) and says how many. Returns a count only.';
