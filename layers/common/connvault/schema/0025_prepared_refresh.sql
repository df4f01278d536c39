-- 0025: a refresh in two statements (issue 14, item 2).
-- A scheduled refresh cost eight SQL statements and twenty round trips through SQLAlchemy and pg8000's DB-API
-- (BEGIN, set_config, the lease read, ROLLBACK, BEGIN, set_config, the store, COMMIT), and that CPU, not the
-- providers, bounded a run. These two functions are run as pg8000 native prepared statements, one round trip
-- each, with row-level security in force (SECURITY INVOKER; the tenant is set inside the statement): one reads
-- the connection only while the caller's lease is on it, the other stores a refresh's answer and says what
-- became of it. Names are schema-qualified instead of a pinned search_path, which costs each call a
-- configuration switch.

CREATE FUNCTION connvault_leased_connection(p_tenant uuid, p_id uuid, p_owner uuid)
    RETURNS TABLE (
        provider_id uuid, provider_slug text, end_user_id text, alias text, credential_type text, status text,
        credentials bytea, has_refresh_token boolean, token_type text, scopes text[], expires_at bigint,
        granted_at bigint, last_refresh_at bigint, last_used_at bigint,
        refresh_failures integer, last_error_code text, next_refresh_at bigint,
        refresh_lease_until bigint, token_version bigint, refresh_started_at bigint,
        fault_count integer, fault_code text, metadata jsonb, created_at bigint,
        updated_at bigint, provider_account_id bytea)
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
                   (extract(epoch FROM c.updated_at) * 1000000)::bigint, c.provider_account_id
            FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
            WHERE c.id = p_id AND c.refresh_lease_owner = p_owner;
    END
    $$;
COMMENT ON FUNCTION connvault_leased_connection(uuid, uuid, uuid) IS
    'A refresh''s read: the connection (times as epoch microseconds, exact and cheap to decode), only while p_owner holds its lease; RLS in force '
    '(the tenant is set inside the statement). One round trip as a prepared statement.';

CREATE FUNCTION connvault_store_refresh(
        p_tenant uuid, p_id uuid, p_owner uuid, p_granted_at timestamptz, p_credentials bytea,
        p_has_refresh_token boolean, p_token_type text, p_scopes text[], p_expires_at timestamptz,
        p_now timestamptz, p_started_at timestamptz, p_account_id bytea, p_account_id_bidx bytea)
    RETURNS TABLE (outcome text, token_version bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    DECLARE
        stored bigint;
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        UPDATE public.connections c
        SET credentials = p_credentials, has_refresh_token = p_has_refresh_token, token_type = p_token_type,
            scopes = p_scopes, expires_at = p_expires_at, status = 'active', last_refresh_at = p_now,
            refresh_failures = 0, last_error_code = NULL, fault_count = 0, fault_code = NULL, next_refresh_at = NULL,
            refresh_lease_until = CASE WHEN c.refresh_lease_owner = p_owner THEN NULL ELSE c.refresh_lease_until END,
            refresh_lease_owner = CASE WHEN c.refresh_lease_owner = p_owner THEN NULL ELSE c.refresh_lease_owner END,
            provider_account_id = coalesce(p_account_id, c.provider_account_id),
            provider_account_id_bidx = coalesce(p_account_id_bidx, c.provider_account_id_bidx),
            token_version = c.token_version + 1, refresh_started_at = p_started_at
        WHERE c.id = p_id AND c.granted_at IS NOT DISTINCT FROM p_granted_at
        RETURNING c.token_version INTO stored;
        IF FOUND THEN
            RETURN QUERY SELECT 'stored'::text, stored;
        ELSIF EXISTS (SELECT 1 FROM public.connections c WHERE c.id = p_id) THEN
            RETURN QUERY SELECT 'superseded'::text, NULL::bigint;
        ELSE
            RETURN QUERY SELECT 'gone'::text, NULL::bigint;
        END IF;
    END
    $$;
COMMENT ON FUNCTION connvault_store_refresh(
        uuid, uuid, uuid, timestamptz, bytea, boolean, text, text[], timestamptz, timestamptz, timestamptz, bytea, bytea)
    IS 'A refresh''s store: the new tokens, whatever the lease (the provider has answered), only while the grant is '
    'the one refreshed (granted_at); clears the lease if it is still p_owner''s. Answers stored (with the new '
    'token_version), superseded (connected again meanwhile) or gone (deleted). RLS in force.';
