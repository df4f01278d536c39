-- 0060: connections of more kinds than the connect flow makes (issue 16): imported grants, client credentials
-- (RFC 6749 4.4), service accounts signing JWT-bearer assertions (RFC 7523 2.1), device authorization (RFC 8628).
-- Every one of them hands out an OAuth access token (credential_type oauth2); what renews it is sealed with it.
-- kind is NULL for the connections made the provider's usual way, so no existing row is rewritten.

ALTER TABLE connections
    ADD COLUMN kind text CHECK (kind IN ('device_code', 'imported', 'client_credentials', 'jwt_bearer'));
COMMENT ON COLUMN connections.kind IS
    'How the connection got its credentials: device_code (RFC 8628), imported (a grant made elsewhere), '
    'client_credentials (RFC 6749 4.4) or jwt_bearer (a service account, RFC 7523). NULL: the provider''s usual '
    'way, the connect flow''s authorization code for oauth2, or the API key or basic pair stored as given.';
COMMENT ON COLUMN connections.has_refresh_token IS
    'Whether new tokens can be had without the end user: a refresh token, or (kinds client_credentials and '
    'jwt_bearer) the client or key that mints them, sealed in credentials. Lets the refresh scan skip the rest '
    'unopened.';
COMMENT ON COLUMN connections.credentials IS
    'Envelope of the credential JSON: access/refresh/id token and, for client_credentials and jwt_bearer, the '
    'client or key that renews them; or the api key; or username/password.';
