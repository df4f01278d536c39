"""Importing OAuth grants made elsewhere: one at a time (``POST /connections``, kind ``imported``) and in bulk
(``POST /connections/import``), through the real handlers against the demo provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connvault.db.uow import UnitOfWork
from connvault.redacted import Redacted
from connvault.services import imports
from connvault.services.grants import ImportedGrantInput, Target
from demo_provider import DemoProvider, Fault
from tests.api.conftest import DEMO_RETURN_URL, Answer, Api, db_state, stored_connection
from tests.api.test_rate_limits import FrozenClock, admitted, limiter
from tests.scheduler.support import mint_grants
from tests.support.factories import owner


def grant_from(provider: DemoProvider, api: Api) -> dict[str, str]:
    """A live grant the demo provider issued (through its own authorization-code flow), as another vault holds it."""
    with UnitOfWork(api.tenant.tenant_id) as uow:
        catalog = uow.providers.get_by_slug("demo")
    (tokens,) = mint_grants(provider, catalog, 1, register=api.secrets.add, threads=1)
    return {"refresh_token": tokens.refresh_token.reveal(), "access_token": tokens.access_token.reveal()}


def create(api: Api, **fields: Any) -> Answer:
    body = {"kind": "imported", "provider": "demo", "end_user_id": "user-1", **fields}
    return api.call("POST", "/connections", body=body)


def bulk(api: Api, items: list[dict[str, Any]], **fields: Any) -> Answer:
    return api.call("POST", "/connections/import", body={"items": items, **fields})


def refresh_calls(provider: DemoProvider) -> int:
    return provider.stats().token_calls.get("refresh_token", 0)


# -- one grant ---------------------------------------------------------------------------------------------------


def test_an_imported_grant_is_verified_by_a_refresh_and_its_rotated_token_kept(api: Api, provider, db) -> None:
    grant = grant_from(provider, api)

    created = create(api, **grant, scopes=["read"], metadata={"migrated_from": "old-vault"})

    assert created.status == 201, created.body
    body = created.json()
    assert (body["kind"], body["credential_type"], body["status"]) == ("imported", "oauth2", "active")
    assert body["metadata"] == {"migrated_from": "old-vault"}
    stored = stored_connection(db, body["id"]).credentials
    stats = provider.stats()
    assert refresh_calls(provider) == 1
    assert stored.refresh_token.reveal() in stats.live_refresh_tokens  # the rotated one, not the one sent
    assert stored.refresh_token.reveal() != grant["refresh_token"]
    served = api.call("GET", f"/connections/{body['id']}/token").json()["access_token"]
    assert served == stored.access_token.reveal()
    assert provider.access_token_is_active(served)
    assert stats.refresh_token_reuse == 0


def test_a_dead_grant_is_422_on_refresh_token_and_stores_nothing(api: Api, provider, db) -> None:
    grant = grant_from(provider, api)
    provider.inject(Fault.error(400, "invalid_grant"))
    before = db_state(db)

    refused = create(api, **grant)

    assert refused.status == 422
    assert refused.json()["error"]["code"] == "credentials_refused"
    assert refused.json()["error"]["field"] == "refresh_token"
    assert db_state(db) == before


def test_the_integrations_client_refused_is_422_on_provider_not_on_the_grant(api: Api, provider, db) -> None:
    grant = grant_from(provider, api)
    api.secrets.add("demo-secret-rotated-at-the-provider")
    provider.configure(client_secret="demo-secret-rotated-at-the-provider")
    before = db_state(db)

    refused = create(api, **grant)

    assert refused.status == 422
    assert (refused.json()["error"]["code"], refused.json()["error"]["field"]) == ("credentials_refused", "provider")
    assert db_state(db) == before


def test_verify_false_stores_the_grant_as_given(api: Api, provider, db) -> None:
    grant = grant_from(provider, api)
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)

    created = create(api, **grant, verify=False, expires_at=expires.isoformat(), token_type="bearer", scopes=["read"])

    assert created.status == 201, created.body
    assert refresh_calls(provider) == 0
    body = created.json()
    assert datetime.fromisoformat(body["expires_at"]) == expires
    served = api.call("GET", f"/connections/{body['id']}/token").json()
    assert served["access_token"] == grant["access_token"]
    assert refresh_calls(provider) == 0


def test_a_grant_stored_without_its_expiry_is_refreshed_by_the_first_fetch(api: Api, provider) -> None:
    grant = grant_from(provider, api)
    connection_id = create(api, refresh_token=grant["refresh_token"], verify=False).json()["id"]

    served = api.call("GET", f"/connections/{connection_id}/token")

    assert served.status == 200, served.body
    assert refresh_calls(provider) == 1
    assert provider.access_token_is_active(served.json()["access_token"])


def test_importing_needs_the_integration(api: Api, provider) -> None:
    api.call("DELETE", "/integrations/demo")

    refused = create(api, refresh_token="rt-whatever-123456", verify=False)

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "provider"


def test_an_account_imported_twice_is_409_and_costs_no_refresh(api: Api, provider) -> None:
    grant = grant_from(provider, api)
    assert create(api, **grant).status == 201

    again = create(api, **grant)

    assert again.status == 409
    assert refresh_calls(provider) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "body.refresh_token"),
        ({"refresh_token": ""}, "body.refresh_token"),
        ({"refresh_token": "rt\x00nul-in-token"}, "refresh_token"),
        # Tokens go out in headers as they are (RFC 6749: printable ASCII); past Latin-1 the proxy could not send
        # them (a 500 per call, an outside probe found), and a line break would split the header.
        ({"refresh_token": "rt-1234567890", "access_token": "AT_\u2028_tok", "verify": False}, "access_token"),
        ({"refresh_token": "rt-1234567890", "access_token": "AT_\U0001f600_tok", "verify": False}, "access_token"),
        ({"refresh_token": "rt\u2028-1234567890", "verify": False}, "refresh_token"),
        ({"refresh_token": "rt-1234567890", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        # Past year 9999 once in UTC (the driver's conversion overflowed: a 500), or late enough in 9999 that the
        # stored epoch read back as year 10000 (every fetch of the connection a 500).
        ({"refresh_token": "rt-1234567890", "expires_at": "9999-12-31T23:59:59-23:59"}, "body.expires_at"),
        ({"refresh_token": "rt-1234567890", "expires_at": "9999-12-31T23:59:59.999999Z"}, "body.expires_at"),
        ({"refresh_token": "rt-1234567890", "expires_at": "0001-01-01T00:00:00+05:00"}, "body.expires_at"),
        ({"refresh_token": "rt-1234567890", "scopes": ["a b"]}, "scopes"),
        ({"refresh_token": "rt-1234567890", "verify": "sometimes"}, "body.verify"),
        ({"refresh_token": "rt-1234567890", "provider": "openai"}, "provider"),
    ],
)
def test_a_malformed_import_is_400_naming_the_field(api: Api, provider, db, fields, field) -> None:
    api.secrets.add("rt-1234567890", "rt\x00nul-in-token", "AT_\u2028_tok", "AT_\U0001f600_tok", "rt\u2028-1234567890")

    refused = create(api, **fields)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == field
    assert provider.stats().token_calls == {}


# -- in bulk -----------------------------------------------------------------------------------------------------


def test_a_bulk_import_answers_each_item_on_its_own(api: Api, provider) -> None:
    good, other, dead = (grant_from(provider, api) for _ in range(3))
    existing = create(api, **grant_from(provider, api), end_user_id="already").json()["id"]
    items = [
        {"provider": "demo", "end_user_id": "a", **good},
        {"provider": "demo", "end_user_id": "b"},  # no refresh token
        {"provider": "demo", "end_user_id": "already", **other},
        {"provider": "demo", "end_user_id": "c", "refresh_token": "rt-not-issued-by-demo"},
        {"provider": "demo", "end_user_id": "a", **dead},  # the same account again
        {"provider": "no-such-provider", "end_user_id": "d", **dead},
        {"provider": "demo", "end_user_id": "e", **dead, "metadata": {"team": "x"}},
    ]
    api.secrets.add("rt-not-issued-by-demo")

    answer = bulk(api, items)

    assert answer.status == 200, answer.body
    results = answer.json()["items"]
    assert [result["status"] for result in results] == [
        "created",
        "invalid",
        "exists",
        "refused",
        "invalid",
        "invalid",
        "created",
    ]
    assert results[1]["error"]["field"] == "refresh_token"
    assert results[2]["connection_id"] == existing
    assert results[3]["error"] == {
        "code": "credentials_refused",
        "message": "the provider refused the refresh_token (invalid_grant); nothing was stored",
        "field": "refresh_token",
    }
    assert results[4]["error"]["field"] == "alias"
    assert results[5]["error"]["field"] == "provider"
    assert answer.json()["counts"] == {"created": 2, "invalid": 3, "exists": 1, "refused": 1}
    listed = api.call("GET", "/connections").json()["items"]
    assert {c["end_user_id"] for c in listed} == {"a", "already", "e"}
    assert {c["kind"] for c in listed} == {"imported"}


def test_an_item_with_an_expiry_no_layer_can_hold_is_invalid_and_the_rest_goes_ahead(api: Api, provider) -> None:
    items = [
        {"provider": "demo", "end_user_id": "kept", "refresh_token": "rt-kept-1234567890"},
        {
            "provider": "demo",
            "end_user_id": "edge",
            "refresh_token": "rt-edge-1234567890",
            "expires_at": "0001-01-01T00:00:00+05:00",
        },
    ]
    api.secrets.add("rt-kept-1234567890", "rt-edge-1234567890")

    answer = bulk(api, items, verify=False)

    assert answer.status == 200, answer.body
    assert [result["status"] for result in answer.json()["items"]] == ["created", "invalid"]
    assert answer.json()["items"][1]["error"]["field"] == "expires_at"
    assert [c["end_user_id"] for c in api.call("GET", "/connections").json()["items"]] == ["kept"]


def test_items_that_are_not_json_objects_are_invalid_on_their_own_and_the_rest_goes_ahead(api: Api, provider) -> None:
    # An outside probe: items of other JSON types made the whole call a 400 naming every one of them.
    api.secrets.add("rt-kept-1234567890", "rt-in-a-bare-string-0001", "rt-in-a-list-0001")
    items: list[Any] = [
        {"provider": "demo", "end_user_id": "kept", "refresh_token": "rt-kept-1234567890"},
        "rt-in-a-bare-string-0001",
        5,
        None,
        [],
        ["rt-in-a-list-0001"],
        True,
    ]

    answer = bulk(api, items, verify=False)

    assert answer.status == 200, answer.body
    results = answer.json()["items"]
    assert [result["status"] for result in results] == ["created"] + ["invalid"] * 6
    assert {(r["error"]["code"], r["error"]["field"], r["error"]["message"]) for r in results[1:]} == {
        ("validation_error", None, "the item is not valid (model_type)")
    }
    assert answer.json()["counts"] == {"created": 1, "invalid": 6}
    api.secrets.check(answer.body, "a bulk import's answer")
    assert [c["end_user_id"] for c in api.call("GET", "/connections").json()["items"]] == ["kept"]


@pytest.mark.parametrize("body", [{"items": []}, {"items": "x"}, {"items": {"0": {}}}, {"items": None}, {}])
def test_a_bulk_body_without_a_list_of_items_is_still_400_on_items(api: Api, body: dict[str, Any]) -> None:
    refused = api.call("POST", "/connections/import", body=body)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == "body.items"


def test_sending_a_batch_again_changes_nothing_and_calls_no_provider(api: Api, provider, db) -> None:
    items = [{"provider": "demo", "end_user_id": f"u{n}", **grant_from(provider, api)} for n in range(5)]
    first = bulk(api, items)
    assert [r["status"] for r in first.json()["items"]] == ["created"] * 5
    calls = refresh_calls(provider)
    before = db_state(db)

    second = bulk(api, items)

    assert [r["status"] for r in second.json()["items"]] == ["exists"] * 5
    assert [r["connection_id"] for r in second.json()["items"]] == [r["connection_id"] for r in first.json()["items"]]
    assert refresh_calls(provider) == calls
    assert db_state(db) == before


def test_a_provider_failing_answers_unavailable_and_the_rest_goes_ahead(api: Api, provider) -> None:
    items = [{"provider": "demo", "end_user_id": f"u{n}", **grant_from(provider, api)} for n in range(3)]
    provider.inject(Fault.rate_limited("30"))

    results = bulk(api, items, verify=True).json()["items"]

    statuses = sorted(result["status"] for result in results)
    assert statuses == ["created", "created", "unavailable"]
    (unavailable,) = (result for result in results if result["status"] == "unavailable")
    assert unavailable["retry_after"] == 30
    assert unavailable["error"]["code"] == "provider_unavailable"


def test_verify_false_in_bulk_stores_every_grant_without_a_provider_call(api: Api, provider) -> None:
    items = [{"provider": "demo", "end_user_id": f"u{n}", "refresh_token": f"rt-imported-{n:04d}"} for n in range(40)]
    api.secrets.add(*(item["refresh_token"] for item in items))

    answer = bulk(api, items, verify=False)

    assert answer.json()["counts"] == {"created": 40}
    assert provider.stats().token_calls == {}


def test_a_bulk_call_takes_at_most_a_thousand_items(api: Api) -> None:
    items: list[Any] = [
        {"provider": "demo", "end_user_id": f"u{n}", "refresh_token": "rt-1234567890"} for n in range(1000)
    ]
    items.append("an item that is no object counts too")
    api.secrets.add("rt-1234567890")

    refused = bulk(api, items, verify=False)

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "body.items"


def test_items_not_attempted_before_the_deadline_are_deferred(api: Api, provider) -> None:
    grants = [grant_from(provider, api) for _ in range(6)]
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    items = [
        ImportedGrantInput(Target("demo", f"u{n}"), Redacted(grant["refresh_token"])) for n, grant in enumerate(grants)
    ]
    results = imports.import_grants(UnitOfWork(api.tenant.tenant_id), items, stop=stop, concurrency=1)

    assert [result.status for result in results] == ["created"] * 2 + ["deferred"] * 4
    assert refresh_calls(provider) == 2


def test_a_verified_import_costs_one_admission_per_provider_call_and_nothing_more(api: Api, provider) -> None:
    # Given a tenant whose rate has room for 10 requests, and 4 grants that need a refresh each
    process = limiter(FrozenClock(), per_second=1, burst=10, share_every=100)
    tokens = [f"rt-never-issued-{n:04d}" for n in range(4)]
    api.secrets.add(*tokens)
    items = [ImportedGrantInput(Target("demo", f"u{n}"), Redacted(token)) for n, token in enumerate(tokens)]
    unverified = [ImportedGrantInput(Target("demo", f"v{n}"), Redacted(token)) for n, token in enumerate(tokens)]
    tenant = api.tenant.tenant_id

    # When they are imported with verify on, then 4 others with verify off
    verified = imports.import_grants(UnitOfWork(tenant), items, limiter=process)
    stored = imports.import_grants(UnitOfWork(tenant), unverified, verify=False, limiter=process)

    # Then the 4 provider calls took 4 admissions, and the unverified import none
    assert [result.status for result in verified] == ["refused"] * 4
    assert [result.status for result in stored] == ["created"] * 4
    assert refresh_calls(provider) == 4
    assert admitted(process, tenant, 10) == 6


def test_a_verified_import_past_the_tenants_rate_calls_the_provider_only_for_what_fits(
    api: Api, provider, reconfigure
) -> None:
    # Given a tenant allowed a burst of 6 requests (and next to no refill)
    reconfigure(rate_limit_per_second=0.01, rate_limit_burst=6)
    tokens = [f"rt-never-issued-{n:04d}" for n in range(8)]
    api.secrets.add(*tokens)
    items = [{"provider": "demo", "end_user_id": f"u{n}", "refresh_token": token} for n, token in enumerate(tokens)]

    # When one request imports 8 grants with verify on
    answer = bulk(api, items, verify=True)

    # Then the request took one admission and the provider saw one call per admission left, no more
    results = answer.json()["items"]
    assert answer.status == 200
    assert [result["status"] for result in results] == ["refused"] * 5 + ["deferred"] * 3
    assert refresh_calls(provider) == 5
    for deferred in results[5:]:
        assert deferred["error"]["code"] == "rate_limited"
        assert deferred["retry_after"] >= 1
    # And the tenant's next request is refused: the import spent its rate
    assert bulk(api, items, verify=True).status == 429
    assert refresh_calls(provider) == 5


def test_a_bulk_import_is_the_tenants_own(api: Api, provider, db) -> None:
    items = [{"provider": "demo", "end_user_id": "u1", "refresh_token": "rt-tenant-a-123"}]
    api.secrets.add("rt-tenant-a-123")
    assert bulk(api, items, verify=False).json()["counts"] == {"created": 1}

    with owner(db) as connection:
        (tenant,) = connection.run("SELECT DISTINCT tenant_id FROM connections")[0]
    assert tenant == api.tenant.tenant_id


def test_imports_past_the_tenants_quota_of_connections_store_nothing_and_call_no_provider(
    api: Api, provider, db, reconfigure
) -> None:
    reconfigure(quota_connections=2)
    items = [{"provider": "demo", "end_user_id": f"u{n}", "refresh_token": f"rt-quota-{n}"} for n in range(3)]
    api.secrets.add(*(item["refresh_token"] for item in items))

    answer = bulk(api, items, verify=False).json()

    assert [item["status"] for item in answer["items"]] == ["created", "created", "quota_exceeded"]
    assert answer["items"][2]["error"]["code"] == "quota_exceeded"
    before = db_state(db)
    refused = create(api, end_user_id="u9", refresh_token="rt-quota-9")
    assert refused.status == 409 and refused.json()["error"]["code"] == "quota_exceeded"
    assert db_state(db) == before
    assert refresh_calls(provider) == 0
    again = bulk(api, items, verify=False).json()  # what exists needs no room
    assert [item["status"] for item in again["items"]] == ["exists", "exists", "quota_exceeded"]


def test_each_imported_grant_carries_its_own_hosts_configuration_checked_on_its_own(api: Api) -> None:
    # Given the tenant's Okta app (Okta's hosts are each customer's own: https://{subdomain}.okta.com)
    api.secrets.add("o" * 32, "rt-okta-acme", "rt-okta-evil", "rt-okta-none")
    app = {"client_id": "okta-app", "client_secret": "o" * 32, "allowed_return_urls": [DEMO_RETURN_URL]}
    assert api.call("PUT", "/integrations/okta", body=app).status == 200
    items = [
        {
            "provider": "okta",
            "end_user_id": "acme",
            "refresh_token": "rt-okta-acme",
            "connection_config": {"subdomain": "acme"},
        },
        {
            "provider": "okta",
            "end_user_id": "evil",
            "refresh_token": "rt-okta-evil",
            "connection_config": {"subdomain": "acme.evil.com"},
        },
        {"provider": "okta", "end_user_id": "none", "refresh_token": "rt-okta-none"},
    ]

    # When they are imported as given (no provider call)
    answer = bulk(api, items, verify=False)

    # Then each is answered on its own, naming the key at fault, and the stored one keeps its host
    assert answer.status == 200, answer.body
    results = answer.json()["items"]
    assert [result["status"] for result in results] == ["created", "invalid", "invalid"]
    assert {results[1]["error"]["field"], results[2]["error"]["field"]} == {"connection_config.subdomain"}
    assert "acme.evil.com" not in answer.body
    shown = api.call("GET", f"/connections/{results[0]['connection_id']}").json()
    assert shown["connection_config"] == {"subdomain": "acme"}
