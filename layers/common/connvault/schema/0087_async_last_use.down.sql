-- 0087 down: a use commits durably again, with the function's own search path, as migration 0003 made it.

CREATE OR REPLACE FUNCTION connvault_touch_connection(p_tenant uuid, p_id uuid, p_every interval) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, public
    AS $$
    BEGIN
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
        UPDATE connections c SET last_used_at = now()
        WHERE c.id = p_id AND (c.last_used_at IS NULL OR c.last_used_at < now() - p_every);
    END
    $$;
COMMENT ON FUNCTION connvault_touch_connection(uuid, uuid, interval) IS
    'Records a use: last_used_at, written at most once per interval per connection.';
