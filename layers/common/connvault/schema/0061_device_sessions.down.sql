-- 0061 down: no device flow. Sessions in progress are lost (their end users must start again); connections
-- they completed stay.
-- data-loss: every device connect session, and the device authorization endpoints of custom providers

DROP FUNCTION connvault_next_device_poll();
DROP FUNCTION connvault_claim_device_polls(timestamptz, integer, uuid, timestamptz);
DROP TABLE device_sessions;
ALTER TABLE providers DROP COLUMN device_authorization_url;
