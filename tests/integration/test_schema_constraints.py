"""The schema's own guarantees (CHECKs, UNIQUEs, cascades), tested with raw SQL as the owner so that no
application code stands between the test and the constraint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from pg8000.exceptions import DatabaseError

from tests.support.factories import global_provider_id, owner

if TYPE_CHECKING:
    import pg8000.native

    from tests.support.database import TestDatabase

UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"


@pytest.fixture
def sql(db: TestDatabase) -> Iterator[pg8000.native.Connection]:
    with owner(db) as connection:
        yield connection


@pytest.fixture
def tenant(sql: pg8000.native.Connection) -> uuid.UUID:
    return sql.run("INSERT INTO tenants (name) VALUES ('Acme') RETURNING id")[0][0]


@pytest.fixture
def github(db: TestDatabase) -> uuid.UUID:
    return global_provider_id(db, "github")


def sqlstate(error: pytest.ExceptionInfo[DatabaseError]) -> tuple[str, str]:
    """(SQLSTATE, constraint name) of a failed statement."""
    details = error.value.args[0]
    return details["C"], details.get("n", "")


def insert_connection(sql: pg8000.native.Connection, **columns: Any) -> uuid.UUID:
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    return sql.run(f"INSERT INTO connections ({names}) VALUES ({values}) RETURNING id", **columns)[0][0]


def test_a_second_connection_with_the_same_tenant_provider_end_user_and_alias_is_refused(
    sql: pg8000.native.Connection, tenant: uuid.UUID, github: uuid.UUID
) -> None:
    row = {
        "tenant_id": tenant,
        "provider_id": github,
        "end_user_id": "u1",
        "alias": "work",
        "credential_type": "oauth2",
    }
    insert_connection(sql, **row)

    with pytest.raises(DatabaseError) as error:
        insert_connection(sql, **row)

    assert sqlstate(error) == (UNIQUE_VIOLATION, "connections_unique_account")


def test_the_same_end_user_may_hold_a_second_connection_under_another_alias(
    sql: pg8000.native.Connection, tenant: uuid.UUID, github: uuid.UUID
) -> None:
    row = {"tenant_id": tenant, "provider_id": github, "end_user_id": "u1", "credential_type": "oauth2"}
    insert_connection(sql, **row, alias="work")
    insert_connection(sql, **row, alias="home")

    assert sql.run("SELECT count(*) FROM connections WHERE end_user_id = 'u1'")[0][0] == 2


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("status", "paused", "connections_status_check"),
        ("credential_type", "saml", "connections_credential_type_check"),
        ("end_user_id", "", "connections_end_user_id_check"),
        ("alias", "x" * 101, "connections_alias_check"),
        ("refresh_failures", -1, "connections_refresh_failures_check"),
    ],
)
def test_a_connection_value_outside_its_check_is_refused(
    sql: pg8000.native.Connection, tenant: uuid.UUID, github: uuid.UUID, column: str, value: Any, constraint: str
) -> None:
    row: dict[str, Any] = {
        "tenant_id": tenant,
        "provider_id": github,
        "end_user_id": "u1",
        "credential_type": "oauth2",
    }
    row[column] = value

    with pytest.raises(DatabaseError) as error:
        insert_connection(sql, **row)

    assert sqlstate(error) == (CHECK_VIOLATION, constraint)


def test_an_active_connection_without_credentials_is_refused(
    sql: pg8000.native.Connection, tenant: uuid.UUID, github: uuid.UUID
) -> None:
    row = {"tenant_id": tenant, "provider_id": github, "end_user_id": "u1", "credential_type": "oauth2"}

    with pytest.raises(DatabaseError) as error:
        insert_connection(sql, **row, status="active")
    connection_id = insert_connection(sql, **row, status="active", credentials=b"sealed")
    with pytest.raises(DatabaseError) as cleared:
        sql.run("UPDATE connections SET credentials = NULL WHERE id = :id", id=connection_id)

    assert sqlstate(error) == (CHECK_VIOLATION, "connections_active_has_credentials")
    assert sqlstate(cleared) == (CHECK_VIOLATION, "connections_active_has_credentials")


def test_a_provider_with_an_unknown_auth_type_is_refused(sql: pg8000.native.Connection) -> None:
    with pytest.raises(DatabaseError) as error:
        sql.run("INSERT INTO providers (slug, display_name, auth_type) VALUES ('x-saml', 'X', 'saml')")

    assert sqlstate(error) == (CHECK_VIOLATION, "providers_auth_type_check")


def test_an_oauth2_provider_without_its_endpoints_is_refused(sql: pg8000.native.Connection) -> None:
    with pytest.raises(DatabaseError) as error:
        sql.run("INSERT INTO providers (slug, display_name, auth_type) VALUES ('x-oauth', 'X', 'oauth2')")

    assert sqlstate(error) == (CHECK_VIOLATION, "providers_oauth2_endpoints")


@pytest.mark.parametrize(
    "key_id",
    ["short", "ABCDEFGHIJKLMNOP", "abcdefghijklmno_", "abcdefghijklmnopq", "abcdefghijklmno"],
)
def test_an_api_key_id_not_shaped_like_sixteen_lowercase_alphanumerics_is_refused(
    sql: pg8000.native.Connection, tenant: uuid.UUID, key_id: str
) -> None:
    with pytest.raises(DatabaseError) as error:
        sql.run(
            "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256) VALUES (:t, :k, :h)",
            t=tenant,
            k=key_id,
            h=bytes(32),
        )

    assert sqlstate(error) == (CHECK_VIOLATION, "tenant_api_keys_key_id_check")


def test_an_api_key_whose_digest_is_not_thirty_two_bytes_is_refused(
    sql: pg8000.native.Connection, tenant: uuid.UUID
) -> None:
    with pytest.raises(DatabaseError) as error:
        sql.run(
            "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256) VALUES (:t, 'abcdefghijklmnop', :h)",
            t=tenant,
            h=bytes(31),
        )

    assert sqlstate(error) == (CHECK_VIOLATION, "tenant_api_keys_secret_sha256_check")


def test_deleting_a_tenant_removes_everything_it_owns_and_nothing_else(
    sql: pg8000.native.Connection, tenant: uuid.UUID, github: uuid.UUID
) -> None:
    other = sql.run("INSERT INTO tenants (name) VALUES ('Other') RETURNING id")[0][0]
    for owner_id, key_id in ((tenant, "aaaaaaaaaaaaaaaa"), (other, "bbbbbbbbbbbbbbbb")):
        sql.run(
            "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256) VALUES (:t, :k, :h)",
            t=owner_id,
            k=key_id,
            h=bytes(32),
        )
        custom = sql.run(
            "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:t, 'own', 'Own', 'api_key')"
            " RETURNING id",
            t=owner_id,
        )[0][0]
        sql.run(
            "INSERT INTO integrations (tenant_id, provider_id, client_id) VALUES (:t, :p, 'client')",
            t=owner_id,
            p=github,
        )
        insert_connection(sql, tenant_id=owner_id, provider_id=github, end_user_id="u1", credential_type="oauth2")
        insert_connection(sql, tenant_id=owner_id, provider_id=custom, end_user_id="u1", credential_type="api_key")
        sql.run(
            "INSERT INTO oauth_sessions (tenant_id, provider_id, state_sha256, end_user_id, expires_at)"
            " VALUES (:t, :p, :s, 'u1', now() + interval '10 minutes')",
            t=owner_id,
            p=github,
            s=uuid.uuid4().bytes * 2,
        )
    tables = ("tenant_api_keys", "integrations", "connections", "oauth_sessions", "providers")

    sql.run("DELETE FROM tenants WHERE id = :t", t=tenant)

    for table in tables:
        assert sql.run(f"SELECT count(*) FROM {table} WHERE tenant_id = :t", t=tenant)[0][0] == 0, table
    for table in tables:
        assert sql.run(f"SELECT count(*) FROM {table} WHERE tenant_id = :t", t=other)[0][0] > 0, table
    assert sql.run("SELECT count(*) FROM providers WHERE slug = 'github' AND tenant_id IS NULL")[0][0] == 1


def test_two_tenants_may_each_have_a_custom_provider_with_the_same_slug_but_not_one_tenant_twice(
    sql: pg8000.native.Connection, tenant: uuid.UUID
) -> None:
    other = sql.run("INSERT INTO tenants (name) VALUES ('Other') RETURNING id")[0][0]
    insert = "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:t, 'own', 'Own', 'api_key')"
    sql.run(insert, t=tenant)
    sql.run(insert, t=other)

    with pytest.raises(DatabaseError) as error:
        sql.run(insert, t=tenant)

    assert sqlstate(error) == (UNIQUE_VIOLATION, "providers_tenant_slug_key")
