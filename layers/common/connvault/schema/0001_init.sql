-- 0001: the whole first schema of connvault.
-- Every tenant-owned table carries tenant_id and row-level security; the application role sees only
-- the rows of the tenant named by the transaction-local setting app.tenant_id, and none without it.
-- Grants to the application role are made by the migration runner after every run (connvault.migrations).

CREATE TABLE tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_salt    uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenants IS 'A customer of connvault. Everything else hangs off a tenant and is deleted with it.';
COMMENT ON COLUMN tenants.key_salt IS
    'Random value in the KMS encryption context of every data key of this tenant: once the row is gone, '
    'no data key of the tenant can be unwrapped again (crypto-shredding).';

CREATE TABLE tenant_api_keys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id         text NOT NULL UNIQUE CHECK (key_id ~ '^[a-z0-9]{16}$'),
    secret_sha256  bytea NOT NULL CHECK (length(secret_sha256) = 32),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
COMMENT ON TABLE tenant_api_keys IS 'API keys of the form cv_<key_id>_<secret>; only the SHA-256 of the secret is kept.';
COMMENT ON COLUMN tenant_api_keys.key_id IS 'Public, non-secret part of the key; used to find the row.';
CREATE INDEX tenant_api_keys_tenant_idx ON tenant_api_keys (tenant_id);

CREATE TABLE providers (
    id                          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                   uuid REFERENCES tenants (id) ON DELETE CASCADE,
    slug                        text NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    display_name                text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    auth_type                   text NOT NULL CHECK (auth_type IN ('oauth2', 'api_key', 'basic')),
    authorization_url           text,
    token_url                   text,
    revocation_url              text,
    default_scopes              text[] NOT NULL DEFAULT '{}',
    scope_separator             text NOT NULL DEFAULT ' ' CHECK (scope_separator IN (' ', ',', '+')),
    pkce                        boolean NOT NULL DEFAULT true,
    token_endpoint_auth_method  text NOT NULL DEFAULT 'client_secret_basic'
        CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'client_secret_post')),
    rotates_refresh_tokens      boolean NOT NULL DEFAULT false,
    refresh_margin_seconds      integer NOT NULL DEFAULT 300 CHECK (refresh_margin_seconds BETWEEN 0 AND 86400),
    authorize_params            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(authorize_params) = 'object'),
    token_response_shape        text NOT NULL DEFAULT 'standard'
        CHECK (token_response_shape IN ('standard', 'nested_authed_user')),
    issuer                      text,
    require_iss                 boolean NOT NULL DEFAULT false,
    discovery_url               text,
    metadata_fetched_at         timestamptz,
    max_concurrent_refreshes    integer CHECK (max_concurrent_refreshes > 0),
    docs_url                    text,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT providers_oauth2_endpoints CHECK (
        auth_type <> 'oauth2' OR (authorization_url IS NOT NULL AND token_url IS NOT NULL)),
    CONSTRAINT providers_iss_needs_issuer CHECK (NOT require_iss OR issuer IS NOT NULL)
);
COMMENT ON TABLE providers IS
    'The provider catalog. Rows with tenant_id NULL are the global catalog (seeded by migrations); '
    'rows with a tenant_id are that tenant''s custom providers, invisible to every other tenant.';
COMMENT ON COLUMN providers.scope_separator IS 'How the provider wants scopes joined in the authorize URL.';
COMMENT ON COLUMN providers.pkce IS 'Whether the provider accepts PKCE S256; when true it is always used.';
COMMENT ON COLUMN providers.rotates_refresh_tokens IS 'Whether a refresh answers with a new refresh token that replaces the old one.';
COMMENT ON COLUMN providers.refresh_margin_seconds IS 'A token expiring within this many seconds is refreshed before it is handed out.';
COMMENT ON COLUMN providers.authorize_params IS 'Extra query parameters for the authorize URL, e.g. Google''s access_type=offline.';
COMMENT ON COLUMN providers.token_response_shape IS 'Named parser for the token response (nested_authed_user: Slack v2 user tokens).';
COMMENT ON COLUMN providers.require_iss IS 'RFC 9207: the callback must carry iss equal to issuer.';
COMMENT ON COLUMN providers.max_concurrent_refreshes IS 'Cap on refreshes in flight against this provider per scheduler run; NULL takes the setting.';
CREATE UNIQUE INDEX providers_global_slug_key ON providers (slug) WHERE tenant_id IS NULL;
CREATE UNIQUE INDEX providers_tenant_slug_key ON providers (tenant_id, slug) WHERE tenant_id IS NOT NULL;

CREATE TABLE integrations (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id           uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    client_id             text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 512),
    client_secret         bytea,
    scopes                text[] NOT NULL DEFAULT '{}',
    allowed_return_urls   text[] NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT integrations_tenant_provider_key UNIQUE (tenant_id, provider_id)
);
COMMENT ON TABLE integrations IS 'A tenant''s OAuth app registered at one provider.';
COMMENT ON COLUMN integrations.client_secret IS 'Envelope (connvault.crypto) of the client secret; never returned by the API.';
COMMENT ON COLUMN integrations.allowed_return_urls IS 'Exact URLs the end user may be sent back to after the callback.';

CREATE TABLE connections (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id          uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    end_user_id          text NOT NULL CHECK (length(end_user_id) BETWEEN 1 AND 255),
    alias                text NOT NULL DEFAULT '' CHECK (length(alias) <= 100),
    credential_type      text NOT NULL CHECK (credential_type IN ('oauth2', 'api_key', 'basic')),
    status               text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'active', 'expired', 'needs_reauth', 'revoked', 'error')),
    credentials          bytea,
    has_refresh_token    boolean NOT NULL DEFAULT false,
    token_type           text,
    scopes               text[] NOT NULL DEFAULT '{}',
    expires_at           timestamptz,
    granted_at           timestamptz,
    last_refresh_at      timestamptz,
    last_used_at         timestamptz,
    refresh_failures     integer NOT NULL DEFAULT 0 CHECK (refresh_failures >= 0),
    last_error_code      text,
    next_refresh_at      timestamptz,
    refresh_lease_until  timestamptz,
    refresh_lease_owner  uuid,
    metadata             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT connections_unique_account UNIQUE (tenant_id, provider_id, end_user_id, alias),
    CONSTRAINT connections_active_has_credentials CHECK (status <> 'active' OR credentials IS NOT NULL)
);
COMMENT ON TABLE connections IS 'One end user''s account at one provider, with its credentials sealed in one envelope.';
COMMENT ON COLUMN connections.end_user_id IS 'The tenant''s own id for its user; opaque to connvault.';
COMMENT ON COLUMN connections.credentials IS
    'Envelope of the credential JSON (access/refresh/id token, api key, or username/password).';
COMMENT ON COLUMN connections.has_refresh_token IS 'Whether the sealed credentials hold a refresh token; lets the refresh scan skip the rest unopened.';
COMMENT ON COLUMN connections.next_refresh_at IS 'Earliest time the scheduler may try a refresh again (backoff after failures).';
COMMENT ON COLUMN connections.refresh_lease_until IS 'A refresh is in flight until this time; nobody else calls the provider for this row before then.';
COMMENT ON COLUMN connections.refresh_lease_owner IS 'Random id of the holder of the lease; writes after the provider call compare-and-set on it.';
CREATE INDEX connections_tenant_end_user_idx ON connections (tenant_id, end_user_id);
CREATE INDEX connections_tenant_created_idx ON connections (tenant_id, created_at, id);
CREATE INDEX connections_status_idx ON connections (tenant_id, status);
CREATE INDEX connections_refresh_scan_idx ON connections (next_refresh_at, expires_at)
    WHERE status = 'active' AND credential_type = 'oauth2' AND has_refresh_token AND expires_at IS NOT NULL;

CREATE TABLE oauth_sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id      uuid NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    state_sha256     bytea NOT NULL UNIQUE CHECK (length(state_sha256) = 32),
    end_user_id      text NOT NULL CHECK (length(end_user_id) BETWEEN 1 AND 255),
    alias            text NOT NULL DEFAULT '' CHECK (length(alias) <= 100),
    scopes           text[] NOT NULL DEFAULT '{}',
    code_verifier    bytea,
    return_url       text,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE oauth_sessions IS 'Pending connect attempts, consumed once by the callback (DELETE ... RETURNING).';
COMMENT ON COLUMN oauth_sessions.state_sha256 IS 'SHA-256 of the OAuth state; the state itself is never stored.';
COMMENT ON COLUMN oauth_sessions.code_verifier IS 'Envelope of the PKCE verifier.';
CREATE INDEX oauth_sessions_expires_idx ON oauth_sessions (expires_at);

-- Row-level security. FORCE makes the policies apply to the table owner too, except where a
-- SECURITY DEFINER function below deliberately crosses tenants for one narrow job.
CREATE FUNCTION connvault_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
COMMENT ON FUNCTION connvault_current_tenant() IS 'The tenant of this transaction, or NULL (sees nothing) when unset.';

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_self ON tenants USING (id = connvault_current_tenant());

ALTER TABLE tenant_api_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_api_keys
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

ALTER TABLE providers ENABLE ROW LEVEL SECURITY;
CREATE POLICY catalog_read ON providers FOR SELECT
    USING (tenant_id IS NULL OR tenant_id = connvault_current_tenant());
CREATE POLICY custom_write ON providers FOR INSERT WITH CHECK (tenant_id = connvault_current_tenant());
CREATE POLICY custom_update ON providers FOR UPDATE
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());
CREATE POLICY custom_delete ON providers FOR DELETE USING (tenant_id = connvault_current_tenant());

ALTER TABLE integrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON integrations
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

ALTER TABLE connections ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON connections
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

ALTER TABLE oauth_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON oauth_sessions
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

-- The jobs that must start before a tenant is known. Each is SECURITY DEFINER (runs as the
-- owner, which RLS does not bind because the tables are not FORCEd) and returns only what that job needs.

CREATE FUNCTION connvault_find_api_key(p_key_id text)
    RETURNS TABLE (tenant_id uuid, secret_sha256 bytea, revoked_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT k.tenant_id, k.secret_sha256, k.revoked_at FROM tenant_api_keys k WHERE k.key_id = p_key_id $$;
COMMENT ON FUNCTION connvault_find_api_key(text) IS 'The authorizer''s lookup: API key id to tenant and secret hash.';

CREATE FUNCTION connvault_oauth_session_tenant(p_state_sha256 bytea)
    RETURNS TABLE (id uuid, tenant_id uuid)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT s.id, s.tenant_id FROM oauth_sessions s WHERE s.state_sha256 = p_state_sha256 $$;
COMMENT ON FUNCTION connvault_oauth_session_tenant(bytea) IS
    'The callback''s first step: which tenant a state belongs to. The session itself is then consumed '
    'under that tenant with DELETE ... RETURNING.';

CREATE FUNCTION connvault_tenant_key_salt(p_tenant uuid) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$ SELECT t.key_salt FROM tenants t WHERE t.id = p_tenant $$;
COMMENT ON FUNCTION connvault_tenant_key_salt(uuid) IS
    'The data-key cache''s lookup on a miss: the salt in the tenant''s KMS encryption context. NULL once deleted.';

CREATE FUNCTION connvault_claim_due_refreshes(
        p_now timestamptz, p_horizon_seconds integer, p_limit integer, p_owner uuid, p_lease_until timestamptz)
    RETURNS TABLE (id uuid, tenant_id uuid, stale boolean)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH due AS (
            SELECT c.id, c.refresh_lease_owner IS NOT NULL AS stale FROM connections c
            WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
              AND c.expires_at IS NOT NULL
              AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
              AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
              AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
            ORDER BY c.expires_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        )
        UPDATE connections c
        SET refresh_lease_until = p_lease_until, refresh_lease_owner = p_owner
        FROM due WHERE c.id = due.id
        RETURNING c.id, c.tenant_id, due.stale
    $$;
COMMENT ON FUNCTION connvault_claim_due_refreshes(timestamptz, integer, integer, uuid, timestamptz) IS
    'The scheduler''s claim across tenants: leases due rows (SKIP LOCKED) and returns ids only. '
    'Each refresh then runs under its own tenant.';

CREATE FUNCTION connvault_due_backlog(p_now timestamptz, p_horizon_seconds integer) RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        SELECT count(*) FROM connections c
        WHERE c.status = 'active' AND c.credential_type = 'oauth2' AND c.has_refresh_token
          AND c.expires_at IS NOT NULL
          AND c.expires_at <= p_now + make_interval(secs => p_horizon_seconds)
          AND (c.next_refresh_at IS NULL OR c.next_refresh_at <= p_now)
          AND (c.refresh_lease_until IS NULL OR c.refresh_lease_until <= p_now)
    $$;
COMMENT ON FUNCTION connvault_due_backlog(timestamptz, integer) IS 'How many connections are due now (a metric).';

-- The token-fetch hot path in one round trip: sets the tenant for this statement's transaction, reads
-- the connection with its provider's refresh margin under RLS (SECURITY INVOKER), and coalesces the
-- last_used_at write to at most one per p_touch_every per connection.
CREATE FUNCTION connvault_read_connection(p_tenant uuid, p_id uuid, p_touch_every interval)
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
        IF FOUND THEN
            UPDATE connections c SET last_used_at = now()
            WHERE c.id = p_id AND (c.last_used_at IS NULL OR c.last_used_at < now() - p_touch_every);
        END IF;
    END
    $$;
COMMENT ON FUNCTION connvault_read_connection(uuid, uuid, interval) IS
    'Token fetch''s read: one round trip, RLS in force, last_used_at written at most once per interval.';
