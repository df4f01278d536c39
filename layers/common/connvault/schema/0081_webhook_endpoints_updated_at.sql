-- 0081: webhook_endpoints.updated_at is kept by the trigger, like every other updated_at (0030's convention,
-- checked by tests/integration/test_schema_conventions.py). The 0070 table arrived with the column and no
-- trigger. A delivery's bookkeeping (failure count, circuit, last success or failure) is not a change by the
-- tenant, so it is left out, as the column's comment says.

CREATE TRIGGER webhook_endpoints_updated_at BEFORE UPDATE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION
        connvault_set_updated_at('consecutive_failures', 'circuit_open_until', 'last_success_at', 'last_failure_at');
COMMENT ON TRIGGER webhook_endpoints_updated_at ON webhook_endpoints IS
    'Keeps updated_at: any change but a delivery''s bookkeeping moves it.';
