-- 0030: the schema documents itself, keeps updated_at itself, and has the indexes its queries need.
-- - A comment on every table, column and function (a test fails when a new one comes without).
-- - updated_at is set by a trigger whenever a row really changes; writes that only record bookkeeping (a
--   refresh lease taken or released, a last use) leave it alone. Repositories no longer set it.
-- - Indexes, each for a query that uses it (tests/integration/test_indexes.py EXPLAINs each):
--   connections (tenant_id, last_used_at): GET /connections?unused_since=... (idle connections);
--   oauth_sessions (tenant_id, expires_at): starting a connect purges the tenant's expired sessions under RLS,
--   which the old index on expires_at alone could only serve by reading every tenant's expired rows.

COMMENT ON COLUMN tenants.id IS 'The tenant''s id; the authorizer puts it in every request''s context and RLS compares it with app.tenant_id.';
COMMENT ON COLUMN tenants.name IS 'Display name given by the operator; not unique, not used for lookups.';
COMMENT ON COLUMN tenants.created_at IS 'When the tenant was created.';

COMMENT ON COLUMN tenant_api_keys.id IS 'Row id.';
COMMENT ON COLUMN tenant_api_keys.tenant_id IS 'The tenant the key authenticates as.';
COMMENT ON COLUMN tenant_api_keys.secret_sha256 IS 'SHA-256 of the key''s secret part; the authorizer compares digests in constant time.';
COMMENT ON COLUMN tenant_api_keys.created_at IS 'When the key was minted.';
COMMENT ON COLUMN tenant_api_keys.revoked_at IS 'When the key was revoked; a revoked key is refused from then on. NULL while valid.';

COMMENT ON COLUMN providers.id IS 'Row id; connections, integrations and connect sessions name their provider by it.';
COMMENT ON COLUMN providers.tenant_id IS 'NULL for the global catalog; otherwise the tenant whose custom provider this is.';
COMMENT ON COLUMN providers.slug IS 'The name the API uses for the provider (google, slack, or a tenant''s own); unique per catalog or tenant.';
COMMENT ON COLUMN providers.display_name IS 'Human-readable name, for the tenant''s UI.';
COMMENT ON COLUMN providers.auth_type IS 'How connections to this provider authenticate: oauth2, api_key or basic.';
COMMENT ON COLUMN providers.authorization_url IS 'OAuth 2 authorization endpoint the end user''s browser is sent to (oauth2 only).';
COMMENT ON COLUMN providers.token_url IS 'OAuth 2 token endpoint for code exchange and refresh (oauth2 only).';
COMMENT ON COLUMN providers.revocation_url IS 'RFC 7009 revocation endpoint, used when a connection is deleted; NULL when the provider has none.';
COMMENT ON COLUMN providers.default_scopes IS 'Scopes asked for when neither the connect session nor the integration names any.';
COMMENT ON COLUMN providers.token_endpoint_auth_method IS 'How the client authenticates at the token endpoint (RFC 6749 2.3.1): HTTP Basic or form fields.';
COMMENT ON COLUMN providers.issuer IS 'The provider''s issuer identifier, compared with the callback''s iss (RFC 9207) and discovery metadata.';
COMMENT ON COLUMN providers.discovery_url IS 'OpenID Connect discovery or RFC 8414 metadata URL the endpoints were taken from, when there is one.';
COMMENT ON COLUMN providers.metadata_fetched_at IS 'When a custom provider''s discovery metadata was last fetched; refetched once older than the configured age.';
COMMENT ON COLUMN providers.docs_url IS 'The provider''s OAuth or API-key documentation, for humans.';
COMMENT ON COLUMN providers.created_at IS 'When the row was created (the seed, or the tenant''s first PUT).';
COMMENT ON COLUMN providers.updated_at IS 'When the row last changed; set by trigger (connvault_set_updated_at), never by the application.';

COMMENT ON COLUMN integrations.id IS 'Row id.';
COMMENT ON COLUMN integrations.tenant_id IS 'The tenant owning the OAuth app.';
COMMENT ON COLUMN integrations.provider_id IS 'The provider the OAuth app is registered at; one integration per tenant and provider.';
COMMENT ON COLUMN integrations.client_id IS 'The OAuth client id at the provider; public, sent in authorize URLs.';
COMMENT ON COLUMN integrations.scopes IS 'Scopes asked for by default in connect sessions of this integration; empty means the provider''s defaults.';
COMMENT ON COLUMN integrations.created_at IS 'When the integration was first saved.';
COMMENT ON COLUMN integrations.updated_at IS 'When the row last changed; set by trigger (connvault_set_updated_at), never by the application.';

COMMENT ON COLUMN connections.id IS 'Row id, the connection_id of the API; part of the sealed credentials'' associated data.';
COMMENT ON COLUMN connections.tenant_id IS 'The tenant owning the connection; RLS binds every read and write to it.';
COMMENT ON COLUMN connections.provider_id IS 'The provider the account is at.';
COMMENT ON COLUMN connections.alias IS 'The tenant''s label telling apart several accounts of one end user at one provider ('''' for the only one).';
COMMENT ON COLUMN connections.credential_type IS 'What the sealed credentials hold: oauth2 tokens, an api_key, or basic username and password.';
COMMENT ON COLUMN connections.status IS 'Lifecycle: active (usable), needs_reauth (the provider refused the grant), expired, revoked, error, pending.';
COMMENT ON COLUMN connections.token_type IS 'The access token''s type as the provider answered (normally Bearer); NULL for static credentials.';
COMMENT ON COLUMN connections.scopes IS 'Scopes granted, as the provider answered (or as asked for when it did not say).';
COMMENT ON COLUMN connections.expires_at IS 'When the access token expires; NULL when it does not (or the provider did not say).';
COMMENT ON COLUMN connections.granted_at IS 'When the end user last granted access (connect or reconnect); a refresh compares it to detect a reconnect.';
COMMENT ON COLUMN connections.last_refresh_at IS 'When tokens were last refreshed successfully.';
COMMENT ON COLUMN connections.last_used_at IS 'When a credential was last handed out, written at most once a minute; NULL if never (idle-connection queries).';
COMMENT ON COLUMN connections.refresh_failures IS 'Consecutive failed refreshes since the last success; drives the backoff in next_refresh_at.';
COMMENT ON COLUMN connections.last_error_code IS 'Machine code of the last refresh failure (e.g. invalid_grant); NULL after a success.';
COMMENT ON COLUMN connections.metadata IS 'The tenant''s own JSON object, plus non-secret fields of the token response under "provider".';
COMMENT ON COLUMN connections.created_at IS 'When the connection was first stored; with id, the key of keyset pagination.';
COMMENT ON COLUMN connections.updated_at IS
    'When the connection last changed; set by trigger (connvault_set_updated_at). A last use or a refresh lease '
    'taken or released does not count.';

COMMENT ON COLUMN oauth_sessions.id IS 'Row id.';
COMMENT ON COLUMN oauth_sessions.tenant_id IS 'The tenant that started the connect.';
COMMENT ON COLUMN oauth_sessions.provider_id IS 'The provider the end user is sent to.';
COMMENT ON COLUMN oauth_sessions.end_user_id IS 'The tenant''s id for the end user; becomes the connection''s end_user_id.';
COMMENT ON COLUMN oauth_sessions.alias IS 'Becomes the connection''s alias.';
COMMENT ON COLUMN oauth_sessions.scopes IS 'The scopes asked for in the authorize URL.';
COMMENT ON COLUMN oauth_sessions.return_url IS 'Where the end user''s browser goes after the callback; one of the integration''s allowed_return_urls.';
COMMENT ON COLUMN oauth_sessions.expires_at IS 'After this the callback refuses the session; expired sessions are purged when the tenant starts another.';
COMMENT ON COLUMN oauth_sessions.created_at IS 'When the connect session was started.';

CREATE FUNCTION connvault_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public
    AS $$
    DECLARE
        -- The trigger's arguments name bookkeeping columns whose change alone is not an update of the row
        -- (TG_ARGV is NULL, not empty, without arguments).
        ignored text[] := coalesce(TG_ARGV, '{}') || '{updated_at}';
    BEGIN
        IF (to_jsonb(NEW) - ignored) IS DISTINCT FROM (to_jsonb(OLD) - ignored) THEN
            NEW.updated_at := now();
        ELSE
            NEW.updated_at := OLD.updated_at;
        END IF;
        RETURN NEW;
    END
    $$;
COMMENT ON FUNCTION connvault_set_updated_at() IS
    'Trigger: sets updated_at to now() when any column but updated_at and the columns named as trigger arguments '
    'changed, and keeps the old value otherwise, whatever the statement wrote.';

CREATE TRIGGER providers_updated_at BEFORE UPDATE ON providers
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at();
CREATE TRIGGER integrations_updated_at BEFORE UPDATE ON integrations
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at();
CREATE TRIGGER connections_updated_at BEFORE UPDATE ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at('last_used_at', 'refresh_lease_until', 'refresh_lease_owner');

CREATE INDEX connections_tenant_last_used_idx ON connections (tenant_id, last_used_at);
COMMENT ON INDEX connections_tenant_last_used_idx IS 'Idle connections of a tenant: GET /connections?unused_since=...';

DROP INDEX oauth_sessions_expires_idx;
CREATE INDEX oauth_sessions_tenant_expires_idx ON oauth_sessions (tenant_id, expires_at);
COMMENT ON INDEX oauth_sessions_tenant_expires_idx IS 'A tenant''s expired connect sessions, purged under RLS when it starts one.';
