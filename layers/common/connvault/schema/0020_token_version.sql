-- 0020: single flight coalesces instead of serializing (issue 13, item 12).
-- A waiter accepts any refresh newer than the state it read, whichever process made it: every write of new
-- tokens (a refresh or a new grant) bumps token_version. A forced fetch accepts only tokens whose refresh began
-- after it asked: refresh_started_at says when that was. Token fetch's read also returns when the current
-- token was issued, so that a margin or min_ttl longer than the provider's token lifetime is capped by it
-- instead of refreshing on every fetch.

ALTER TABLE connections
    ADD COLUMN token_version bigint NOT NULL DEFAULT 0 CHECK (token_version >= 0),
    ADD COLUMN refresh_started_at timestamptz;
COMMENT ON COLUMN connections.token_version IS
    'Bumped by every write of new tokens (refresh or new grant). A caller waiting for someone else''s refresh '
    'accepts any version newer than the one it read.';
COMMENT ON COLUMN connections.refresh_started_at IS
    'When the refresh that produced the stored tokens took its lease (NULL: none since the grant). A forced '
    'fetch accepts only tokens whose refresh started after it asked.';

DROP FUNCTION connvault_read_connection(uuid, uuid);

CREATE FUNCTION connvault_read_connection(p_tenant uuid, p_id uuid)
    RETURNS TABLE (
        status text, credential_type text, credentials bytea, token_type text, scopes text[],
        expires_at_epoch double precision, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer, issued_at_epoch double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY
            SELECT c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
                   extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
                   p.refresh_margin_seconds,
                   extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision
            FROM connections c JOIN providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$;
COMMENT ON FUNCTION connvault_read_connection(uuid, uuid) IS
    'Token fetch''s read: one round trip, RLS in force (the tenant is set inside the same statement); '
    'issued_at_epoch is when the current token was issued (grant or last refresh).';
