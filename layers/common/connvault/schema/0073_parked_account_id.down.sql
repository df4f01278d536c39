-- 0073 down: grants parked at this moment lose their provider account id.
-- data-loss: the provider account ids of grants waiting for confirmation (their connections get none when confirmed; the next refresh that names one sets it)
ALTER TABLE connect_confirmations DROP COLUMN provider_account_id;
