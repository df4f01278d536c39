-- 0004: the authorize-URL parameter that carries the requested scopes.
-- Slack's v2 flow takes user-token scopes in `user_scope` (its `scope` asks for bot scopes); every other
-- provider uses `scope`. With this column a tenant's integration scopes reach the right parameter.

ALTER TABLE providers
    ADD COLUMN scope_parameter text NOT NULL DEFAULT 'scope'
        CHECK (scope_parameter IN ('scope', 'user_scope'));
COMMENT ON COLUMN providers.scope_parameter IS 'Authorize-URL parameter for the scopes (Slack user tokens: user_scope).';
