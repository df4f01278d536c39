-- 0091: connections' updated_at trigger costs a third of what it did. The generic trigger function (0030) compares
-- the old and new rows as JSON, bookkeeping columns taken out, on every update of a connection, including those
-- that write only bookkeeping (a use, a refresh lease taken or given back), which are most of them. Measured here
-- with EXPLAIN ANALYZE over three runs: the trigger took 82-97 us per update as it was, 23-29 us comparing the
-- columns themselves in a function of connections' own, with or without its SET search_path (so it keeps it); an
-- update of last_used_at took 292-312 us before and 240-242 us after. A WHEN condition naming the columns skipped
-- the function but cost as much: PostgreSQL rebuilds a trigger's condition from its stored text in every statement
-- that fires it, while a plpgsql function keeps its compiled expressions for the session.
--
-- The function names the columns: a column added to connections must be added here too, or its change alone would
-- not move updated_at; tests/integration/test_schema_conventions.py checks that every column is named or ignored.

CREATE FUNCTION connvault_connections_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public
    AS $$
    BEGIN
        -- Every column but updated_at and the bookkeeping: last_used_at, refresh_lease_until, refresh_lease_owner.
        IF
            (NEW.id, NEW.tenant_id, NEW.provider_id, NEW.end_user_id, NEW.alias, NEW.credential_type, NEW.status,
             NEW.credentials, NEW.has_refresh_token, NEW.token_type, NEW.scopes, NEW.expires_at, NEW.granted_at,
             NEW.last_refresh_at, NEW.refresh_failures, NEW.last_error_code, NEW.next_refresh_at, NEW.metadata,
             NEW.created_at, NEW.token_version, NEW.refresh_started_at, NEW.fault_count, NEW.fault_code,
             NEW.provider_account_id, NEW.provider_account_id_bidx, NEW.kind, NEW.renews_with_own_client,
             NEW.connection_config)
            IS DISTINCT FROM
            (OLD.id, OLD.tenant_id, OLD.provider_id, OLD.end_user_id, OLD.alias, OLD.credential_type, OLD.status,
             OLD.credentials, OLD.has_refresh_token, OLD.token_type, OLD.scopes, OLD.expires_at, OLD.granted_at,
             OLD.last_refresh_at, OLD.refresh_failures, OLD.last_error_code, OLD.next_refresh_at, OLD.metadata,
             OLD.created_at, OLD.token_version, OLD.refresh_started_at, OLD.fault_count, OLD.fault_code,
             OLD.provider_account_id, OLD.provider_account_id_bidx, OLD.kind, OLD.renews_with_own_client,
             OLD.connection_config)
        THEN
            NEW.updated_at := now();
        ELSE
            NEW.updated_at := OLD.updated_at;
        END IF;
        RETURN NEW;
    END
    $$;
COMMENT ON FUNCTION connvault_connections_set_updated_at() IS
    'Trigger on connections: connvault_set_updated_at with the columns named (every one but updated_at, last_used_at, '
    'refresh_lease_until and refresh_lease_owner), compared as they are instead of as JSON.';

DROP TRIGGER connections_updated_at ON connections;
CREATE TRIGGER connections_updated_at BEFORE UPDATE ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_connections_set_updated_at();
