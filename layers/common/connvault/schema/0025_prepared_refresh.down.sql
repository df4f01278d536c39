-- Reverses 0025.
DROP FUNCTION connvault_store_refresh(
    uuid, uuid, uuid, timestamptz, bytea, boolean, text, text[], timestamptz, timestamptz, timestamptz, bytea, bytea);
DROP FUNCTION connvault_leased_connection(uuid, uuid, uuid);
