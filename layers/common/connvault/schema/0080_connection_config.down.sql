-- Reverses 0080: drops the configuration columns (with their CHECKs) and the trigger that guards them.
DROP TRIGGER connections_config_follows_grant ON connections;
DROP FUNCTION connvault_config_follows_grant();
ALTER TABLE connect_confirmations DROP COLUMN connection_config;
ALTER TABLE oauth_sessions DROP COLUMN connection_config;
ALTER TABLE connections DROP COLUMN connection_config;
ALTER TABLE providers DROP COLUMN token_params, DROP COLUMN api_base_url, DROP COLUMN connection_config;
