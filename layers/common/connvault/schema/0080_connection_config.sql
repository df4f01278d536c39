-- 0080: per-connection provider configuration (issue 19).
-- A provider's URLs may hold placeholders (https://{subdomain}.myshopify.com/...) that each connection fills
-- from its own values: the tenant's (a shop's subdomain) or the provider's token response (Salesforce's
-- instance_url). The catalog declares the keys; connections and pending connect sessions hold the values.

ALTER TABLE providers
    ADD COLUMN connection_config jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(connection_config) = 'object'),
    ADD COLUMN api_base_url text CHECK (length(api_base_url) <= 2048),
    ADD COLUMN token_params jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(token_params) = 'object');
COMMENT ON COLUMN providers.connection_config IS
    'The per-connection keys the provider''s URL placeholders need: {name: {kind, source, pattern, domains, '
    'description}} (see connvault/connection_config.py). Empty for providers with fixed URLs.';
COMMENT ON COLUMN providers.api_base_url IS
    'The provider''s API base URL, possibly with placeholders; the proxy sends requests under it.';
COMMENT ON COLUMN providers.token_params IS
    'Extra form fields for the authorization code exchange, e.g. Shopify''s expiring=1.';

ALTER TABLE connections
    ADD COLUMN connection_config jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(connection_config) = 'object' AND length(connection_config::text) <= 4096);
COMMENT ON COLUMN connections.connection_config IS
    'Values for the provider''s URL placeholders, e.g. {"subdomain": "acme"}. Tenant data; changes only with a '
    'new grant (trigger connections_config_follows_grant), so it can never redirect an existing grant''s tokens.';

ALTER TABLE oauth_sessions
    ADD COLUMN connection_config jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(connection_config) = 'object' AND length(connection_config::text) <= 4096);
COMMENT ON COLUMN oauth_sessions.connection_config IS
    'The tenant''s values for the provider''s URL placeholders, checked when the session started; the callback '
    'exchanges the code at the URLs they fill.';

ALTER TABLE connect_links
    ADD COLUMN connection_config jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(connection_config) = 'object' AND length(connection_config::text) <= 4096);
COMMENT ON COLUMN connect_links.connection_config IS
    'The tenant''s values for the URL placeholders of the link''s one provider (a link needing them names one), '
    'checked when the link was made; the page''s connect attempt carries them.';

ALTER TABLE connect_confirmations
    ADD COLUMN connection_config jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(connection_config) = 'object' AND length(connection_config::text) <= 4096);
COMMENT ON COLUMN connect_confirmations.connection_config IS
    'The parked grant''s values for the provider''s URL placeholders (the tenant''s and the token response''s); '
    'they become the connection''s when the grant is confirmed.';

-- Where a connection's tokens are sent follows from its configuration. Changing the configuration of a grant
-- in place would send tokens issued by one host (acme.zendesk.com) to another (evil.zendesk.com); only a new
-- grant, whose tokens come from the new host, may bring a new configuration.
CREATE FUNCTION connvault_config_follows_grant() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public
    AS $$
    BEGIN
        IF NEW.connection_config IS DISTINCT FROM OLD.connection_config
           AND NEW.granted_at IS NOT DISTINCT FROM OLD.granted_at THEN
            RAISE EXCEPTION 'connection_config changes only with a new grant'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END
    $$;
COMMENT ON FUNCTION connvault_config_follows_grant() IS
    'Trigger: refuses an update that changes connections.connection_config without a new grant (granted_at).';

CREATE TRIGGER connections_config_follows_grant BEFORE UPDATE OF connection_config ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_config_follows_grant();
