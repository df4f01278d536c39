-- Reverses 0050: the connect page's tables, columns and lookup. Open links and page settings are lost.
DROP FUNCTION connvault_connect_link_tenant(bytea);
ALTER TABLE providers DROP COLUMN credential_check;
ALTER TABLE providers DROP COLUMN credential_form;
ALTER TABLE oauth_sessions DROP COLUMN connect_link_id;
DROP TABLE connect_links;
DROP TRIGGER connect_settings_updated_at ON connect_settings;
DROP TABLE connect_settings;
