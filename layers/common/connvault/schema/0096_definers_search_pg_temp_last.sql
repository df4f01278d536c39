-- 0096: every SECURITY DEFINER function searches pg_temp last (outside probe 2026-11-30, defence in depth).
-- Their search path, pg_catalog then public, left pg_temp out, and PostgreSQL then searches it *first* for tables:
-- a temporary table the calling role created (the app role may create them) stood in for the table a function,
-- running as the owner across tenants, meant to read (tenant_api_keys for the authorizer's key lookup, say). The
-- app role gains nothing by that today (it sets its own tenant anyway), but a definer must not read what its
-- caller placed in front of it. PostgreSQL's own advice: name pg_temp last. A later migration that replaces one of
-- these functions must say so too (tests/integration/test_rls.py checks every definer).

DO $$
DECLARE
    definer regprocedure;
BEGIN
    FOR definer IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
    LOOP
        EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', definer);
    END LOOP;
END
$$;
