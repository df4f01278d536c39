-- 0091 down: connections' updated_at is kept by the generic trigger function again, as migration 0030 made it.

DROP TRIGGER connections_updated_at ON connections;
CREATE TRIGGER connections_updated_at BEFORE UPDATE ON connections
    FOR EACH ROW EXECUTE FUNCTION connvault_set_updated_at('last_used_at', 'refresh_lease_until', 'refresh_lease_owner');
DROP FUNCTION connvault_connections_set_updated_at();
