-- 0010: what revoking one token takes with it at a provider (issue 13.6). A reconnect revokes the grant it replaces,
-- as a delete does, except where the provider ends every grant of the client for the user when one token is
-- revoked (Google): there the old grant's revocation would end the new one too, so it is left to expire.

ALTER TABLE providers
    ADD COLUMN revocation_scope text NOT NULL DEFAULT 'token' CHECK (revocation_scope IN ('token', 'authorization'));
COMMENT ON COLUMN providers.revocation_scope IS
    'What revoking one token ends at the provider: token (only that grant, RFC 7009''s reading) or authorization '
    '(every grant of this client for the user, as Google does). A reconnect revokes the grant it replaces only for '
    'token; a delete revokes either way.';
