-- 0002 down: rows may again name any provider (the foreign keys alone). No data is lost.

DROP TRIGGER oauth_sessions_provider_owner ON oauth_sessions;
DROP TRIGGER integrations_provider_owner ON integrations;
DROP TRIGGER connections_provider_owner ON connections;
DROP FUNCTION connvault_check_provider_owner();
