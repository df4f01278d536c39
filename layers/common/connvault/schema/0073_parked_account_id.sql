-- 0073: a parked grant (a connect session that requires confirmation, 0071) keeps the provider's id for the
-- account it came back with (0031), sealed like the connection's own, so the confirmed connection carries it as
-- an unconfirmed connect would have.

ALTER TABLE connect_confirmations ADD COLUMN provider_account_id bytea;
COMMENT ON COLUMN connect_confirmations.provider_account_id IS
    'Envelope of the provider''s id for the connected account, when the token response named one; given to the '
    'connection at confirmation.';
