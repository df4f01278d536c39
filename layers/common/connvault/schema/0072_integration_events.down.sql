-- 0072 down: integrations write no events again (events already in the outbox stay and are delivered).
DROP TRIGGER integrations_events_update ON integrations;
DROP FUNCTION connvault_integration_event();
