-- 0080 down: drops the configuration columns (with their CHECKs) and the trigger that guards them. The
-- providers' columns are catalog data (seeded again when 0080 is applied again).
-- data-loss: drops every connection's, connect link's, pending connect session's and parked grant's
-- connection_config; a Shopify, Zendesk, Okta or Jira connection no longer knows its host, nor a Salesforce one its
-- instance_url (connect them again).
DROP TRIGGER connections_config_follows_grant ON connections;
DROP FUNCTION connvault_config_follows_grant();
ALTER TABLE connect_confirmations DROP COLUMN connection_config;
ALTER TABLE connect_links DROP COLUMN connection_config;
ALTER TABLE oauth_sessions DROP COLUMN connection_config;
ALTER TABLE connections DROP COLUMN connection_config;
ALTER TABLE providers DROP COLUMN token_params, DROP COLUMN api_base_url, DROP COLUMN connection_config;
