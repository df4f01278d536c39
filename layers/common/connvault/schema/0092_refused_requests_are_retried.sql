-- 0092: a refresh the provider refused without saying the grant is dead (a 403 or 404 without a code,
-- invalid_request, unsupported_grant_type, invalid_scope, a code only it knows) is now a counted failure retried
-- with backoff (services/refresh.py), no longer needs_reauth: nothing in such an answer says the end user must
-- connect again, and one bad hour of a provider sent every one of its connections there for good. Connections the
-- old rule sent there for that alone become active again, their failure count and code kept, so the next scheduled
-- run retries them; those whose code says the grant is dead stay as they are: the dead-grant and refused-client
-- codes of oauth/outcomes.ERROR_CODES as this release knows them, and the reasons connvault gives itself
-- (refresh_interrupted, no_refresh_token, invalid_connection_config, token_endpoint_moved, account_changed,
-- revocation_endpoint_moved, integration_missing). Nothing here is undone by the down step: it only corrects what
-- the old rule did.

UPDATE connections SET status = 'active'
WHERE status = 'needs_reauth' AND has_refresh_token AND last_error_code IS NOT NULL
  AND last_error_code NOT IN (
      'invalid_grant', 'access_denied', 'interaction_required', 'login_required', 'consent_required',
      'bad_verification_code', 'bad_refresh_token', 'invalid_code', 'invalid_refresh_token', 'token_revoked',
      'token_expired',
      'invalid_client', 'unauthorized_client', 'incorrect_client_credentials', 'invalid_client_id',
      'bad_client_secret',
      'refresh_interrupted', 'no_refresh_token', 'invalid_connection_config', 'token_endpoint_moved',
      'revocation_endpoint_moved', 'integration_missing', 'account_changed');
