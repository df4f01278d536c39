-- 0013: the shared request counts of 0011 skip the write-ahead log (issue 23.9). Measured on the token bench, each
-- report waited for a WAL flush at commit, several milliseconds under load: the most expensive statement on the
-- warm path, however rarely it ran. The counts only matter for the current window, so losing them in a crash (an
-- UNLOGGED table is emptied) costs nothing; and the report commits without waiting for any flush.

ALTER TABLE tenant_request_counts SET UNLOGGED;

CREATE OR REPLACE FUNCTION connvault_count_requests(p_tenant uuid, p_requests integer, p_window_seconds integer)
    RETURNS TABLE (requests bigint, window_left double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        v_now timestamptz := clock_timestamp();
        v_window timestamptz := to_timestamp(floor(extract(epoch FROM v_now) / p_window_seconds) * p_window_seconds);
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        PERFORM set_config('synchronous_commit', 'off', true);
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
    'returns the window''s total and the seconds left in it; nothing for a tenant that no longer exists. Commits '
    'without waiting for a WAL flush (the counts are UNLOGGED, migration 0013).';
