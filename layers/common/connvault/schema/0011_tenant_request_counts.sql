-- 0011: per-tenant request rate limits shared across processes (issue 23.9). Each process admits a tenant's requests
-- from a token bucket of its own and adds what it admitted to the tenant's count here every N requests, in one
-- statement; a count past the window's allowance makes every process refuse the tenant until the window ends.
-- One row per tenant, reset when a new window starts, so the table never grows past the number of tenants.

CREATE TABLE tenant_request_counts (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    requests     bigint NOT NULL CHECK (requests >= 0)
);
COMMENT ON TABLE tenant_request_counts IS
    'Requests admitted per tenant in the current rate-limit window, summed over every process (written every N '
    'requests per process, so a coarse count). Ids and counts only.';
COMMENT ON COLUMN tenant_request_counts.tenant_id IS 'The tenant counted.';
COMMENT ON COLUMN tenant_request_counts.window_start IS 'Start of the window the count belongs to (database clock).';
COMMENT ON COLUMN tenant_request_counts.requests IS 'Requests admitted in that window, as reported so far.';

ALTER TABLE tenant_request_counts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_request_counts
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

CREATE FUNCTION connvault_count_requests(p_tenant uuid, p_requests integer, p_window_seconds integer)
    RETURNS TABLE (requests bigint, window_left double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        v_now timestamptz := clock_timestamp();
        v_window timestamptz := to_timestamp(floor(extract(epoch FROM v_now) / p_window_seconds) * p_window_seconds);
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
        INSERT INTO tenant_request_counts AS c (tenant_id, window_start, requests)
        SELECT t.id, v_window, p_requests FROM tenants t WHERE t.id = p_tenant
        ON CONFLICT (tenant_id) DO UPDATE SET
            -- A writer that computed its window just before another's rolled it over adds to the newer one.
            requests = CASE WHEN c.window_start >= EXCLUDED.window_start THEN c.requests + EXCLUDED.requests
                            ELSE EXCLUDED.requests END,
            window_start = greatest(c.window_start, EXCLUDED.window_start)
        RETURNING c.requests,
            extract(epoch FROM c.window_start + make_interval(secs => p_window_seconds) - v_now)::double precision;
    END
    $$;
COMMENT ON FUNCTION connvault_count_requests(uuid, integer, integer) IS
    'Adds a process''s admitted requests to its tenant''s count for the current window (under the tenant''s RLS) and '
    'returns the window''s total and the seconds left in it; nothing for a tenant that no longer exists.';
