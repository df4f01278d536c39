"""A custom provider goes through the same life as a catalog one: connect, callback, token fetch, refresh
with rotation, scheduled refresh, deletion with revocation, and RFC 9207 ``iss`` checks at the callback."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from connvault.services import scheduler
from demo_provider import DemoProvider
from tests.api.conftest import follow_authorize
from tests.custom_providers.conftest import (
    DEMO_RETURN_URL,
    SLUG,
    Api,
    connect,
    define,
    discovery_url,
    start_connect,
)


def test_a_custom_provider_from_discovery_goes_from_connect_to_refresh_to_revoked_deletion(
    tenant_a: Api, idp: DemoProvider
) -> None:
    defined = define(tenant_a, idp, display_name="Acme IdP")
    assert defined.status == 200, defined.body
    custom = defined.json()["custom_provider"]
    base = idp.base_url
    assert custom == custom | {
        "slug": SLUG,
        "display_name": "Acme IdP",
        "discovery_url": discovery_url(idp),
        "issuer": base,
        "require_iss": False,
        "authorization_url": f"{base}/authorize",
        "token_url": f"{base}/token",
        "revocation_url": f"{base}/revoke",
        "pkce": True,
        "token_endpoint_auth_method": "client_secret_basic",
    }
    assert custom["metadata_fetched_at"] is not None
    assert "demo-secret" not in defined.body
    listed = {item["slug"]: item for item in tenant_a.call("GET", "/providers").json()["items"]}
    assert listed[SLUG]["custom"] is True
    assert listed[SLUG]["default_scopes"] == ["read"]

    connection_id = connect(tenant_a)
    (authorization,) = idp.stats().authorizations
    assert authorization.code_challenge is not None  # PKCE, because the metadata offers S256

    first = tenant_a.call("GET", f"/connections/{connection_id}/token")
    assert first.status == 200, first.body
    first_token = first.json()["access_token"]
    assert idp.access_token_is_active(first_token)
    live_before = idp.stats().live_refresh_tokens

    refreshed = tenant_a.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert refreshed.status == 200, refreshed.body
    assert refreshed.json()["access_token"] != first_token
    stats = idp.stats()
    assert stats.token_calls.get("refresh_token") == 1
    assert stats.refresh_token_reuse == 0
    assert stats.live_refresh_tokens.isdisjoint(live_before)  # rotated: the old refresh token died

    again = tenant_a.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert again.status == 200, again.body  # the rotated refresh token was stored and works
    assert idp.stats().refresh_token_reuse == 0

    live = idp.stats().live_refresh_tokens
    deleted = tenant_a.call("DELETE", f"/connections/{connection_id}")
    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "succeeded"
    assert live <= idp.stats().revoked
    assert tenant_a.call("GET", f"/connections/{connection_id}").status == 404


def test_a_custom_provider_with_explicit_endpoints_connects_fetches_and_revokes(
    tenant_a: Api, idp: DemoProvider
) -> None:
    base = idp.base_url
    defined = define(
        tenant_a,
        idp,
        discovery_url=None,
        authorization_url=f"{base}/authorize",
        token_url=f"{base}/token",
        revocation_url=f"{base}/revoke",
        scope_separator=",",
        authorize_params={"prompt": "consent"},
        pkce=False,
    )
    assert defined.status == 200, defined.body
    custom = defined.json()["custom_provider"]
    assert (custom["discovery_url"], custom["metadata_fetched_at"], custom["pkce"]) == (None, None, False)
    assert custom["revocation_scope"] == "token"

    started = tenant_a.call(
        "POST",
        "/connect-sessions",
        body={"provider": SLUG, "end_user_id": "u", "return_url": DEMO_RETURN_URL, "scopes": ["read", "write"]},
    )
    assert started.status == 201, started.body
    query = parse_qs(urlsplit(started.json()["authorize_url"]).query)
    tenant_a.secrets.add(*query["state"])
    assert query["prompt"] == ["consent"]
    assert query["scope"] == ["read,write"]
    assert "code_challenge" not in query
    landed = tenant_a.callback(follow_authorize(started.json()["authorize_url"], tenant_a.secrets))
    connection_id = parse_qs(urlsplit(landed.headers["Location"]).query)["connection_id"][0]

    assert tenant_a.call("GET", f"/connections/{connection_id}/token").status == 200
    deleted = tenant_a.call("DELETE", f"/connections/{connection_id}")
    assert deleted.json()["revocation"] == "succeeded"


def test_the_token_endpoint_auth_method_follows_the_metadata(tenant_a: Api, idp: DemoProvider) -> None:
    idp.configure(token_endpoint_auth_method="client_secret_post")
    defined = define(tenant_a, idp)
    assert defined.json()["custom_provider"]["token_endpoint_auth_method"] == "client_secret_post"
    connection_id = connect(tenant_a)  # the demo provider refuses any other method than the one it advertises
    assert tenant_a.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"}).status == 200


def test_a_public_client_may_use_a_server_that_only_takes_none_but_a_secret_is_refused(
    tenant_a: Api, idp: DemoProvider
) -> None:
    idp.configure(client_secret=None)
    tenant_a.secrets.add("a-secret-the-server-cannot-take")
    with_secret = tenant_a.call(
        "PUT",
        f"/integrations/{SLUG}",
        body={
            "client_id": idp.settings.client_id,
            "client_secret": "a-secret-the-server-cannot-take",
            "custom_provider": {"discovery_url": discovery_url(idp)},
        },
    )
    assert with_secret.status == 422, with_secret.body
    assert with_secret.json()["error"]["field"] == "token_endpoint_auth_methods_supported"

    public = define(tenant_a, idp, client_secret=False)
    assert public.status == 200, public.body
    assert public.json()["has_client_secret"] is False
    connection_id = connect(tenant_a)
    assert tenant_a.call("GET", f"/connections/{connection_id}/token").status == 200


def test_the_scheduled_refresh_renews_a_custom_providers_connection(tenant_a: Api, idp: DemoProvider) -> None:
    idp.configure(expires_in=60)  # inside the scheduler's horizon from the start
    define(tenant_a, idp)
    connection_id = connect(tenant_a)
    before = tenant_a.call("GET", f"/connections/{connection_id}").json()

    report = scheduler.refresh_due(remaining_ms=lambda: 60_000)

    assert report.refreshed == 1, report
    assert idp.stats().token_calls.get("refresh_token") == 1
    after = tenant_a.call("GET", f"/connections/{connection_id}").json()
    assert after["last_refresh_at"] is not None
    assert after["expires_at"] > before["expires_at"]


def test_the_callback_requires_iss_when_the_metadata_says_the_server_sends_it(tenant_a: Api, idp: DemoProvider) -> None:
    idp.configure(send_iss=True)
    defined = define(tenant_a, idp)
    assert defined.json()["custom_provider"]["require_iss"] is True
    connect(tenant_a)  # iss equal to the issuer: accepted


def test_an_iss_naming_another_server_is_refused_as_a_mix_up_and_nothing_is_written(
    tenant_a: Api, idp: DemoProvider
) -> None:
    idp.configure(send_iss=True)
    define(tenant_a, idp)
    idp.configure(issuer="https://attacker.example")  # the authorization response now names another issuer

    started = start_connect(tenant_a)
    landed = tenant_a.callback(follow_authorize(started.json()["authorize_url"], tenant_a.secrets))

    assert landed.status == 302
    assert parse_qs(urlsplit(landed.headers["Location"]).query) == {"error": ["issuer_mismatch"]}
    assert "authorization_code" not in idp.stats().token_calls  # the code was never redeemed
    assert tenant_a.call("GET", "/connections").json()["items"] == []


def test_a_missing_iss_is_refused_when_the_server_promised_to_send_it(tenant_a: Api, idp: DemoProvider) -> None:
    idp.configure(send_iss=True)
    define(tenant_a, idp)
    idp.configure(send_iss=False)

    started = start_connect(tenant_a)
    landed = tenant_a.callback(follow_authorize(started.json()["authorize_url"], tenant_a.secrets))

    assert parse_qs(urlsplit(landed.headers["Location"]).query) == {"error": ["issuer_mismatch"]}
    assert tenant_a.call("GET", "/connections").json()["items"] == []


def test_a_custom_provider_declared_to_revoke_whole_authorizations_keeps_the_grant_a_reconnect_replaced(
    tenant_a: Api, idp: DemoProvider
) -> None:
    """A tenant's own Google-like server (issue 13.6): revoking the old grant would end the new one too."""
    idp.configure(revoke_whole_authorization=True)
    defined = define(tenant_a, idp, revocation_scope="authorization")
    assert defined.status == 200, defined.body
    assert defined.json()["custom_provider"]["revocation_scope"] == "authorization"
    first = connect(tenant_a)

    second = connect(tenant_a)

    assert second == first
    assert idp.stats().revoked == frozenset()
    refreshed = tenant_a.call("GET", f"/connections/{second}/token", query={"force_refresh": "true"})
    assert refreshed.status == 200, refreshed.body
