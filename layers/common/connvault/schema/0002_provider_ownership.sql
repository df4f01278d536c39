-- 0002: a row may only name a provider its tenant can see (a global one, or the tenant's own custom one).
-- Foreign keys are checked without row-level security, so without this a tenant that learned the id of
-- another tenant's custom provider could attach connections, integrations or connect sessions to it.

CREATE FUNCTION connvault_check_provider_owner() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
    DECLARE
        owner uuid;
    BEGIN
        SELECT p.tenant_id INTO owner FROM providers p WHERE p.id = NEW.provider_id;
        IF owner IS NOT NULL AND owner <> NEW.tenant_id THEN
            RAISE EXCEPTION 'provider % is not visible to tenant %', NEW.provider_id, NEW.tenant_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NEW;
    END
    $$;
COMMENT ON FUNCTION connvault_check_provider_owner() IS
    'Trigger: refuses rows that name another tenant''s custom provider (FK checks bypass RLS).';

CREATE TRIGGER connections_provider_owner BEFORE INSERT OR UPDATE OF provider_id, tenant_id ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_check_provider_owner();
CREATE TRIGGER integrations_provider_owner BEFORE INSERT OR UPDATE OF provider_id, tenant_id ON integrations
    FOR EACH ROW EXECUTE FUNCTION connvault_check_provider_owner();
CREATE TRIGGER oauth_sessions_provider_owner BEFORE INSERT OR UPDATE OF provider_id, tenant_id ON oauth_sessions
    FOR EACH ROW EXECUTE FUNCTION connvault_check_provider_owner();
