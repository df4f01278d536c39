-- 0031 down: no provider accounts, no provider account ids, no blind-index keys.
-- data-loss: drops every account and every connection's provider_account_id (sealed ids no up can give back),
-- and the tenants' blind-index keys (an up makes new ones, so the old indexes would not match anyway).

DROP FUNCTION connvault_purge_deleted_accounts(timestamptz, integer);
DROP TABLE accounts;

DROP INDEX connections_provider_account_idx;
ALTER TABLE connections
    DROP CONSTRAINT connections_id_tenant_key,
    DROP CONSTRAINT connections_provider_account_id_indexed,
    DROP COLUMN provider_account_id_bidx,
    DROP COLUMN provider_account_id;

ALTER TABLE providers DROP COLUMN account_id_fields;
ALTER TABLE tenants DROP COLUMN blind_index_key;
