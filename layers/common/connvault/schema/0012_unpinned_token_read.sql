-- 0012: token fetch's read without SET search_path (issue 14.1). A function with SET runs every call through a
-- configuration change and its undo; measured in bench/token_read_bench.py, that was most of what the read cost
-- over the owner's primary-key read. Safe here because the function is SECURITY INVOKER (it can do nothing its
-- caller could not) and names every table and function with its schema, so the caller's search_path cannot
-- redirect it. A new name rather than a replacement: connvault_read_connection belongs to migration 0020, which a
-- fresh database applies after this one.

CREATE FUNCTION connvault_token_read(p_tenant uuid, p_id uuid)
    RETURNS TABLE (
        status text, credential_type text, credentials bytea, token_type text, scopes text[],
        expires_at_epoch double precision, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer, issued_at_epoch double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
                   extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
                   p.refresh_margin_seconds,
                   extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision
            FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_token_read(uuid, uuid) IS
    'Token fetch''s read: one round trip, RLS in force (the tenant is set inside the same statement); '
    'issued_at_epoch is when the current token was issued (grant or last refresh). SECURITY INVOKER with '
    'schema-qualified names and no SET search_path, which cost a configuration change per call.';
