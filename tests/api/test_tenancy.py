"""Tenant isolation at the API: every route, given another tenant's ids, answers as if they did not exist and
changes nothing. The 404 must not differ from the one for an id nobody has."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from devserver.demo_setup import create_demo_tenant
from tests.api.conftest import Api, connect_account, db_state
from tests.support.factories import make_custom_provider

OTHER_KEY = "sk-other-" + "o" * 40


@dataclass(frozen=True)
class Other:
    """What the other tenant owns: an OAuth connection, an API-key one, integrations, a custom provider."""

    oauth_id: str
    static_id: str
    custom_slug: str


@pytest.fixture
def other(api: Api, provider, db, secrets) -> Other:
    tenant = create_demo_tenant(provider, name="Other tenant")
    secrets.add(tenant.api_key.reveal(), OTHER_KEY)
    theirs = Api(tenant, secrets)
    oauth_id = connect_account(theirs, end_user_id="their-user")
    static = theirs.call("POST", "/connections", body={"provider": "openai", "end_user_id": "x", "api_key": OTHER_KEY})
    assert static.status == 201, static.body
    assert theirs.call("PUT", "/integrations/github", body={"client_id": "theirs"}).status == 200
    make_custom_provider(db, tenant.tenant_id, slug="their-crm")
    return Other(oauth_id, static.json()["id"], "their-crm")


def not_found_message(api: Api, method: str, path: str, **kwargs: object) -> str:
    answer = api.call(method, path, **kwargs)
    assert answer.status == 404, (method, path, answer.body)
    assert answer.json()["error"]["code"] == "not_found"
    return answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    [
        ("GET", "", {}),
        ("PATCH", "", {"body": {"alias": "mine-now", "metadata": {"stolen": True}}}),
        ("DELETE", "", {}),
        ("GET", "/token", {}),
        ("GET", "/token", {"query": {"force_refresh": "true"}}),
        ("GET", "/token", {"query": {"min_ttl": "86400"}}),
    ],
)
def test_another_tenants_connection_is_not_found_and_untouched(
    api: Api, other: Other, provider, db, method: str, suffix: str, kwargs: dict
) -> None:
    before, calls_before = db_state(db), provider.stats()

    for connection_id in (other.oauth_id, other.static_id):
        message = not_found_message(api, method, f"/connections/{connection_id}{suffix}", **kwargs)
        nobodys = uuid.uuid4()
        assert message.replace(connection_id, "ID") == not_found_message(
            api, method, f"/connections/{nobodys}{suffix}", **kwargs
        ).replace(str(nobodys), "ID")

    assert db_state(db) == before
    after = provider.stats()
    assert (after.token_calls, after.revoked) == (calls_before.token_calls, calls_before.revoked)


def test_lists_show_only_the_callers_rows(api: Api, other: Other) -> None:
    mine = connect_account(api, end_user_id="their-user")

    for query in ({}, {"end_user_id": "their-user"}, {"provider": "demo"}, {"provider": "openai"}):
        answer = api.call("GET", "/connections", query=query)
        assert answer.status == 200, answer.body
        assert [item["id"] for item in answer.json()["items"]] in ([mine], []), query
    assert [item["provider"] for item in api.call("GET", "/integrations").json()["items"]] == ["demo"]
    assert other.custom_slug not in {item["slug"] for item in api.call("GET", "/providers").json()["items"]}


def test_another_tenants_integration_is_not_found_and_untouched(api: Api, other: Other, db) -> None:
    before = db_state(db)

    not_found_message(api, "GET", "/integrations/github")
    not_found_message(api, "DELETE", "/integrations/github")

    assert db_state(db) == before


def test_another_tenants_custom_provider_is_unknown(api: Api, other: Other, db) -> None:
    before = db_state(db)
    unknown = "unknown provider"
    requests = [
        ("POST", "/connections", {"provider": other.custom_slug, "end_user_id": "u", "api_key": OTHER_KEY}),
        ("POST", "/connect-sessions", {"provider": other.custom_slug, "end_user_id": "u"}),
        ("PUT", f"/integrations/{other.custom_slug}", {"client_id": "x"}),
    ]

    for method, path, body in requests:
        answer = api.call(method, path, body=body)
        assert answer.status == 400, answer.body
        assert answer.json()["error"]["message"].startswith(unknown)
    assert api.call("GET", "/connections", query={"provider": other.custom_slug}).json()["items"] == []
    assert db_state(db) == before
