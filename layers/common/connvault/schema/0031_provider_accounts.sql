-- 0031: the provider's own ids for what a connection reaches, sealed and still searchable (issue 18, seed 002).
-- - connections.provider_account_id: the provider's stable id for the connected account (an OpenID sub, Slack
--   team:user, Microsoft tenant:object id, ...), taken from the token response as the catalog's
--   account_id_fields say, or set by the tenant.
-- - accounts: zero or more provider-side accounts under a connection (a bank account behind one Plaid login),
--   soft-deleted first and purged after the retention period by the scheduled function.
-- Every such id is an envelope like any other secret, plus a blind index beside it: HMAC-SHA-256 under a key of
-- the tenant (tenants.blind_index_key, itself sealed), so an exact-match search is an index scan that opens
-- nothing but the rows it finds, and an index value means nothing in another tenant.

ALTER TABLE tenants ADD COLUMN blind_index_key bytea;
COMMENT ON COLUMN tenants.blind_index_key IS
    'Envelope of the tenant''s 32-byte blind-index key (HMAC-SHA-256), made on first use and never stored in clear. '
    'Deleted with the row, so crypto-shredding covers the indexes as it covers the envelopes.';

ALTER TABLE providers
    ADD COLUMN account_id_fields text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(account_id_fields) <= 4
               AND array_to_string(account_id_fields, ' ') ~ '^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,3}( |$))*$');
COMMENT ON COLUMN providers.account_id_fields IS
    'Where a token response names the connected account: dotted paths into the response (team.id), or into the '
    'id token''s claims (id_token.sub); the values are joined with ":" in this order. Empty: the tenant sets it.';

ALTER TABLE connections
    ADD COLUMN provider_account_id bytea,
    ADD COLUMN provider_account_id_bidx bytea CHECK (length(provider_account_id_bidx) = 32),
    ADD CONSTRAINT connections_provider_account_id_indexed
        CHECK ((provider_account_id IS NULL) = (provider_account_id_bidx IS NULL)),
    ADD CONSTRAINT connections_id_tenant_key UNIQUE (id, tenant_id);
COMMENT ON COLUMN connections.provider_account_id IS
    'Envelope of the provider''s stable id for the connected account (captured at connect and refresh, or set by '
    'the tenant).';
COMMENT ON COLUMN connections.provider_account_id_bidx IS
    'Blind index of provider_account_id: HMAC-SHA-256 under the tenant''s key; equal ids give equal values within '
    'a tenant only.';
COMMENT ON CONSTRAINT connections_id_tenant_key ON connections IS
    'Target of accounts'' foreign key, which makes an account''s tenant its connection''s tenant.';
CREATE INDEX connections_provider_account_idx ON connections (tenant_id, provider_account_id_bidx)
    WHERE provider_account_id_bidx IS NOT NULL;
COMMENT ON INDEX connections_provider_account_idx IS 'GET /connections?provider_account_id=... (exact match).';

CREATE TABLE accounts (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid NOT NULL,
    connection_id     uuid NOT NULL,
    external_id       bytea,
    external_id_bidx  bytea CHECK (length(external_id_bidx) = 32),
    baas_id           bytea,
    baas_id_bidx      bytea CHECK (length(baas_id_bidx) = 32),
    display_name      text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT accounts_connection_fkey FOREIGN KEY (connection_id, tenant_id)
        REFERENCES connections (id, tenant_id) ON DELETE CASCADE,
    CONSTRAINT accounts_has_an_id CHECK (external_id IS NOT NULL OR baas_id IS NOT NULL),
    CONSTRAINT accounts_external_id_indexed CHECK ((external_id IS NULL) = (external_id_bidx IS NULL)),
    CONSTRAINT accounts_baas_id_indexed CHECK ((baas_id IS NULL) = (baas_id_bidx IS NULL))
);
COMMENT ON TABLE accounts IS
    'Provider-side accounts under a connection (e.g. the bank accounts behind one login), with their ids sealed and '
    'blind-indexed. Soft-deleted first (deleted_at), purged by the scheduled function after the retention period.';
COMMENT ON COLUMN accounts.id IS 'Row id, the account_id of the API; part of the sealed ids'' associated data.';
COMMENT ON COLUMN accounts.tenant_id IS 'The tenant owning the account; always its connection''s tenant (foreign key), and RLS binds it.';
COMMENT ON COLUMN accounts.connection_id IS 'The connection the account was reached through; deleting it deletes its accounts.';
COMMENT ON COLUMN accounts.external_id IS 'Envelope of the provider''s id for the account (or for the user at the provider).';
COMMENT ON COLUMN accounts.external_id_bidx IS 'Blind index of external_id (HMAC-SHA-256 under the tenant''s key): GET /accounts?external_id=...';
COMMENT ON COLUMN accounts.baas_id IS 'Envelope of the account''s id at a banking-as-a-service or ledger provider (seed 002''s baas_id).';
COMMENT ON COLUMN accounts.baas_id_bidx IS 'Blind index of baas_id (HMAC-SHA-256 under the tenant''s key): GET /accounts?baas_id=...';
COMMENT ON COLUMN accounts.display_name IS 'The tenant''s label for the account; not secret, not indexed.';
COMMENT ON COLUMN accounts.metadata IS 'The tenant''s own JSON object about the account.';
COMMENT ON COLUMN accounts.created_at IS 'When the account was added; with id, the key of keyset pagination.';
COMMENT ON COLUMN accounts.updated_at IS 'When the account last changed; set by trigger (connvault_set_updated_at).';
COMMENT ON COLUMN accounts.deleted_at IS
    'When the tenant deleted the account; hidden from every read from then on, and purged once older than the '
    'retention period (CONNVAULT_ACCOUNT_RETENTION_DAYS).';

CREATE INDEX accounts_connection_idx ON accounts (connection_id, created_at, id);
COMMENT ON INDEX accounts_connection_idx IS 'A connection''s accounts in creation order (GET /connections/{id}/accounts), and the cascade from connections.';
CREATE INDEX accounts_external_idx ON accounts (tenant_id, external_id_bidx)
    WHERE deleted_at IS NULL AND external_id_bidx IS NOT NULL;
COMMENT ON INDEX accounts_external_idx IS 'GET /accounts?external_id=... (exact match among live accounts).';
CREATE INDEX accounts_baas_idx ON accounts (tenant_id, baas_id_bidx)
    WHERE deleted_at IS NULL AND baas_id_bidx IS NOT NULL;
COMMENT ON INDEX accounts_baas_idx IS 'GET /accounts?baas_id=... (exact match among live accounts).';
CREATE UNIQUE INDEX accounts_connection_external_key ON accounts (connection_id, external_id_bidx)
    WHERE deleted_at IS NULL AND external_id_bidx IS NOT NULL;
COMMENT ON INDEX accounts_connection_external_key IS 'A live external id appears at most once under a connection.';
CREATE INDEX accounts_deleted_idx ON accounts (deleted_at) WHERE deleted_at IS NOT NULL;
COMMENT ON INDEX accounts_deleted_idx IS 'The scheduled purge of soft-deleted accounts past their retention, across tenants.';

CREATE TRIGGER accounts_updated_at BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at();

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON accounts
    USING (tenant_id = connvault_current_tenant()) WITH CHECK (tenant_id = connvault_current_tenant());

-- The scheduled purge runs before any tenant is known: a SECURITY DEFINER function that deletes soft-deleted
-- rows past their retention and answers a count, nothing else.
CREATE FUNCTION connvault_purge_deleted_accounts(p_deleted_before timestamptz, p_limit integer) RETURNS integer
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
        WITH doomed AS (
            SELECT a.id FROM accounts a
            WHERE a.deleted_at IS NOT NULL AND a.deleted_at < p_deleted_before
            ORDER BY a.deleted_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED
        ), purged AS (
            DELETE FROM accounts a USING doomed WHERE a.id = doomed.id RETURNING 1
        )
        SELECT count(*)::integer FROM purged
    $$;
COMMENT ON FUNCTION connvault_purge_deleted_accounts(timestamptz, integer) IS
    'The scheduled purge across tenants: deletes up to p_limit accounts soft-deleted before p_deleted_before '
    '(SKIP LOCKED, so overlapping runs share the work) and answers how many.';
