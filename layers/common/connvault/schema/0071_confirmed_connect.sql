-- 0071: confirmed connect sessions. A session may require the tenant to confirm the account that came back:
-- the callback then parks the grant here, sealed, and hands the tenant a one-time confirmation code through the
-- end user's browser; the connection exists only once the tenant's backend confirms with that code. A grant
-- nobody confirmed before the session expired is revoked at the provider and dropped.

ALTER TABLE oauth_sessions ADD COLUMN require_confirmation boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN oauth_sessions.require_confirmation IS
    'The callback parks the grant for confirmation (POST /connect-sessions/{id}/confirm) instead of storing it.';

CREATE TABLE connect_confirmations (
    id                    uuid PRIMARY KEY,
    tenant_id             uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id           uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    end_user_id           text NOT NULL CHECK (length(end_user_id) BETWEEN 1 AND 255),
    alias                 text NOT NULL DEFAULT '' CHECK (length(alias) <= 100),
    confirmation_sha256   bytea NOT NULL CHECK (length(confirmation_sha256) = 32),
    credentials           bytea NOT NULL,
    token_type            text,
    scopes                text[] NOT NULL DEFAULT '{}',
    token_expires_at      timestamptz,
    metadata              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    confirm_by            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE connect_confirmations IS
    'Grants parked by the callback of a session that requires confirmation; consumed once by the confirm call, '
    'or revoked at the provider once confirm_by has passed.';
COMMENT ON COLUMN connect_confirmations.id IS 'The connect session''s id, which the tenant confirms.';
COMMENT ON COLUMN connect_confirmations.tenant_id IS 'The owning tenant (row-level security).';
COMMENT ON COLUMN connect_confirmations.provider_id IS 'The provider that issued the grant.';
COMMENT ON COLUMN connect_confirmations.end_user_id IS 'The end user the session was started for.';
COMMENT ON COLUMN connect_confirmations.alias IS 'The alias the session was started with.';
COMMENT ON COLUMN connect_confirmations.confirmation_sha256 IS 'SHA-256 of the one-time confirmation code; the code itself is never stored.';
COMMENT ON COLUMN connect_confirmations.credentials IS 'Envelope of the parked grant (same format as connections.credentials).';
COMMENT ON COLUMN connect_confirmations.token_type IS 'The grant''s token type.';
COMMENT ON COLUMN connect_confirmations.scopes IS 'The scopes granted.';
COMMENT ON COLUMN connect_confirmations.token_expires_at IS 'When the parked access token expires.';
COMMENT ON COLUMN connect_confirmations.metadata IS 'Non-secret fields of the token response, for the connection''s metadata.';
COMMENT ON COLUMN connect_confirmations.confirm_by IS 'The session''s expiry: after it the grant can no longer be confirmed.';
COMMENT ON COLUMN connect_confirmations.created_at IS 'When the callback parked the grant.';
CREATE INDEX connect_confirmations_confirm_by_idx ON connect_confirmations (confirm_by);

ALTER TABLE connect_confirmations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connect_confirmations
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

CREATE FUNCTION connvault_unconfirmed_grants(p_now timestamptz, p_limit integer)
    RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT c.id, c.tenant_id FROM connect_confirmations c WHERE c.confirm_by <= p_now
        ORDER BY c.confirm_by LIMIT p_limit
    $$;
COMMENT ON FUNCTION connvault_unconfirmed_grants(timestamptz, integer) IS
    'The sweep''s lookup across tenants: parked grants whose session expired unconfirmed (ids only). Each is then '
    'revoked and deleted under its own tenant.';
