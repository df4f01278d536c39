"""Re-pointing a custom provider (issue 13.3): changing where the stored client secret and refresh tokens would
go needs the client secret again, and connections whose token endpoint moved to another server need their end
users again; nothing of theirs is ever sent to the new server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from demo_provider import DemoProvider
from tests.custom_providers.conftest import SLUG, Api, connect, define


@pytest.fixture
def elsewhere(secrets: Any) -> Iterator[DemoProvider]:
    """Another server (another origin) a stolen API key would like the secrets sent to."""
    with DemoProvider() as provider:
        yield provider
        stats = provider.stats()
        secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)


def explicit(idp: DemoProvider, **changes: Any) -> dict[str, Any]:
    endpoints = {
        "discovery_url": None,
        "issuer": idp.issuer,
        "authorization_url": f"{idp.base_url}/authorize",
        "token_url": f"{idp.base_url}/token",
        "revocation_url": f"{idp.base_url}/revoke",
    }
    return {**endpoints, **changes}


def status_of(api: Api, connection_id: str) -> tuple[str, str | None]:
    connection = api.call("GET", f"/connections/{connection_id}").json()
    return connection["status"], connection.get("last_error_code")


def connected_then_moved(api: Api, idp: DemoProvider, **moved: str) -> str:
    """A connection made under the provider's endpoints, then the definition changed (with the secret) by
    ``moved``; the connection's id."""
    assert define(api, idp, **explicit(idp)).status == 200
    connection_id = connect(api)
    answer = define(api, idp, **explicit(idp, **moved))
    assert answer.status == 200, answer.body
    return connection_id


@pytest.mark.parametrize(
    "field", ["token_url", "revocation_url", "authorization_url", "device_authorization_url", "issuer"]
)
def test_moving_an_endpoint_without_the_secret_is_a_conflict_naming_it_and_changes_nothing(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider, field: str
) -> None:
    assert define(tenant_a, idp, **explicit(idp)).status == 200
    connection_id = connect(tenant_a)
    before = tenant_a.call("GET", f"/integrations/{SLUG}").json()
    moved = elsewhere.issuer if field == "issuer" else f"{elsewhere.base_url}/{field}"

    answer = define(tenant_a, idp, client_secret=False, **explicit(idp, **{field: moved}))

    assert answer.status == 409, answer.body
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", f"custom_provider.{field}")
    assert elsewhere.base_url not in answer.body
    assert tenant_a.call("GET", f"/integrations/{SLUG}").json() == before
    forced = tenant_a.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert forced.status == 200, forced.body
    assert elsewhere.stats().token_calls == {}


def test_moving_the_discovery_url_without_the_secret_is_a_conflict_before_any_fetch(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    assert define(tenant_a, idp).status == 200

    answer = define(
        tenant_a, idp, client_secret=False, discovery_url=f"{elsewhere.base_url}/.well-known/openid-configuration"
    )

    assert answer.status == 409, answer.body
    assert answer.json()["error"]["field"] == "custom_provider.discovery_url"


def test_a_change_that_moves_no_secret_needs_no_secret(tenant_a: Api, idp: DemoProvider) -> None:
    assert define(tenant_a, idp, **explicit(idp)).status == 200
    renamed = define(tenant_a, idp, client_secret=False, **explicit(idp, display_name="Renamed"))
    assert renamed.status == 200, renamed.body
    assert define(tenant_a, idp, "by-discovery").status == 200
    # With discovery, the same discovery URL is the same server, whose metadata decides its own endpoints.
    assert define(tenant_a, idp, "by-discovery", client_secret=False, display_name="Again").status == 200


def test_with_the_secret_a_token_endpoint_on_another_server_sends_existing_connections_to_reauth(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    connection_id = connected_then_moved(tenant_a, idp, token_url=f"{elsewhere.base_url}/token")

    assert status_of(tenant_a, connection_id) == ("needs_reauth", "token_endpoint_moved")
    fetched = tenant_a.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert (fetched.status, fetched.json()["error"]["code"]) == (409, "needs_reauth")
    assert elsewhere.stats().token_calls == {}


def test_with_the_secret_a_token_endpoint_moved_on_the_same_server_keeps_connections_working(
    tenant_a: Api, idp: DemoProvider
) -> None:
    assert define(tenant_a, idp, **explicit(idp)).status == 200
    connection_id = connect(tenant_a)

    answer = define(tenant_a, idp, **explicit(idp, token_url=f"{idp.base_url}/token?v=2"))

    assert answer.status == 200, answer.body
    assert status_of(tenant_a, connection_id)[0] == "active"


# -- where stored tokens go when the endpoints move (an outside probe, 2026-11-30: a new client secret, or deleting
# the integration first, moved the revocation endpoint, and deleting a connection then sent its refresh token there)


def test_a_revocation_endpoint_moved_elsewhere_sends_connections_to_reauth_and_their_tokens_nowhere(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    connection_id = connected_then_moved(tenant_a, idp, revocation_url=f"{elsewhere.base_url}/revoke")

    assert status_of(tenant_a, connection_id) == ("needs_reauth", "revocation_endpoint_moved")
    deleted = tenant_a.call("DELETE", f"/connections/{connection_id}")
    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "not_supported"
    assert elsewhere.stats().revoked == frozenset()


def test_a_token_endpoint_moved_elsewhere_never_gets_the_old_tokens_to_revoke_either(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    connection_id = connected_then_moved(
        tenant_a, idp, token_url=f"{elsewhere.base_url}/token", revocation_url=f"{elsewhere.base_url}/revoke"
    )

    assert status_of(tenant_a, connection_id) == ("needs_reauth", "token_endpoint_moved")
    assert tenant_a.call("DELETE", f"/connections/{connection_id}").status == 200
    assert elsewhere.stats().revoked == frozenset()
    assert elsewhere.stats().token_calls == {}


def test_deleting_the_integration_first_moves_no_token_either(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    assert define(tenant_a, idp, **explicit(idp)).status == 200
    connection_id = connect(tenant_a)
    assert tenant_a.call("DELETE", f"/integrations/{SLUG}").status == 204

    redefined = define(tenant_a, idp, client_secret=False, **explicit(idp, revocation_url=f"{elsewhere.base_url}/r"))

    assert redefined.status == 200, redefined.body
    assert status_of(tenant_a, connection_id) == ("needs_reauth", "revocation_endpoint_moved")
    assert tenant_a.call("DELETE", f"/connections/{connection_id}").status == 200
    assert elsewhere.stats().revoked == frozenset()


def test_a_reconnect_never_revokes_the_old_grant_at_the_moved_endpoint(
    tenant_a: Api, idp: DemoProvider, elsewhere: DemoProvider
) -> None:
    connection_id = connected_then_moved(tenant_a, idp, revocation_url=f"{elsewhere.base_url}/revoke")

    assert connect(tenant_a) == connection_id

    assert status_of(tenant_a, connection_id)[0] == "active"
    assert elsewhere.stats().revoked == frozenset()


def test_a_revocation_endpoint_on_the_token_endpoints_own_server_keeps_connections_working(
    tenant_a: Api, idp: DemoProvider
) -> None:
    assert define(tenant_a, idp, **explicit(idp, revocation_url=None)).status == 200
    connection_id = connect(tenant_a)

    assert define(tenant_a, idp, **explicit(idp)).status == 200

    assert status_of(tenant_a, connection_id)[0] == "active"
