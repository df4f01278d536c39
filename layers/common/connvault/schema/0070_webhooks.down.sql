-- Reverses 0070: no more events, endpoints or deliveries.
DROP TRIGGER connections_events_update ON connections;
DROP TRIGGER connections_events_insert_delete ON connections;
DROP FUNCTION connvault_purge_webhook_history(timestamptz, integer);
DROP FUNCTION connvault_claim_webhook_deliveries(timestamptz, integer, integer, integer, uuid, timestamptz);
DROP FUNCTION connvault_connection_event();
DROP FUNCTION connvault_emit_event(uuid, text, uuid, jsonb);
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
