-- 0001 down: back to an empty database (the runner's schema_migrations stays, and so does the application
-- role, which is cluster-wide and may serve other databases).
-- data-loss: drops every table, with every tenant, API key, integration and sealed credential in them.

DROP FUNCTION connvault_read_connection(uuid, uuid, interval);
DROP FUNCTION connvault_due_backlog(timestamptz, integer);
DROP FUNCTION connvault_claim_due_refreshes(timestamptz, integer, integer, uuid, timestamptz);
DROP FUNCTION connvault_tenant_key_salt(uuid);
DROP FUNCTION connvault_oauth_session_tenant(bytea);
DROP FUNCTION connvault_find_api_key(text);

DROP TABLE oauth_sessions;
DROP TABLE connections;
DROP TABLE integrations;
DROP TABLE providers;
DROP TABLE tenant_api_keys;
DROP TABLE tenants;

DROP FUNCTION connvault_current_tenant();
