"""Provider accounts and provider account ids through the real handlers: CRUD under a connection, soft delete and
the purge, exact-match search by blind index, capture at connect and refresh from the catalog's fields, tenant
isolation, and ids that are sealed at rest and never logged (each test registers the ids it makes as secrets)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput
from connvault.redacted import Redacted
from connvault.services import accounts, connections, tenants
from tests.api.conftest import Answer, Api, connect_account, db_state
from tests.support.factories import owner

if TYPE_CHECKING:
    from demo_provider import DemoProvider
    from tests.support.database import TestDatabase


def ids(api: Api, *values: str) -> tuple[str, ...]:
    """Account ids are sealed like secrets: none may reach a log line."""
    api.secrets.add(*values)
    return values


def static_connection(api: Api, end_user_id: str = "user-1", **extra: Any) -> str:
    api.secrets.add("sk-test-123")
    body = {"provider": "openai", "end_user_id": end_user_id, "api_key": "sk-test-123", **extra}
    answer = api.call("POST", "/connections", body=body)
    assert answer.status == 201, answer.body
    return answer.json()["id"]


def add_account(api: Api, connection_id: str, **body: Any) -> Answer:
    return api.call("POST", f"/connections/{connection_id}/accounts", body=body)


def items(answer: Answer) -> list[dict[str, Any]]:
    assert answer.status == 200, answer.body
    return answer.json()["items"]


def other_tenant_key(api: Api) -> str:
    tenant = tenants.create_tenant("Other")
    key = tenants.create_api_key(UnitOfWork(tenant.id)).plaintext.reveal()
    api.secrets.add(key)
    return key


def test_an_account_goes_through_create_read_list_change_and_delete(api: Api, db: TestDatabase) -> None:
    connection = static_connection(api)
    external, baas, new_baas = ids(api, "ext-001", "baas-001", "baas-002")

    created = add_account(
        api, connection, external_id=external, baas_id=baas, display_name="Checking", metadata={"kind": "checking"}
    )
    account = created.json()
    path = f"/connections/{connection}/accounts/{account['id']}"
    read = api.call("GET", path)
    listed = items(api.call("GET", f"/connections/{connection}/accounts"))
    changed = api.call("PATCH", path, body={"baas_id": new_baas, "display_name": "Main"})
    deleted = api.call("DELETE", path)

    assert created.status == 201, created.body
    assert account["external_id"] == external
    assert account["baas_id"] == baas
    assert account["connection_id"] == connection
    assert (account["display_name"], account["metadata"]) == ("Checking", {"kind": "checking"})
    assert read.json() == account
    assert [item["id"] for item in listed] == [account["id"]]
    assert changed.status == 200, changed.body
    assert (changed.json()["baas_id"], changed.json()["display_name"], changed.json()["external_id"]) == (
        new_baas,
        "Main",
        external,
    )
    assert changed.json()["updated_at"] > account["updated_at"]
    assert deleted.status == 204
    # Soft-deleted: gone from every read, still in the table until the purge
    assert api.call("GET", path).status == 404
    assert items(api.call("GET", f"/connections/{connection}/accounts")) == []
    assert items(api.call("GET", "/accounts", query={"external_id": external})) == []
    assert api.call("PATCH", path, body={"display_name": "x"}).status == 404
    assert api.call("DELETE", path).status == 404
    with owner(db) as sql:
        assert sql.run("SELECT deleted_at IS NOT NULL FROM accounts") == [[True]]


def test_ids_are_sealed_at_rest_with_a_blind_index_beside_them(api: Api, db: TestDatabase) -> None:
    connection = static_connection(api)
    (external,) = ids(api, "ext-sealed-42")

    add_account(api, connection, external_id=external)

    with owner(db) as sql:
        [[sealed, index, baas, baas_index]] = sql.run(
            "SELECT external_id, external_id_bidx, baas_id, baas_id_bidx FROM accounts"
        )
    assert sealed.startswith(b"CV")
    assert external.encode() not in sealed
    assert len(index) == 32
    assert (baas, baas_index) == (None, None)


def test_search_finds_live_accounts_of_the_tenant_by_exact_id_across_its_connections(api: Api) -> None:
    first, second = static_connection(api, "user-1"), static_connection(api, "user-2")
    shared, other, baas = ids(api, "ext-shared", "ext-other", "baas-7")
    one = add_account(api, first, external_id=shared).json()["id"]
    two = add_account(api, second, external_id=shared, baas_id=baas).json()["id"]
    add_account(api, second, external_id=other)
    # Another tenant with the very same external id
    elsewhere = other_tenant_key(api)
    their_connection = api.call(
        "POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": "sk-test-123"}, key=elsewhere
    ).json()["id"]
    api.call("POST", f"/connections/{their_connection}/accounts", body={"external_id": shared}, key=elsewhere)

    by_external = items(api.call("GET", "/accounts", query={"external_id": shared}))
    by_baas = items(api.call("GET", "/accounts", query={"baas_id": baas}))
    prefix = items(api.call("GET", "/accounts", query={"external_id": "ext-shar"}))
    paged = api.call("GET", "/accounts", query={"external_id": shared, "limit": "1"})

    assert sorted(a["id"] for a in by_external) == sorted([one, two])
    assert [a["id"] for a in by_baas] == [two]
    assert prefix == []  # exact match only
    assert len(paged.json()["items"]) == 1
    assert paged.json()["next_cursor"] is not None


@pytest.mark.parametrize(
    ("query", "field"),
    [({}, "external_id"), ({"external_id": "a", "baas_id": "b"}, "external_id"), ({"external_id": ""}, None)],
)
def test_search_takes_exactly_one_id(api: Api, query: dict[str, str], field: str | None) -> None:
    answer = api.call("GET", "/accounts", query=query)

    assert answer.status == 400
    if field is not None:
        assert answer.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": "no id"}, "external_id"),
        ({"external_id": "x" * 256}, "body.external_id"),
        ({"external_id": "line\nbreak"}, "external_id"),
        ({"external_id": "ok", "display_name": "x" * 201}, "body.display_name"),
        ({"external_id": "ok", "metadata": {"k": "x" * 20_000}}, "metadata"),
        ({"external_id": "ok", "unknown": 1}, "body"),  # an unknown key is input: never named (13.8)
    ],
)
def test_a_bad_account_is_400_naming_the_field_and_writes_nothing(
    api: Api, db: TestDatabase, body: dict[str, Any], field: str
) -> None:
    connection = static_connection(api)
    before = db_state(db)

    answer = add_account(api, connection, **body)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert db_state(db) == before


def test_one_live_account_per_external_id_under_a_connection(api: Api) -> None:
    connection = static_connection(api)
    (external,) = ids(api, "ext-dup")
    first = add_account(api, connection, external_id=external).json()["id"]

    duplicate = add_account(api, connection, external_id=external)
    api.call("DELETE", f"/connections/{connection}/accounts/{first}")
    again = add_account(api, connection, external_id=external)

    assert duplicate.status == 409
    assert duplicate.json()["error"]["code"] == "conflict"
    assert again.status == 201, again.body


def test_accounts_of_an_unknown_or_another_tenants_connection_are_404(api: Api) -> None:
    elsewhere = other_tenant_key(api)
    theirs = api.call(
        "POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": "sk-test-123"}, key=elsewhere
    ).json()["id"]
    their_account = api.call(
        "POST", f"/connections/{theirs}/accounts", body={"external_id": "theirs"}, key=elsewhere
    ).json()["id"]

    for connection in (theirs, str(uuid.uuid4())):
        assert add_account(api, connection, external_id="mine").status == 404
        assert api.call("GET", f"/connections/{connection}/accounts").status == 404
    assert api.call("GET", f"/connections/{theirs}/accounts/{their_account}").status == 404
    assert api.call("DELETE", f"/connections/{theirs}/accounts/{their_account}").status == 404


def test_deleting_the_connection_deletes_its_accounts(api: Api, db: TestDatabase) -> None:
    connection = static_connection(api)
    add_account(api, connection, external_id="gone-with-it")

    assert api.call("DELETE", f"/connections/{connection}").status == 200

    with owner(db) as sql:
        assert sql.run("SELECT count(*) FROM accounts") == [[0]]


def test_the_purge_deletes_accounts_deleted_longer_ago_than_the_retention_only(api: Api, db: TestDatabase) -> None:
    connection = static_connection(api)
    old, recent, live = (add_account(api, connection, external_id=f"ext-{n}").json()["id"] for n in range(3))
    for account in (old, recent):
        api.call("DELETE", f"/connections/{connection}/accounts/{account}")
    with owner(db) as sql:
        sql.run("UPDATE accounts SET deleted_at = now() - interval '31 days' WHERE id = :a", a=old)

    purged = accounts.purge_deleted_accounts()
    again = accounts.purge_deleted_accounts(now=lambda: datetime.now(UTC) + timedelta(days=31))

    with owner(db) as sql:
        left = [str(row[0]) for row in sql.run("SELECT id FROM accounts")]
    assert (purged, again) == (1, 1)
    assert left == [live]


# -- provider account ids on connections ---------------------------------------------------------------------


def test_the_tenant_sets_a_provider_account_id_and_finds_the_connection_by_it(api: Api, db: TestDatabase) -> None:
    (given, changed) = ids(api, "acct-from-tenant", "acct-changed")
    at_creation = static_connection(api, "user-1", provider_account_id=given)
    later = static_connection(api, "user-2")

    patched = api.call("PATCH", f"/connections/{later}", body={"provider_account_id": changed})

    assert api.call("GET", f"/connections/{at_creation}").json()["provider_account_id"] == given
    assert patched.json()["provider_account_id"] == changed
    assert [c["id"] for c in items(api.call("GET", "/connections", query={"provider_account_id": given}))] == [
        at_creation
    ]
    assert [c["id"] for c in items(api.call("GET", "/connections", query={"provider_account_id": changed}))] == [later]
    assert items(api.call("GET", "/connections", query={"provider_account_id": "acct"})) == []
    with owner(db) as sql:
        stored = sql.run("SELECT provider_account_id FROM connections WHERE id = CAST(:c AS uuid)", c=at_creation)
    assert given.encode() not in stored[0][0]


def test_the_provider_account_id_is_captured_at_connect_and_at_refresh(
    api: Api, db: TestDatabase, provider: DemoProvider
) -> None:
    # Given a provider whose token responses name the user at user.id, as the catalog entry says
    with owner(db) as sql:
        sql.run("UPDATE providers SET account_id_fields = '{user.id}' WHERE slug = 'demo'")
    first, second = ids(api, "demo-user-42", "demo-user-43")
    provider.configure(extra_fields={"user": {"id": first, "name": "Ada"}, "instance_url": "https://eu.example"})

    # When the end user connects
    connection = connect_account(api)
    connected = api.call("GET", f"/connections/{connection}").json()

    # Then the id is on the connection, sealed, and not in the clear metadata (the rest of the response is)
    assert connected["provider_account_id"] == first
    assert connected["metadata"]["provider"] == {"user": {"name": "Ada"}, "instance_url": "https://eu.example"}
    assert [c["id"] for c in items(api.call("GET", "/connections", query={"provider_account_id": first}))] == [
        connection
    ]

    # When a refresh answers with another id
    provider.configure(extra_fields={"user": {"id": second}})
    refreshed = api.call("GET", f"/connections/{connection}/token", query={"force_refresh": "true"})

    # Then the connection carries the new one, found by it and no longer by the old one
    assert refreshed.status == 200, refreshed.body
    assert api.call("GET", f"/connections/{connection}").json()["provider_account_id"] == second
    assert items(api.call("GET", "/connections", query={"provider_account_id": first})) == []
    assert len(items(api.call("GET", "/connections", query={"provider_account_id": second}))) == 1


def test_a_refresh_whose_response_names_nobody_keeps_the_id(api: Api, db: TestDatabase, provider: DemoProvider) -> None:
    with owner(db) as sql:
        sql.run("UPDATE providers SET account_id_fields = '{user.id}' WHERE slug = 'demo'")
    (first,) = ids(api, "demo-user-7")
    provider.configure(extra_fields={"user": {"id": first}})
    connection = connect_account(api)

    provider.configure(extra_fields={})
    api.call("GET", f"/connections/{connection}/token", query={"force_refresh": "true"})

    assert api.call("GET", f"/connections/{connection}").json()["provider_account_id"] == first


@pytest.mark.parametrize("value", ["lone\ud800surrogate", "nul\x00", "", "x" * 256])
def test_an_id_that_cannot_be_sealed_and_indexed_is_invalid_input_everywhere(api: Api, value: str) -> None:
    connection = uuid.UUID(static_connection(api))
    uow = UnitOfWork(api.tenant.tenant_id)
    attempts = [
        lambda: accounts.create_account(uow, connection, accounts.AccountInput(external_id=Redacted(value))),
        lambda: accounts.search_accounts(uow, accounts.AccountSearch(baas_id=Redacted(value))),
        lambda: connections.update_connection(uow, connection, provider_account_id=Redacted(value)),
        lambda: connections.list_connections(uow, connections.ConnectionFilter(provider_account_id=value)),
    ]

    for attempt in attempts:
        with pytest.raises(InvalidInput):
            attempt()
