-- 0090: token fetch reads a connection with one plain prepared SELECT while its database session is already bound
-- to the tenant (issue 14.1). The read as 0084 left it is a plpgsql function that sets the tenant for its own
-- statement; a function call and its RETURN QUERY cost more than the query itself. Measured here, interleaved
-- against a 126-134 us floor: 182-202 us for the function, 164-177 us for the plain SELECT under the same RLS.
--
-- The read's shape is now one security_invoker view, connvault_token_reads, so RLS binds whoever reads it, as it
-- binds the tables. connvault_token_read_binding_session reads it after setting the tenant for the session (not
-- the transaction): the first read of a tenant on a connection, one round trip as before. Further reads of the
-- same tenant select from the view directly, filtering on the tenant as well as RLS does: a session bound to
-- another tenant finds no row, never the other tenant's (db/fast_reads.py then reads through the function, so an
-- id the tenant does not hold costs two round trips). connvault_token_read, which the counting read (0086) calls,
-- reads the same view.
--
-- security_invoker views came with PostgreSQL 15; on an older server CREATE VIEW would refuse the option, so the
-- migration says why first.

DO $$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::integer < 150000 THEN
        RAISE EXCEPTION 'connvault needs PostgreSQL 15 or newer (security_invoker views), this server is %',
            pg_catalog.current_setting('server_version');
    END IF;
END
$$;

CREATE VIEW connvault_token_reads WITH (security_invoker = true) AS
    SELECT c.id,
           c.tenant_id,
           c.credentials,
           pg_catalog.json_build_array(
               c.status, c.credential_type, c.token_type, c.scopes,
               extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
               p.refresh_margin_seconds,
               extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision) AS metadata
    FROM public.connections c JOIN public.providers p ON p.id = c.provider_id;
COMMENT ON VIEW connvault_token_reads IS
    'What token fetch reads of a connection, in two columns (the driver decodes each column in Python, a json one '
    'in C; 0084). security_invoker: the tables'' RLS binds the reader, so it sees only its session''s tenant.';
COMMENT ON COLUMN connvault_token_reads.id IS 'The connection''s id.';
COMMENT ON COLUMN connvault_token_reads.tenant_id IS 'The connection''s tenant.';
COMMENT ON COLUMN connvault_token_reads.credentials IS 'The sealed credentials (an envelope), or NULL.';
COMMENT ON COLUMN connvault_token_reads.metadata IS
    '[status, credential_type, token_type, scopes, expires_at_epoch, has_refresh_token, last_error_code, '
    'refresh_margin_seconds, issued_at_epoch] (issued_at_epoch: when the current token was issued, grant or last '
    'refresh).';

CREATE OR REPLACE FUNCTION connvault_token_read(p_tenant uuid, p_id uuid)
    RETURNS TABLE (credentials bytea, metadata json)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY SELECT r.credentials, r.metadata FROM public.connvault_token_reads r WHERE r.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_token_read(uuid, uuid) IS
    'Token fetch''s read of connvault_token_reads: one round trip, RLS in force (the tenant is set for the '
    'statement''s own transaction). SECURITY INVOKER with schema-qualified names and no SET search_path, which cost '
    'a configuration change per call.';

CREATE FUNCTION connvault_token_read_binding_session(p_tenant uuid, p_id uuid)
    RETURNS TABLE (credentials bytea, metadata json)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, false);
        RETURN QUERY SELECT r.credentials, r.metadata FROM public.connvault_token_reads r WHERE r.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_token_read_binding_session(uuid, uuid) IS
    'connvault_token_read, binding the whole session to the tenant (until it is set again or the session ends, '
    'or this statement fails): later reads of that tenant select from connvault_token_reads without a function, '
    'filtering on the tenant too. Only for a connection whose every statement sets its own tenant. SECURITY '
    'INVOKER with schema-qualified names and no SET search_path.';
