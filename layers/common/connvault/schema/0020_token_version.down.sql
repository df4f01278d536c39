-- Reverses 0020: the token read as 0006 left it, and no token_version.

DROP FUNCTION connvault_read_connection(uuid, uuid);

CREATE FUNCTION connvault_read_connection(p_tenant uuid, p_id uuid)
    RETURNS TABLE (
        status text, credential_type text, credentials bytea, token_type text, scopes text[],
        expires_at_epoch double precision, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
                   extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
                   p.refresh_margin_seconds
            FROM connections c JOIN providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_read_connection(uuid, uuid) IS
    'Token fetch''s read: one round trip, RLS in force (the tenant is set inside the same statement).';

ALTER TABLE connections DROP COLUMN token_version, DROP COLUMN refresh_started_at;
