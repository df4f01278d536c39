-- 0006 down: the token read returns 0003's columns again (0003's function, word for word). No data is lost.

DROP FUNCTION connvault_read_connection(uuid, uuid);

CREATE FUNCTION connvault_read_connection(p_tenant uuid, p_id uuid)
    RETURNS TABLE (
        id uuid, provider_id uuid, status text, credential_type text, credentials bytea, token_type text,
        scopes text[], expires_at timestamptz, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.id, c.provider_id, c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
                   c.expires_at, c.has_refresh_token, c.last_error_code, p.refresh_margin_seconds
            FROM connections c JOIN providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_read_connection(uuid, uuid) IS
    'Token fetch''s read: one round trip, RLS in force (the tenant is set inside the same statement).';
