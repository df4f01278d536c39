-- 0021: a refused client secret is the integration's fault, not every end user's (issue 13, item 10).
-- invalid_client / unauthorized_client from a token endpoint mark the integration instead of sending each of
-- its connections to needs_reauth; refreshes of its connections wait until the tenant sends new credentials.

ALTER TABLE integrations
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'invalid_credentials')),
    ADD COLUMN status_reason text CHECK (status_reason ~ '^[a-z0-9_.-]{1,64}$'),
    ADD COLUMN status_since timestamptz;
COMMENT ON COLUMN integrations.status IS
    'active, or invalid_credentials: the provider refused the client id or secret; no refresh of the '
    'integration''s connections is attempted until new credentials are stored.';
COMMENT ON COLUMN integrations.status_reason IS 'The provider''s error code that set the status (e.g. invalid_client).';
COMMENT ON COLUMN integrations.status_since IS 'When the status last changed.';
