-- 0003: split token fetch's read from its last_used_at write.
-- Measured: the UPDATE inside connvault_read_connection roughly doubled the read's server time even when it
-- matched no row. The read is now read-only; the write is a separate call that each instance makes at most
-- once per interval per connection (it remembers when it last touched one), and the database still writes at
-- most once per interval whatever the number of instances.

DROP FUNCTION connvault_read_connection(uuid, uuid, interval);

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

CREATE FUNCTION connvault_touch_connection(p_tenant uuid, p_id uuid, p_every interval) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        UPDATE connections c SET last_used_at = now()
        WHERE c.id = p_id AND (c.last_used_at IS NULL OR c.last_used_at < now() - p_every);
    END
    $$;
COMMENT ON FUNCTION connvault_touch_connection(uuid, uuid, interval) IS
    'Records a use: last_used_at, written at most once per interval per connection.';
