-- 0086: token fetch's read can carry the rate limiter's shared count (issue 14.1). Every rate_limit_share_every
-- admitted requests of a tenant, a process adds them to the tenant's count (0011, 0013); on the token route that
-- was a statement of its own, one more round trip on every 20th fetch, and the largest single piece of the token
-- handler's cost over the service's in bench/token_fetch_bench.py (and a p95 cost against a database over the
-- network). connvault_token_read_counting adds the requests and reads the connection in one statement. It answers
-- the read's two columns and the window's total and seconds left; when the connection is not found it still
-- answers one row (credentials and metadata NULL), so a tenant asking for ids it does not hold is counted like any
-- other. connvault_token_read itself is unchanged: a parameter for the count cost every other read 4-7 us.

CREATE FUNCTION connvault_token_read_counting(
    p_tenant uuid, p_id uuid, p_requests integer, p_window_seconds integer)
    RETURNS TABLE (credentials bytea, metadata json, window_requests bigint, window_left double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    DECLARE
        v_requests bigint;
        v_left double precision;
    BEGIN
        SELECT r.requests, r.window_left INTO v_requests, v_left
            FROM public.connvault_count_requests(p_tenant, p_requests, p_window_seconds) r;
        RETURN QUERY
            SELECT r.credentials, r.metadata, v_requests, v_left FROM public.connvault_token_read(p_tenant, p_id) r;
        IF NOT FOUND THEN
            RETURN QUERY SELECT NULL::bytea, NULL::json, v_requests, v_left;
        END IF;
    END
    $$;
COMMENT ON FUNCTION connvault_token_read_counting(uuid, uuid, integer, integer) IS
    'connvault_token_read, adding p_requests to the tenant''s shared rate-limit count in the same statement '
    '(connvault_count_requests over p_window_seconds): its window_requests and window_left, NULL when the tenant no '
    'longer exists. Always one row: credentials and metadata NULL when the connection is not found. SECURITY '
    'INVOKER with schema-qualified names and no SET search_path, as the read.';
