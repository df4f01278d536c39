-- 0082 down: the catalog's api_auth goes (seeded again when 0082 is applied again) and so does the proxy's read.
DROP FUNCTION connvault_read_proxy_target(uuid, uuid);
ALTER TABLE providers DROP COLUMN api_auth;
