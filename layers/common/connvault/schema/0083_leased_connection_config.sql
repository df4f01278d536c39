-- 0083: a refresh's prepared read (0025, with 0062's kind) also returns the connection's connection_config (0080), so a scheduled
-- refresh of a connection with its own host (Shopify, Zendesk, Okta, Salesforce) calls that host, as a refresh on
-- read does; and it filters by tenant as well as by RLS. The return type changes, so the function is dropped and
-- created again.

DROP FUNCTION connvault_leased_connection(uuid, uuid, uuid);

CREATE FUNCTION connvault_leased_connection(p_tenant uuid, p_id uuid, p_owner uuid)
    RETURNS TABLE (
        provider_id uuid, provider_slug text, end_user_id text, alias text, credential_type text, status text,
        credentials bytea, has_refresh_token boolean, token_type text, scopes text[], expires_at bigint,
        granted_at bigint, last_refresh_at bigint, last_used_at bigint,
        refresh_failures integer, last_error_code text, next_refresh_at bigint,
        refresh_lease_until bigint, token_version bigint, refresh_started_at bigint,
        fault_count integer, fault_code text, metadata jsonb, created_at bigint,
        updated_at bigint, provider_account_id bytea, kind text, connection_config jsonb)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.provider_id, p.slug, c.end_user_id, c.alias, c.credential_type, c.status, c.credentials,
                   c.has_refresh_token, c.token_type, c.scopes, (extract(epoch FROM c.expires_at) * 1000000)::bigint,
                   (extract(epoch FROM c.granted_at) * 1000000)::bigint,
                   (extract(epoch FROM c.last_refresh_at) * 1000000)::bigint,
                   (extract(epoch FROM c.last_used_at) * 1000000)::bigint, c.refresh_failures, c.last_error_code,
                   (extract(epoch FROM c.next_refresh_at) * 1000000)::bigint,
                   (extract(epoch FROM c.refresh_lease_until) * 1000000)::bigint, c.token_version,
                   (extract(epoch FROM c.refresh_started_at) * 1000000)::bigint, c.fault_count, c.fault_code,
                   c.metadata, (extract(epoch FROM c.created_at) * 1000000)::bigint,
                   (extract(epoch FROM c.updated_at) * 1000000)::bigint, c.provider_account_id, c.kind,
                   c.connection_config
            FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
            WHERE c.id = p_id AND c.tenant_id = p_tenant AND c.refresh_lease_owner = p_owner;
    END
    $$;
COMMENT ON FUNCTION connvault_leased_connection(uuid, uuid, uuid) IS
    'A refresh''s read: the connection (times as epoch microseconds, exact and cheap to decode, and its kind) with its '
    'connection_config (a shop''s own token URL), only while p_owner holds its lease; RLS in force (the tenant is '
    'set inside the statement). One round trip as a prepared statement.';
