"""The token read's shapes, against the owner's primary-key read, measured in the same run (docs/design.md).

Every variant returns the same columns for the same row, as a prepared pg8000 statement on a warm connection:

* floor: the owner's ``SELECT … FROM connections JOIN providers WHERE id = $1`` (RLS does not bind the owner);
* pinned: a plpgsql ``SECURITY INVOKER`` function that sets the tenant and selects in one statement, with
  ``SET search_path`` (``connvault_read_connection`` as migration 0020 left it);
* unpinned: the same function without ``SET search_path``, every name schema-qualified (as migration 0012 had it);
* two columns: ``connvault_token_read`` as migration 0084 made it, the unpinned function answering two columns,
  the sealed credentials and the rest as one json array (pg8000 decodes each column in Python, json in C);
* session by statement: the app role's plain prepared SELECT that also filters ``tenant_id``, the tenant set for
  the session by a ``set_config`` statement of its own only when it changes (same tenant every call, then
  alternating between two tenants);
* deployed (migration 0090, ``FastReads.read_connection``'s statements): the plain SELECT of the
  ``connvault_token_reads`` view while the session is bound to the tenant, and
  ``connvault_token_read_binding_session``, which binds it and reads in one statement, whenever the tenant changes;
  both take the json column as its text, which ``FastReads`` decodes once per connection and state.

Run: ``.venv/bin/python bench/token_read_bench.py [--iterations 2000]``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
from database import backend_pids, bench_database, migrated, oauth_connection  # noqa: E402 - bench/database.py, beside this script
from timing import ROUNDS, interleaved_per_call_us, pin_cpus, warm_bench_options  # noqa: E402 - bench/timing.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

os.environ.update(LOCAL_ENV, POWERTOOLS_LOG_LEVEL="WARNING")

COLUMNS = """c.status, c.credential_type, c.credentials, c.token_type, c.scopes,
    extract(epoch FROM c.expires_at)::double precision, c.has_refresh_token, c.last_error_code,
    p.refresh_margin_seconds, extract(epoch FROM greatest(c.granted_at, c.last_refresh_at))::double precision"""
FUNCTION = """CREATE FUNCTION public.{name}(p_tenant uuid, p_id uuid)
    RETURNS TABLE (status text, credential_type text, credentials bytea, token_type text, scopes text[],
        expires_at_epoch double precision, has_refresh_token boolean, last_error_code text,
        refresh_margin_seconds integer, issued_at_epoch double precision)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER {pin}
    AS $$
    BEGIN
        PERFORM pg_catalog.set_config('app.tenant_id', p_tenant::text, true);
        RETURN QUERY SELECT {columns} FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
            WHERE c.id = p_id;
    END
    $$"""
SESSION_READ = f"""SELECT {COLUMNS} FROM public.connections c JOIN public.providers p ON p.id = c.provider_id
    WHERE c.id = CAST(:id AS uuid) AND c.tenant_id = CAST(:tenant AS uuid)"""


def main() -> None:
    args = warm_bench_options(__doc__, 2000)
    with bench_database() as db:
        run_bench(db, args.iterations, args.pin)


def run_bench(db: Any, iterations: int, pin: str) -> None:
    migrated(db)
    rows = [tuple(map(str, oauth_connection(name))) for name in ("bench-a", "bench-b")]
    (tenant_a, id_a), (tenant_b, id_b) = rows

    owner = db.owner_target.connect()
    for name, pin in (("bench_read_pinned", "SET search_path = pg_catalog, public"), ("bench_read_unpinned", "")):
        owner.run(FUNCTION.format(name=name, pin=pin, columns=COLUMNS))
    floor = owner.prepare(
        f"SELECT {COLUMNS} FROM connections c JOIN providers p ON p.id = c.provider_id WHERE c.id = CAST(:id AS uuid)"
    )
    from connvault.db import fast_reads
    from connvault.db.native import connect_as_app

    connection = connect_as_app().connection  # the kind of connection token fetch reads on
    pinned = connection.prepare("SELECT * FROM bench_read_pinned(CAST(:tenant AS uuid), CAST(:id AS uuid))")
    unpinned = connection.prepare("SELECT * FROM bench_read_unpinned(CAST(:tenant AS uuid), CAST(:id AS uuid))")
    two_columns = connection.prepare("SELECT * FROM connvault_token_read(CAST(:tenant AS uuid), CAST(:id AS uuid))")
    session = connection.prepare(SESSION_READ)
    set_tenant = connection.prepare("SELECT pg_catalog.set_config('app.tenant_id', :tenant, false)")
    current = {"tenant": ""}

    def by_session(tenant: str, row: str) -> None:
        if current["tenant"] != tenant:
            set_tenant.run(tenant=tenant)
            current["tenant"] = tenant
        assert session.run(tenant=tenant, id=row)

    alternate = [(tenant_a, id_a), (tenant_b, id_b)]
    turn = {"i": 0}

    def by_session_alternating() -> None:
        turn["i"] ^= 1
        by_session(*alternate[turn["i"]])

    def deployed_alternating() -> None:
        turn["i"] ^= 1
        tenant, row = alternate[turn["i"]]
        assert binding.run(tenant=tenant, id=row)

    stages = {
        "floor: owner's PK read": lambda: floor.run(id=id_a),
        "pinned function (SET search_path)": lambda: pinned.run(tenant=tenant_a, id=id_a),
        "unpinned function (qualified names)": lambda: unpinned.run(tenant=tenant_a, id=id_a),
        "unpinned, two columns (json)": lambda: two_columns.run(tenant=tenant_a, id=id_a),
        "session by statement, same tenant": lambda: by_session(tenant_a, id_a),
        "session by statement, alternating": by_session_alternating,
    }
    # The deployed statements, each on a connection of its own: every other stage moves its session's tenant.
    bound_connection = connect_as_app().connection
    bound_connection.prepare(fast_reads._READ_CONNECTION_BINDING).run(tenant=tenant_a, id=id_a)
    bound = bound_connection.prepare(fast_reads._READ_CONNECTION)
    binding = connect_as_app().connection.prepare(fast_reads._READ_CONNECTION_BINDING)

    def deployed_same_tenant() -> None:
        assert bound.run(tenant=tenant_a, id=id_a)

    stages["deployed, same tenant (bound)"] = deployed_same_tenant
    stages["deployed, alternating (binding)"] = deployed_alternating
    for fn in stages.values():
        for _ in range(300):
            fn()
    placement = pin_cpus(backend_pids(db.data_dir)[1] if db.data_dir else None, pin)
    timings = interleaved_per_call_us(stages, iterations)
    floor_us = timings["floor: owner's PK read"]
    print(f"token read, warm, {iterations} calls x {ROUNDS} rounds, interleaved in slices (median of slice means)")
    print(f"  machine load (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {placement}")
    for name, us in timings.items():
        print(f"  {name:40s} {us:8.1f} us  ratio {us / floor_us:.2f}x")
    owner.close()


if __name__ == "__main__":
    main()
