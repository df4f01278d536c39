-- 0084 down: the two reads answer nine typed columns again, as migrations 0012 and 0082 made them.

DROP FUNCTION connvault_token_read(uuid, uuid);
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

DROP FUNCTION connvault_read_proxy_target(uuid, uuid);
CREATE FUNCTION connvault_read_proxy_target(p_tenant uuid, p_id uuid)
    RETURNS TABLE (
        status text, credential_type text, credentials bytea, token_type text, scopes text[],
        expires_at_epoch double precision, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer, issued_at_epoch double precision, provider_slug text, api_base_url text,
        api_auth jsonb, config_keys jsonb, connection_config jsonb, last_refresh_epoch double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
                   extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
                   p.refresh_margin_seconds,
                   extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision,
                   p.slug, p.api_base_url, p.api_auth, p.connection_config,
                   c.connection_config, extract(epoch FROM c.last_refresh_at)::double precision
            FROM connections c JOIN providers p ON p.id = c.provider_id
            WHERE c.id = p_id AND c.tenant_id = p_tenant;  -- RLS decides; the filter says the same
    END
    $$;
COMMENT ON FUNCTION connvault_read_proxy_target(uuid, uuid) IS
    'The proxy''s read: token fetch''s columns plus the provider''s API base URL, credential style and '
    'configuration keys, the connection''s configuration and when it was last refreshed; one round trip, RLS in '
    'force.';
