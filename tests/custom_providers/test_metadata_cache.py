"""Discovery metadata is kept for ``discovery_max_age_seconds``: refetched when a connect session starts past
that age, and whenever the tenant asks; a refetch must name the same issuer, and a server that does not
answer leaves the stored metadata in use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from demo_provider import DemoProvider
from tests.custom_providers.conftest import OIDC_PATH, SLUG, Api, DocumentServer, define, start_connect
from tests.support.factories import owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase

DAY_AND_A_BIT = "86401 seconds"


def custom(api: Api) -> dict[str, Any]:
    return api.call("GET", f"/integrations/{SLUG}").json()["custom_provider"]


def age_metadata(db: TestDatabase, by: str = DAY_AND_A_BIT) -> None:
    """Make the stored metadata older, as the owner (the clock is the database's)."""
    with owner(db) as sql:
        sql.run(
            "UPDATE providers SET metadata_fetched_at = metadata_fetched_at - CAST(:by AS interval)"
            " WHERE slug = :slug AND tenant_id IS NOT NULL",
            by=by,
            slug=SLUG,
        )


def serve_metadata(documents: DocumentServer, idp: DemoProvider, **changes: Any) -> str:
    """The demo provider's metadata served from the document server (whose URL it then belongs to)."""
    document = {**idp.metadata(), "issuer": documents.base_url, **changes}
    return documents.serve(OIDC_PATH, json.dumps(document).encode())


def test_fresh_metadata_is_not_fetched_again_when_a_connect_session_starts(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    define(tenant_a, idp, discovery_url=serve_metadata(documents, idp))
    fetched = custom(tenant_a)["metadata_fetched_at"]
    serve_metadata(documents, idp, authorization_response_iss_parameter_supported=True)

    assert start_connect(tenant_a).status == 201

    assert documents.requests == 1
    assert (custom(tenant_a)["metadata_fetched_at"], custom(tenant_a)["require_iss"]) == (fetched, False)


def test_metadata_older_than_the_max_age_is_refetched_when_a_connect_session_starts(
    db: TestDatabase, tenant_a: Api, idp: DemoProvider
) -> None:
    define(tenant_a, idp)
    age_metadata(db)
    aged = custom(tenant_a)["metadata_fetched_at"]
    idp.configure(send_iss=True, token_endpoint_auth_method="client_secret_post")

    started = start_connect(tenant_a)

    assert started.status == 201, started.body
    after = custom(tenant_a)
    assert after["metadata_fetched_at"] > aged
    assert (after["require_iss"], after["token_endpoint_auth_method"]) == (True, "client_secret_post")


def test_the_max_age_is_a_setting(
    db: TestDatabase, tenant_a: Api, idp: DemoProvider, documents: DocumentServer, monkeypatch
) -> None:
    from connvault import wiring

    define(tenant_a, idp, discovery_url=serve_metadata(documents, idp))
    age_metadata(db, "120 seconds")
    assert start_connect(tenant_a).status == 201
    assert documents.requests == 1  # two minutes old: fresh under the default day

    monkeypatch.setenv("CONNVAULT_DISCOVERY_MAX_AGE_SECONDS", "60")
    wiring.reset()
    try:
        assert start_connect(tenant_a).status == 201
    finally:
        monkeypatch.undo()
        wiring.reset()
    assert documents.requests == 2


def test_the_tenant_can_refetch_metadata_on_demand(tenant_a: Api, idp: DemoProvider) -> None:
    define(tenant_a, idp)
    before = custom(tenant_a)
    idp.configure(send_iss=True)

    refreshed = tenant_a.call("POST", f"/integrations/{SLUG}/refresh-metadata")

    assert refreshed.status == 200, refreshed.body
    assert refreshed.json()["require_iss"] is True
    assert refreshed.json()["metadata_fetched_at"] > before["metadata_fetched_at"]
    assert custom(tenant_a) == refreshed.json()


def test_a_refetch_naming_another_issuer_is_refused_and_the_stored_metadata_stays(
    db: TestDatabase, tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    define(tenant_a, idp, discovery_url=serve_metadata(documents, idp))
    stored = custom(tenant_a)
    serve_metadata(documents, idp, issuer="https://impostor.example")

    on_demand = tenant_a.call("POST", f"/integrations/{SLUG}/refresh-metadata")
    age_metadata(db)
    at_connect = start_connect(tenant_a)

    for answer in (on_demand, at_connect):
        assert answer.status == 400, answer.body
        assert answer.json()["error"]["field"] == "issuer"
    assert custom(tenant_a)["issuer"] == stored["issuer"]
    assert tenant_a.call("GET", "/connections").json()["items"] == []


def test_a_server_that_does_not_answer_leaves_the_stored_metadata_in_use(
    db: TestDatabase, tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    define(tenant_a, idp, discovery_url=serve_metadata(documents, idp))
    documents.serve(OIDC_PATH, b"", status=503)
    age_metadata(db)
    aged = custom(tenant_a)["metadata_fetched_at"]

    assert start_connect(tenant_a).status == 201
    assert custom(tenant_a)["metadata_fetched_at"] == aged  # tried again at the next start
    assert documents.requests == 2

    on_demand = tenant_a.call("POST", f"/integrations/{SLUG}/refresh-metadata")
    assert (on_demand.status, on_demand.json()["error"]["code"]) == (503, "provider_unavailable")


def test_only_a_custom_provider_with_a_discovery_url_can_be_refreshed(tenant_a: Api, idp: DemoProvider) -> None:
    base = idp.base_url
    define(tenant_a, idp, discovery_url=None, authorization_url=f"{base}/authorize", token_url=f"{base}/token")

    explicit = tenant_a.call("POST", f"/integrations/{SLUG}/refresh-metadata")
    catalog = tenant_a.call("POST", "/integrations/github/refresh-metadata")
    unknown = tenant_a.call("POST", "/integrations/nobody/refresh-metadata")

    assert (explicit.status, explicit.json()["error"]["field"]) == (400, "provider")
    assert (catalog.status, unknown.status) == (404, 404)


def test_a_put_without_a_definition_keeps_the_custom_provider(tenant_a: Api, idp: DemoProvider) -> None:
    define(tenant_a, idp, display_name="Kept")
    stored = custom(tenant_a)

    updated = tenant_a.call("PUT", f"/integrations/{SLUG}", body={"client_id": idp.settings.client_id})

    assert updated.status == 200, updated.body
    assert updated.json()["custom_provider"] == stored
    assert updated.json()["has_client_secret"] is True


@pytest.mark.parametrize("retry_after", ["inf", "nan", "1e999", "-inf", "99999999999"])
def test_a_refetch_refused_with_any_retry_after_is_a_503_with_a_bounded_one(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, retry_after: str
) -> None:
    """``float`` read ``inf`` and ``nan``, which the error answer could not round: an untyped 500 (outside probe)."""
    define(tenant_a, idp, discovery_url=serve_metadata(documents, idp))
    documents.serve(OIDC_PATH, b"", status=503, retry_after=retry_after)

    on_demand = tenant_a.call("POST", f"/integrations/{SLUG}/refresh-metadata")

    assert (on_demand.status, on_demand.json()["error"]["code"]) == (503, "provider_unavailable")
    assert 1 <= int(on_demand.headers["Retry-After"]) <= 86_400
