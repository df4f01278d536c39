-- 0060 down: connections forget their kind. Code older than 0060 reads imported and device-code connections as
-- connect-flow ones, but cannot renew client-credentials or service-account connections: delete those first.
-- data-loss: the kind of every imported, device-code, client-credentials and service-account connection

ALTER TABLE connections DROP COLUMN kind;
COMMENT ON COLUMN connections.has_refresh_token IS 'Whether the sealed credentials hold a refresh token; lets the refresh scan skip the rest unopened.';
COMMENT ON COLUMN connections.credentials IS
    'Envelope of the credential JSON (access/refresh/id token, api key, or username/password).';
