"""A custom provider belongs to one tenant: the others can neither see, use, connect nor refresh it, and
nobody can take a global catalog slug for one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from demo_provider import DemoProvider
from tests.custom_providers.conftest import (
    DEMO_RETURN_URL,
    OIDC_PATH,
    SLUG,
    Api,
    DocumentServer,
    connect,
    define,
)
from tests.support.factories import owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase


def test_another_tenant_cannot_see_use_connect_or_refresh_a_custom_provider(
    tenant_a: Api, tenant_b: Api, idp: DemoProvider
) -> None:
    assert define(tenant_a, idp).status == 200
    connection_id = connect(tenant_a)

    assert SLUG not in {item["slug"] for item in tenant_b.call("GET", "/providers").json()["items"]}
    assert tenant_b.call("GET", "/integrations").json()["items"] == []
    assert tenant_b.call("GET", f"/integrations/{SLUG}").status == 404
    started = tenant_b.call(
        "POST", "/connect-sessions", body={"provider": SLUG, "end_user_id": "u", "return_url": DEMO_RETURN_URL}
    )
    assert (started.status, started.json()["error"]["field"]) == (400, "provider")
    adopted = tenant_b.call("PUT", f"/integrations/{SLUG}", body={"client_id": "b-client"})
    assert (adopted.status, adopted.json()["error"]["field"]) == (400, "provider")
    assert tenant_b.call("POST", f"/integrations/{SLUG}/refresh-metadata").status == 404
    assert tenant_b.call("GET", f"/connections/{connection_id}/token").status == 404
    assert tenant_b.call("DELETE", f"/connections/{connection_id}").status == 404

    assert tenant_a.call("GET", f"/connections/{connection_id}/token").status == 200


def test_two_tenants_may_each_define_the_same_slug_independently(
    tenant_a: Api, tenant_b: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    assert define(tenant_a, idp, display_name="A's server").status == 200
    metadata = {
        "issuer": documents.base_url,
        "authorization_endpoint": "https://b.example/authorize",
        "token_endpoint": "https://b.example/token",
    }
    url = documents.serve(OIDC_PATH, json.dumps(metadata).encode())
    defined_b = define(tenant_b, idp, discovery_url=url, display_name="B's server")
    assert defined_b.status == 200, defined_b.body

    a = tenant_a.call("GET", f"/integrations/{SLUG}").json()["custom_provider"]
    b = tenant_b.call("GET", f"/integrations/{SLUG}").json()["custom_provider"]
    assert (a["display_name"], a["token_url"]) == ("A's server", f"{idp.base_url}/token")
    assert (b["display_name"], b["token_url"], b["revocation_url"]) == ("B's server", "https://b.example/token", None)


def test_a_global_catalog_slug_cannot_be_taken_by_a_custom_provider(
    db: TestDatabase, tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    url = documents.serve(OIDC_PATH, b"{}")

    refused = define(tenant_a, idp, "github", discovery_url=url)

    assert refused.status == 409, refused.body
    assert refused.json()["error"]["code"] == "conflict"
    assert "global catalog" in refused.json()["error"]["message"]
    assert documents.requests == 0  # refused before anything was fetched
    with owner(db) as sql:
        assert sql.run("SELECT count(*), count(tenant_id) FROM providers WHERE slug = 'github'") == [[1, 0]]
    assert tenant_a.call("GET", "/integrations").json()["items"] == []


def test_explicit_endpoints_cannot_take_a_global_slug_either(tenant_a: Api, idp: DemoProvider) -> None:
    base = idp.base_url
    refused = define(
        tenant_a, idp, "google", discovery_url=None, authorization_url=f"{base}/authorize", token_url=f"{base}/token"
    )
    assert refused.status == 409, refused.body
