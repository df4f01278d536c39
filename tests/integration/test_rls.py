"""Row-level security as the application role sees it: raw SQL through ``SET ROLE connvault_app`` with the
transaction bound to a tenant, exactly what every application session does, minus the application code.

Rows are set up by the owner, so these tests do not depend on the repositories they protect.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from pg8000.exceptions import DatabaseError

from tests.support.factories import APP_ROLE, as_tenant, global_provider_id, owner

if TYPE_CHECKING:
    import pg8000.native

    from tests.support.database import TestDatabase

INSUFFICIENT_PRIVILEGE = "42501"  # also the SQLSTATE of "new row violates row-level security policy"


@dataclass(frozen=True)
class TenantRows:
    """One tenant with one row in every table it can own."""

    id: uuid.UUID
    key_id: str
    custom_provider: uuid.UUID
    integration: uuid.UUID
    connection: uuid.UUID
    oauth_session: uuid.UUID
    state_sha256: bytes
    account: uuid.UUID


# Every tenant-owned table, with the column naming its tenant.
TENANT_TABLES = {
    "tenants": "id",
    "tenant_api_keys": "tenant_id",
    "providers": "tenant_id",
    "integrations": "tenant_id",
    "connections": "tenant_id",
    "oauth_sessions": "tenant_id",
    "accounts": "tenant_id",
    "connect_settings": "tenant_id",
    "connect_links": "tenant_id",
}


def populate(sql: pg8000.native.Connection, github: uuid.UUID, name: str) -> TenantRows:
    tenant = sql.run("INSERT INTO tenants (name) VALUES (:n) RETURNING id", n=name)[0][0]
    key_id = uuid.uuid4().hex[:16]
    sql.run(
        "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256) VALUES (:t, :k, :h)",
        t=tenant,
        k=key_id,
        h=hashlib.sha256(name.encode()).digest(),
    )
    custom = sql.run(
        "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:t, 'own', 'Own', 'api_key')"
        " RETURNING id",
        t=tenant,
    )[0][0]
    integration = sql.run(
        "INSERT INTO integrations (tenant_id, provider_id, client_id) VALUES (:t, :p, 'client') RETURNING id",
        t=tenant,
        p=github,
    )[0][0]
    connection = sql.run(
        "INSERT INTO connections (tenant_id, provider_id, end_user_id, credential_type, status, credentials,"
        " has_refresh_token, expires_at) VALUES (:t, :p, 'u1', 'oauth2', 'active', :c, true, :e) RETURNING id",
        t=tenant,
        p=github,
        c=b"sealed",
        e=datetime.now(UTC) + timedelta(minutes=1),
    )[0][0]
    state_sha256 = hashlib.sha256(uuid.uuid4().bytes).digest()
    oauth_session = sql.run(
        "INSERT INTO oauth_sessions (tenant_id, provider_id, state_sha256, end_user_id, expires_at)"
        " VALUES (:t, :p, :s, 'u1', now() + interval '10 minutes') RETURNING id",
        t=tenant,
        p=github,
        s=state_sha256,
    )[0][0]
    account = sql.run(
        "INSERT INTO accounts (tenant_id, connection_id, external_id, external_id_bidx) VALUES (:t, :c, :e, :i)"
        " RETURNING id",
        t=tenant,
        c=connection,
        e=b"sealed",
        i=hashlib.sha256(name.encode()).digest(),
    )[0][0]
    sql.run("INSERT INTO connect_settings (tenant_id, display_name) VALUES (:t, :n)", t=tenant, n=name)
    sql.run(
        "INSERT INTO connect_links (tenant_id, link_sha256, provider_ids, end_user_id, expires_at)"
        " VALUES (:t, :s, ARRAY[CAST(:p AS uuid)], 'u1', now() + interval '10 minutes')",
        t=tenant,
        s=hashlib.sha256(uuid.uuid4().bytes).digest(),
        p=str(github),
    )
    return TenantRows(tenant, key_id, custom, integration, connection, oauth_session, state_sha256, account)


@dataclass(frozen=True)
class World:
    a: TenantRows
    b: TenantRows
    github: uuid.UUID
    global_providers: int


@pytest.fixture
def world(db: TestDatabase) -> World:
    github = global_provider_id(db, "github")
    with owner(db) as sql:
        a, b = populate(sql, github, "A"), populate(sql, github, "B")
        globals_ = sql.run("SELECT count(*) FROM providers WHERE tenant_id IS NULL")[0][0]
    return World(a, b, github, globals_)


def count(connection: pg8000.native.Connection, table: str, where: str = "true", **params: object) -> int:
    return connection.run(f"SELECT count(*) FROM {table} WHERE {where}", **params)[0][0]


def sqlstate(error: pytest.ExceptionInfo[DatabaseError]) -> str:
    return error.value.args[0]["C"]


@pytest.mark.parametrize(("table", "tenant_column"), TENANT_TABLES.items())
def test_a_tenant_sees_none_of_another_tenants_rows(
    db: TestDatabase, world: World, table: str, tenant_column: str
) -> None:
    with as_tenant(db, world.a.id) as sql:
        others = count(sql, table, f"{tenant_column} = :b", b=world.b.id)
        own = count(sql, table, f"{tenant_column} IS NOT NULL")

    assert others == 0
    assert own == 1


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_without_a_tenant_no_tenant_owned_row_is_visible(db: TestDatabase, world: World, table: str) -> None:
    with as_tenant(db, None) as sql:
        visible = count(sql, table, f"{TENANT_TABLES[table]} IS NOT NULL")

    assert visible == 0


@pytest.mark.parametrize("who", ["a", "b", None])
def test_the_global_catalog_is_visible_to_every_tenant_and_without_one(
    db: TestDatabase, world: World, who: str | None
) -> None:
    tenant = None if who is None else getattr(world, who).id

    with as_tenant(db, tenant) as sql:
        visible = count(sql, "providers", "tenant_id IS NULL")

    assert visible == world.global_providers > 0


INSERTS_FOR_ANOTHER_TENANT = {
    "tenants": "INSERT INTO tenants (id, name) VALUES (:other, 'Mallory')",
    "tenant_api_keys": "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256)"
    " VALUES (:other, 'zzzzzzzzzzzzzzzz', decode(repeat('00', 32), 'hex'))",
    "providers": "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:other, 'x', 'X', 'basic')",
    "integrations": "INSERT INTO integrations (tenant_id, provider_id, client_id) VALUES (:other, :custom, 'c')",
    "connections": "INSERT INTO connections (tenant_id, provider_id, end_user_id, credential_type)"
    " VALUES (:other, :custom, 'u2', 'basic')",
    "oauth_sessions": "INSERT INTO oauth_sessions (tenant_id, provider_id, state_sha256, end_user_id, expires_at)"
    " VALUES (:other, :custom, decode(repeat('ab', 32), 'hex'), 'u2', now())",
    "accounts": "INSERT INTO accounts (tenant_id, connection_id, baas_id, baas_id_bidx)"
    " VALUES (:other, :connection, 'x', decode(repeat('ab', 32), 'hex'))",
    "connect_settings": "INSERT INTO connect_settings (tenant_id) VALUES (:other)",
    "connect_links": "INSERT INTO connect_links (tenant_id, link_sha256, provider_ids, end_user_id, expires_at)"
    " VALUES (:other, decode(repeat('cd', 32), 'hex'), ARRAY[gen_random_uuid()], 'u2', now())",
}


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_tenant_cannot_insert_a_row_for_another_tenant(db: TestDatabase, world: World, table: str) -> None:
    statement = INSERTS_FOR_ANOTHER_TENANT[table]
    params = {"other": world.b.id if table != "tenants" else uuid.uuid4()}
    if ":custom" in statement:
        params["custom"] = world.b.custom_provider
    if ":connection" in statement:
        params["connection"] = world.b.connection

    with as_tenant(db, world.a.id) as sql, pytest.raises(DatabaseError) as error:
        sql.run(statement, **params)

    assert sqlstate(error) == INSUFFICIENT_PRIVILEGE


@pytest.mark.parametrize("table", TENANT_TABLES)
def test_a_tenant_cannot_update_or_delete_another_tenants_rows(db: TestDatabase, world: World, table: str) -> None:
    column = TENANT_TABLES[table]
    touch = {"tenants": "name = 'x'", "connect_settings": "updated_at = updated_at - interval '1 day'"}.get(
        table, "created_at = created_at - interval '1 day'"
    )

    with as_tenant(db, world.a.id) as sql:
        sql.run(f"UPDATE {table} SET {touch} WHERE {column} = :b", b=world.b.id)
        updated = sql.row_count
        sql.run(f"DELETE FROM {table} WHERE {column} = :b", b=world.b.id)
        deleted = sql.row_count
        sql.run("COMMIT")
        sql.run("BEGIN")
    with owner(db) as check:
        still_there = count(check, table, f"{column} = :b", b=world.b.id)

    assert (updated, deleted) == (0, 0)
    assert still_there == 1


@pytest.mark.parametrize("table", [t for t in TENANT_TABLES if t != "tenants"])
def test_a_tenant_cannot_hand_its_own_row_to_another_tenant(db: TestDatabase, world: World, table: str) -> None:
    with as_tenant(db, world.a.id) as sql, pytest.raises(DatabaseError) as error:
        sql.run(f"UPDATE {table} SET tenant_id = :b WHERE tenant_id = :a", a=world.a.id, b=world.b.id)

    assert sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_a_tenant_can_neither_add_nor_change_global_catalog_entries(db: TestDatabase, world: World) -> None:
    with as_tenant(db, world.a.id) as sql:
        sql.run("UPDATE providers SET display_name = 'Mine' WHERE tenant_id IS NULL")
        updated = sql.row_count
        sql.run("DELETE FROM providers WHERE tenant_id IS NULL")
        deleted = sql.row_count
        with pytest.raises(DatabaseError) as error:
            sql.run("INSERT INTO providers (slug, display_name, auth_type) VALUES ('fake', 'Fake', 'basic')")

    assert (updated, deleted) == (0, 0)
    assert sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_the_tenant_binding_ends_with_its_transaction(db: TestDatabase, world: World) -> None:
    """A pooled connection must not carry one request's tenant into the next request."""
    with as_tenant(db, world.a.id) as sql:
        inside = count(sql, "connections")
        sql.run("COMMIT")
        after = count(sql, "connections")
        sql.run("BEGIN")

    assert (inside, after) == (1, 0)


def test_the_app_role_is_neither_owner_nor_superuser_and_does_not_bypass_rls(db: TestDatabase) -> None:
    with owner(db) as sql:
        role = sql.run("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r", r=APP_ROLE)
        owned = sql.run(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :r", r=APP_ROLE
        )[0][0]
        without_rls = sql.run(
            "SELECT relname FROM pg_class WHERE relname = ANY(:t) AND NOT relrowsecurity", t=list(TENANT_TABLES)
        )

    assert role == [[False, False, False]]
    assert owned == 0
    assert without_rls == []


def test_the_app_role_cannot_read_the_migration_history(db: TestDatabase) -> None:
    with as_tenant(db, None) as sql, pytest.raises(DatabaseError) as error:
        sql.run("SELECT * FROM schema_migrations")

    assert sqlstate(error) == INSUFFICIENT_PRIVILEGE


def test_only_the_known_functions_run_as_definer_and_each_pins_its_search_path(db: TestDatabase) -> None:
    """A new SECURITY DEFINER function crosses tenants: adding one must come with a review (and this list)."""
    with owner(db) as sql:
        definers = sql.run(
            "SELECT proname, proconfig FROM pg_proc WHERE prosecdef AND pronamespace = 'public'::regnamespace"
        )

    assert sorted(name for name, _ in definers) == [
        "connvault_check_provider_owner",
        "connvault_claim_device_polls",
        "connvault_claim_due_refreshes",
        "connvault_claim_webhook_deliveries",
        "connvault_connect_link_tenant",
        "connvault_due_backlog",
        "connvault_expire_webhook_deliveries",
        "connvault_find_api_key",
        "connvault_next_device_poll",
        "connvault_oauth_session_tenant",
        "connvault_purge_deleted_accounts",
        "connvault_purge_expired_sessions",
        "connvault_purge_webhook_history",
        "connvault_tenant_key_salt",
        "connvault_unconfirmed_grants",
    ]
    # pg_temp named last (0096): left out, it is searched first, and a caller's temporary table stands in for a table.
    assert all("search_path=pg_catalog, public, pg_temp" in (config or []) for _, config in definers)


def test_a_temporary_table_of_the_caller_does_not_stand_in_for_the_table_a_definer_reads(
    db: TestDatabase, world: World
) -> None:
    """The authorizer's key lookup runs as the owner across tenants: a ``tenant_api_keys`` of the app role's own
    making, in its session, must not be what it reads (migration 0096)."""
    with as_tenant(db, None) as sql:
        sql.run(
            "CREATE TEMPORARY TABLE tenant_api_keys "
            "(tenant_id uuid, secret_sha256 bytea, revoked_at timestamptz, key_id text)"
        )
        sql.run("INSERT INTO tenant_api_keys VALUES (:t, :h, NULL, 'forgedkeyid00000')", t=world.b.id, h=bytes(32))
        forged = sql.run("SELECT * FROM connvault_find_api_key('forgedkeyid00000')")
        real = sql.run("SELECT tenant_id FROM connvault_find_api_key(:k)", k=world.b.key_id)

    assert forged == []
    assert real == [[world.b.id]]


def test_the_api_key_lookup_finds_one_key_of_any_tenant_before_a_tenant_is_known(
    db: TestDatabase, world: World
) -> None:
    with as_tenant(db, None) as sql:
        found = sql.run("SELECT * FROM connvault_find_api_key(:k)", k=world.b.key_id)
        columns = [column["name"] for column in sql.columns]
        unknown = sql.run("SELECT * FROM connvault_find_api_key('nosuchkeyid00000')")

    assert columns == ["tenant_id", "secret_sha256", "revoked_at"]
    assert found == [[world.b.id, hashlib.sha256(b"B").digest(), None]]
    assert unknown == []


def test_the_state_lookup_names_the_session_and_its_tenant_and_nothing_more(db: TestDatabase, world: World) -> None:
    with as_tenant(db, None) as sql:
        found = sql.run("SELECT * FROM connvault_oauth_session_tenant(:s)", s=world.b.state_sha256)
        columns = [column["name"] for column in sql.columns]
        unknown = sql.run("SELECT * FROM connvault_oauth_session_tenant(:s)", s=bytes(32))

    assert columns == ["id", "tenant_id"]
    assert found == [[world.b.oauth_session, world.b.id]]
    assert unknown == []


def test_the_key_salt_lookup_answers_for_one_tenant_and_null_for_an_unknown_one(db: TestDatabase, world: World) -> None:
    with owner(db) as check:
        salt = check.run("SELECT key_salt FROM tenants WHERE id = :t", t=world.b.id)[0][0]

    with as_tenant(db, world.a.id) as sql:
        found = sql.run("SELECT connvault_tenant_key_salt(:t)", t=world.b.id)[0][0]
        unknown = sql.run("SELECT connvault_tenant_key_salt(:t)", t=uuid.uuid4())[0][0]

    assert found == salt
    assert unknown is None


def test_the_refresh_claim_leases_due_rows_of_every_tenant_and_returns_ids_only(db: TestDatabase, world: World) -> None:
    now = datetime.now(UTC)
    owner_id = uuid.uuid4()

    with as_tenant(db, None) as sql:
        backlog = sql.run("SELECT connvault_due_backlog(:n, 300)", n=now)[0][0]
        claimed = sql.run(
            "SELECT * FROM connvault_claim_due_refreshes(:n, 300, 10, :o, :u, :n, 10, NULL, '{}')",
            n=now,
            o=owner_id,
            u=now + timedelta(seconds=30),
        )
        columns = [column["name"] for column in sql.columns]
        backlog_after = sql.run("SELECT connvault_due_backlog(:n, 300)", n=now)[0][0]

    assert backlog == 2
    assert columns == ["id", "tenant_id", "provider_id", "stale"]
    assert sorted((row[0], row[1]) for row in claimed) == sorted(
        [(world.a.connection, world.a.id), (world.b.connection, world.b.id)]
    )
    assert backlog_after == 0


def test_the_token_read_and_touch_functions_reach_only_the_named_tenants_connection(
    db: TestDatabase, world: World
) -> None:
    read = "SELECT metadata->>0 FROM connvault_token_read(:t, :c)"
    counting = "SELECT metadata->>0, window_requests FROM connvault_token_read_counting(:t, :c, :n, 10)"
    with as_tenant(db, None) as sql:
        own = sql.run(read, t=world.a.id, c=world.a.connection)
        other = sql.run(read, t=world.a.id, c=world.b.connection)
        # Counting (migration 0086): into the named tenant's count (3, then 7), and still nothing of the other
        # tenant's connection.
        counted_own = sql.run(counting, t=world.a.id, c=world.a.connection, n=3)
        counted_other = sql.run(counting, t=world.a.id, c=world.b.connection, n=4)
        sql.run("SELECT connvault_touch_connection(:t, :c, interval '0 seconds')", t=world.a.id, c=world.b.connection)

    with owner(db) as sql:
        untouched = sql.run("SELECT last_used_at FROM connections WHERE id = :c", c=world.b.connection)

    assert own == [["active"]]
    assert other == []
    assert counted_own == [["active", 3]]
    assert counted_other == [[None, 7]]
    assert untouched == [[None]]


def test_the_proxy_read_reaches_only_the_named_tenants_connection(db: TestDatabase, world: World) -> None:
    with as_tenant(db, None) as sql:
        query = "SELECT metadata->>0, provider_slug FROM connvault_read_proxy_target(:t, :c)"
        own = sql.run(query, t=world.a.id, c=world.a.connection)
        other = sql.run(query, t=world.a.id, c=world.b.connection)

    assert [row[0] for row in own] == ["active"]
    assert other == []


def test_a_tenant_cannot_attach_a_connection_to_another_tenants_custom_provider(db: TestDatabase, world: World) -> None:
    with as_tenant(db, world.a.id) as sql, pytest.raises(DatabaseError):
        sql.run(
            "INSERT INTO connections (tenant_id, provider_id, end_user_id, credential_type)"
            " VALUES (:a, :p, 'u2', 'api_key')",
            a=world.a.id,
            p=world.b.custom_provider,
        )


FOREIGN_KEY_VIOLATION = "23503"


def test_a_tenant_cannot_put_an_account_under_another_tenants_connection(db: TestDatabase, world: World) -> None:
    """The foreign key names the connection and the tenant together: RLS picks the tenant, so only its own
    connections can be named (a plain foreign key is checked without RLS and would accept B's)."""
    with as_tenant(db, world.a.id) as sql, pytest.raises(DatabaseError) as error:
        sql.run(
            "INSERT INTO accounts (tenant_id, connection_id, baas_id, baas_id_bidx)"
            " VALUES (:a, :c, 'x', decode(repeat('ab', 32), 'hex'))",
            a=world.a.id,
            c=world.b.connection,
        )

    assert sqlstate(error) == FOREIGN_KEY_VIOLATION


def test_the_account_purge_deletes_only_soft_deleted_rows_past_the_cutoff_and_answers_a_count(
    db: TestDatabase, world: World
) -> None:
    with owner(db) as sql:
        sql.run("UPDATE accounts SET deleted_at = now() - interval '40 days' WHERE id = :a", a=world.a.account)
        sql.run("UPDATE accounts SET deleted_at = now() - interval '1 day' WHERE id = :b", b=world.b.account)

    with as_tenant(db, None) as sql:
        purged = sql.run("SELECT connvault_purge_deleted_accounts(now() - interval '30 days', 100)")[0][0]
        sql.run("COMMIT")
        sql.run("BEGIN")

    with owner(db) as sql:
        left = sorted(row[0] for row in sql.run("SELECT id FROM accounts"))

    assert purged == 1
    assert left == [world.b.account]


def test_a_use_is_recorded_without_a_wal_flush_or_a_search_path_of_its_own(db: TestDatabase, world: World) -> None:
    """Migration 0087: recording a use sits on the token path (a connection's first fetch each minute), so it
    commits asynchronously and, as the read, names its schema instead of setting a search path."""
    with owner(db) as sql:
        [[definer, config]] = sql.run(
            "SELECT prosecdef, proconfig FROM pg_proc WHERE proname = 'connvault_touch_connection'"
        )
    with as_tenant(db, None) as sql:
        sql.run("SET search_path = ''")
        sql.run(
            "SELECT public.connvault_touch_connection(:t, :c, interval '0 seconds')", t=world.a.id, c=world.a.connection
        )
        [[commit]] = sql.run("SELECT pg_catalog.current_setting('synchronous_commit')")
        used = "SELECT last_used_at IS NOT NULL FROM public.connections WHERE id = :c"
        [[recorded]] = sql.run(used, c=world.a.connection)

    assert (definer, config) == (False, None)
    assert commit == "off"
    assert recorded


def test_the_token_read_is_an_invoker_function_whose_callers_search_path_cannot_redirect_it(
    db: TestDatabase, world: World
) -> None:
    """Migration 0012's read has no ``SET search_path`` (the cost of a configuration change per call): safe only as
    ``SECURITY INVOKER`` with every name schema-qualified, which an empty search path proves."""
    with owner(db) as sql:
        shapes = sql.run(
            "SELECT prosecdef, proconfig FROM pg_proc "
            "WHERE proname IN ('connvault_token_read', 'connvault_token_read_counting', "
            "'connvault_token_read_binding_session')"
        )
    with as_tenant(db, None) as sql:
        sql.run("SET search_path = ''")
        query = "SELECT metadata->>0 FROM public.connvault_token_read(:t, :c)"
        own = sql.run(query, t=world.a.id, c=world.a.connection)
        other = sql.run(query, t=world.a.id, c=world.b.connection)
        counting = "SELECT metadata->>0, window_requests FROM public.connvault_token_read_counting(:t, :c, 2, 10)"
        counted = sql.run(counting, t=world.a.id, c=world.a.connection)
        binding = "SELECT metadata->>0 FROM public.connvault_token_read_binding_session(:t, :c)"
        bound = sql.run(binding, t=world.a.id, c=world.a.connection)
        bound_other = sql.run(binding, t=world.a.id, c=world.b.connection)

    assert shapes == [[False, None], [False, None], [False, None]]
    assert own == [["active"]]
    assert other == []
    assert counted == [["active", 2]]
    assert bound == [["active"]]
    assert bound_other == []


def test_the_token_reads_view_binds_its_reader_by_rls_and_shows_nothing_without_a_tenant(
    db: TestDatabase, world: World
) -> None:
    """Migration 0090's view is ``security_invoker``: without it a view reads its tables as its owner, whom RLS does
    not bind, and every tenant's connections would show through it."""
    with owner(db) as sql:
        [[options]] = sql.run("SELECT reloptions FROM pg_class WHERE relname = 'connvault_token_reads'")
    with as_tenant(db, None) as sql:
        unbound = count(sql, "connvault_token_reads")
    with as_tenant(db, world.a.id) as sql:
        seen = sql.run("SELECT id, tenant_id FROM connvault_token_reads")

    assert options == ["security_invoker=true"]
    assert unbound == 0
    assert seen == [[world.a.connection, world.a.id]]


def test_a_session_bound_to_one_tenant_reads_no_row_of_another_through_the_plain_token_read(
    db: TestDatabase, world: World
) -> None:
    """Migration 0090: ``connvault_token_read_binding_session`` binds the session, not the transaction, and the plain
    read that follows filters on the tenant as well as RLS does: a process that believes its session bound to A
    while it is bound to B (or to none) finds no row, never B's, and reads through the binding function instead."""
    plain = (
        "SELECT metadata->>0 FROM public.connvault_token_reads "
        "WHERE id = CAST(:c AS uuid) AND tenant_id = CAST(:t AS uuid)"
    )
    with as_tenant(db, None) as sql:
        before = sql.run(plain, t=world.a.id, c=world.a.connection)
        sql.run("SELECT * FROM connvault_token_read_binding_session(:t, :c)", t=world.b.id, c=world.b.connection)
        [[bound_to]] = sql.run("SELECT current_setting('app.tenant_id')")
        own_as_a = sql.run(plain, t=world.a.id, c=world.a.connection)
        theirs_as_a = sql.run(plain, t=world.a.id, c=world.b.connection)
        theirs_as_b = sql.run(plain, t=world.b.id, c=world.b.connection)

    assert before == []
    assert bound_to == str(world.b.id)
    assert own_as_a == []
    assert theirs_as_a == []
    assert theirs_as_b == [["active"]]
