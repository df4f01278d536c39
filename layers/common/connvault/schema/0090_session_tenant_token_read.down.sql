-- 0090 down: the token read selects from the tables again, as migration 0084 made it; no session-binding read,
-- no view.

DROP FUNCTION connvault_token_read_binding_session(uuid, uuid);

CREATE OR REPLACE FUNCTION connvault_token_read(p_tenant uuid, p_id uuid)
    RETURNS TABLE (credentials bytea, metadata json)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.credentials,
                   pg_catalog.json_build_array(
                       c.status, c.credential_type, c.token_type, c.scopes,
                       extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
                       p.refresh_margin_seconds,
                       extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision)
            FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_token_read(uuid, uuid) IS
    'Token fetch''s read: one round trip, RLS in force (the tenant is set inside the same statement). metadata is '
    '[status, credential_type, token_type, scopes, expires_at_epoch, has_refresh_token, last_error_code, '
    'refresh_margin_seconds, issued_at_epoch] (issued_at_epoch: when the current token was issued, grant or last '
    'refresh), one json value because the driver decodes each column in Python. SECURITY INVOKER with '
    'schema-qualified names and no SET search_path, which cost a configuration change per call.';

DROP VIEW connvault_token_reads;
