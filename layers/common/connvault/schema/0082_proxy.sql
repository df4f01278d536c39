-- 0082: the proxy (issue 19). How each provider's API takes the credential, and the proxy's read: token fetch's
-- read plus what the proxy needs to build the request (provider, API base URL, credential style, the
-- connection's configuration), in one round trip with RLS in force.

ALTER TABLE providers
    ADD COLUMN api_auth jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(api_auth) = 'object');
COMMENT ON COLUMN providers.api_auth IS
    'How the provider''s API takes the credential: {} for the usual (bearer; basic for basic providers), or '
    '{style: header|query|basic|bearer, name, prefix} (see connvault/proxy/credentials.py).';

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
