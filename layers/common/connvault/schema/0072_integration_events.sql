-- 0072: integration.credentials_invalid (issue 17). Migration 0021 records on the integration that the provider
-- refused the tenant's OAuth app itself (invalid_client / unauthorized_client); this trigger writes the event into
-- the outbox of 0070 in the same transaction, once per change into that status (not again while it stays there).
-- The payload names the integration the way the API does, by its provider's slug.

CREATE FUNCTION connvault_integration_event() RETURNS trigger
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        slug text;
    BEGIN
        SELECT p.slug INTO slug FROM providers p WHERE p.id = NEW.provider_id;
        PERFORM connvault_emit_event(
            NEW.tenant_id,
            'integration.credentials_invalid',
            NEW.id,
            jsonb_build_object(
                'provider', slug,
                'status', NEW.status,
                'error_code', NEW.status_reason,
                'since', NEW.status_since
            )
        );
        RETURN NULL;
    END
    $$;
COMMENT ON FUNCTION connvault_integration_event() IS
    'Trigger: an integration entering invalid_credentials becomes an integration.credentials_invalid outbox event.';

CREATE TRIGGER integrations_events_update AFTER UPDATE ON integrations
    FOR EACH ROW
    WHEN (NEW.status = 'invalid_credentials' AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION connvault_integration_event();
COMMENT ON TRIGGER integrations_events_update ON integrations IS
    'Writes integration.credentials_invalid when the provider starts refusing the tenant''s OAuth app.';
