"""Per-connection provider configuration through the API and the services: connect sessions and directly created
connections carry ``connection_config``; its values fill the provider's URLs for that connection only, are
checked before anything is written or any browser is redirected, and never change under an existing grant.

Catalog providers on a connection's own host (``https://{subdomain}.okta.com``) are reached through
``RoutedTransport``: a real HTTP client whose requests for the provider's real URLs are delivered to the demo
provider on 127.0.0.1, and recorded, so a test sees exactly which URL each call was made for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlsplit
from uuid import UUID

import pytest
import urllib3

from connvault.db.uow import UnitOfWork
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpResponse, HttpTransport
from connvault.redacted import Redacted
from connvault.services import connections, grants, integrations
from connvault.services.connect import CallbackParams, ConnectRequest, complete_connect, create_connect_session
from connvault.services.scheduler import refresh_due
from connvault.services.tokens import get_token
from demo_provider import CLIENT_SECRET_POST, DemoProvider
from devserver.demo_setup import install_demo_provider
from tests.api.conftest import (
    DEMO_RETURN_URL,
    Answer,
    Api,
    connect_account,
    db_state,
    follow_authorize,
    pending_verifiers,
    start_connect,
    stored_connection,
)
from tests.api.test_connect_page import Browser, page_token
from tests.hardening.support import POLICY, RUN, make_due
from tests.support.factories import as_tenant, make_tenant, owner
from tests.support.secrets import SecretRegistry

CALLBACK_URL = "http://127.0.0.1:3000/oauth/callback"  # CONNVAULT_CALLBACK_URL in tests/conftest.py
SALESFORCE_LIKE = {
    "instance_url": {"kind": "origin", "source": "token_response", "domains": ["salesforce.com"]},
}


@dataclass(frozen=True)
class Sent:
    method: str
    url: str
    form: dict[str, str]


class RoutedTransport(HttpTransport):
    """Delivers requests for the provider's real URLs (``routes``: scheme://host/path prefix → demo URL prefix)
    to the demo provider, and records every one. A URL with no route fails the test: nothing leaves 127.0.0.1."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        super().__init__(deadline_seconds=2.0)
        self.routes = dict(routes)
        self.sent: list[Sent] = []

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        reuse: bool = True,
    ) -> HttpResponse:
        self.sent.append(Sent(method, url, dict(parse_qsl((body or b"").decode()))))
        for prefix, target in self.routes.items():
            if url.startswith(prefix):
                return super().request(method, target + url[len(prefix) :], body=body, headers=headers, reuse=reuse)
        raise AssertionError("a request for a URL the test did not route")


@pytest.fixture
def okta_tenant(db, secrets: SecretRegistry, provider: DemoProvider) -> Iterator[UUID]:
    """A tenant whose Okta integration holds the demo provider's client credentials."""
    tenant_id = make_tenant()
    secrets.add(provider.settings.client_secret)
    integrations.save_integration(
        UnitOfWork(tenant_id),
        "okta",
        integrations.IntegrationInput(
            client_id=provider.settings.client_id,
            client_secret=Redacted(provider.settings.client_secret or ""),
            scopes=("openid", "offline_access"),
            allowed_return_urls=("https://app.example.com/done",),
        ),
    )
    yield tenant_id
    stats = provider.stats()
    secrets.add(*stats.access_tokens, *stats.live_refresh_tokens, *stats.revoked)


def okta_routes(provider: DemoProvider, *subdomains: str) -> RoutedTransport:
    return RoutedTransport({f"https://{name}.okta.com/oauth2/v1/": provider.base_url + "/" for name in subdomains})


def connect_via_service(
    tenant_id: UUID, oauth: OAuthClient, secrets: SecretRegistry, slug: str, config: dict[str, str]
) -> UUID:
    """Start a connect session, play the browser at the demo provider, complete the callback: the connection."""
    session = create_connect_session(
        UnitOfWork(tenant_id),
        ConnectRequest(provider=slug, end_user_id="user-1", connection_config=config),
        callback_url=CALLBACK_URL,
        oauth=oauth,
    )
    authorize_url = session.authorize_url.reveal()
    secrets.add(*pending_verifiers(tenant_id), *parse_qs(urlsplit(authorize_url).query)["state"])
    transport = oauth._transport
    assert isinstance(transport, RoutedTransport)
    prefix = next(p for p in transport.routes if authorize_url.startswith(p))
    answer = urllib3.request("GET", transport.routes[prefix] + authorize_url[len(prefix) :], redirect=False)
    query = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))
    secrets.add(query["code"])
    result = complete_connect(
        CallbackParams(state=Redacted(query["state"]), code=Redacted(query["code"])),
        callback_url=CALLBACK_URL,
        oauth=oauth,
    )
    assert result.connection_id is not None, result.error
    return result.connection_id


# -- connect sessions -------------------------------------------------------------------------------------


def shopify_integration(api: Api) -> None:
    body = {"client_id": "shop-app", "client_secret": "s" * 32, "allowed_return_urls": [DEMO_RETURN_URL]}
    api.secrets.add("s" * 32)
    assert api.call("PUT", "/integrations/shopify", body=body).status == 200


def test_a_connect_session_sends_the_browser_to_the_connections_own_host(api: Api, db) -> None:
    shopify_integration(api)

    started = start_connect(api, provider="shopify", connection_config={"subdomain": "acme"})

    assert started.status == 201, started.body
    url = urlsplit(started.json()["authorize_url"])
    assert (url.scheme, url.hostname, url.path) == ("https", "acme.myshopify.com", "/admin/oauth/authorize")
    with owner(db) as connection:
        assert connection.run("SELECT connection_config FROM oauth_sessions") == [[{"subdomain": "acme"}]]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (None, "connection_config.subdomain"),
        ({}, "connection_config.subdomain"),
        ({"subdomain": "acme.evil.com"}, "connection_config.subdomain"),
        ({"subdomain": "x/.."}, "connection_config.subdomain"),
        ({"subdomain": "acme%2eevil"}, "connection_config.subdomain"),
        ({"subdomain": 42}, "connection_config.subdomain"),
        ({"subdomain": "acme", "region": "eu"}, "connection_config"),
    ],
    ids=["absent", "empty", "another-domain", "dot-segment", "percent-encoded", "not-a-string", "unknown-key"],
)
def test_a_missing_or_malformed_value_is_a_400_naming_the_key_before_any_redirect(
    api: Api, db, config: dict | None, field: str
) -> None:
    shopify_integration(api)
    before = db_state(db)

    answer = start_connect(api, provider="shopify", connection_config=config)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert "authorize_url" not in answer.body
    assert db_state(db) == before


def test_a_provider_without_placeholders_takes_no_configuration(api: Api, db) -> None:
    before = db_state(db)

    answer = start_connect(api, connection_config={"subdomain": "acme"})

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "connection_config"
    assert db_state(db) == before


def test_providers_list_the_keys_they_need_and_who_supplies_them(api: Api) -> None:
    listed = {item["slug"]: item for item in api.call("GET", "/providers").json()["items"]}

    (shop_key,) = listed["shopify"]["connection_config"]
    assert (shop_key["name"], shop_key["kind"], shop_key["source"]) == ("subdomain", "subdomain", "tenant")
    assert listed["shopify"]["api_base_url"] == "https://{subdomain}.myshopify.com/admin/api"
    (salesforce_key,) = listed["salesforce"]["connection_config"]
    assert (salesforce_key["name"], salesforce_key["source"]) == ("instance_url", "token_response")
    assert listed["github"]["connection_config"] == []


# -- the whole flow on the connection's own host ----------------------------------------------------------


def test_exchange_refresh_and_revocation_all_go_to_the_connections_own_host(
    okta_tenant: UUID, provider: DemoProvider, secrets: SecretRegistry
) -> None:
    transport = okta_routes(provider, "acme")
    oauth = OAuthClient(transport)

    connection_id = connect_via_service(okta_tenant, oauth, secrets, "okta", {"subdomain": "acme"})
    get_token(okta_tenant, connection_id, force_refresh=True, oauth=oauth)
    deletion = connections.delete_connection(UnitOfWork(okta_tenant), connection_id, oauth=oauth)

    assert [(sent.method, sent.url, sent.form.get("grant_type")) for sent in transport.sent] == [
        ("POST", "https://acme.okta.com/oauth2/v1/token", "authorization_code"),
        ("POST", "https://acme.okta.com/oauth2/v1/token", "refresh_token"),
        ("POST", "https://acme.okta.com/oauth2/v1/revoke", None),
    ]
    assert deletion.revoked
    transport.close()


def test_a_scheduled_refresh_goes_to_the_connections_own_host(
    okta_tenant: UUID, provider: DemoProvider, secrets: SecretRegistry, db
) -> None:
    # Given an Okta connection on acme's host, due for a refresh
    transport = okta_routes(provider, "acme")
    oauth = OAuthClient(transport)
    connection_id = connect_via_service(okta_tenant, oauth, secrets, "okta", {"subdomain": "acme"})
    make_due(db, str(connection_id))

    # When the scheduler's run refreshes it (the prepared lease read, not the unit of work)
    report = refresh_due(remaining_ms=lambda: 600_000, config=RUN, policy=POLICY, oauth=oauth)

    # Then the refresh went to acme's token URL
    assert report.refreshed == 1, report.as_dict()
    assert [(sent.url, sent.form.get("grant_type")) for sent in transport.sent][1:] == [
        ("https://acme.okta.com/oauth2/v1/token", "refresh_token")
    ]
    transport.close()


def test_the_connection_keeps_its_configuration_and_a_reconnect_replaces_it_with_the_new_grant(
    okta_tenant: UUID, provider: DemoProvider, secrets: SecretRegistry, db
) -> None:
    transport = okta_routes(provider, "acme", "globex")
    oauth = OAuthClient(transport)

    first = connect_via_service(okta_tenant, oauth, secrets, "okta", {"subdomain": "acme"})
    assert stored_connection(db, str(first)).connection_config == {"subdomain": "acme"}
    again = connect_via_service(okta_tenant, oauth, secrets, "okta", {"subdomain": "globex"})

    assert again == first
    assert stored_connection(db, str(first)).connection_config == {"subdomain": "globex"}
    # The replaced grant is revoked where its tokens came from, acme's host, never at globex's
    assert [(sent.url, sent.form.get("grant_type")) for sent in transport.sent] == [
        ("https://acme.okta.com/oauth2/v1/token", "authorization_code"),
        ("https://globex.okta.com/oauth2/v1/token", "authorization_code"),
        ("https://acme.okta.com/oauth2/v1/revoke", None),
    ]
    transport.close()


def test_shopify_asks_for_an_expiring_offline_token_at_the_shops_token_url(
    db, provider: DemoProvider, secrets: SecretRegistry
) -> None:
    provider.configure(token_endpoint_auth_method=CLIENT_SECRET_POST)
    tenant_id = make_tenant()
    integrations.save_integration(
        UnitOfWork(tenant_id),
        "shopify",
        integrations.IntegrationInput(
            client_id=provider.settings.client_id, client_secret=Redacted(provider.settings.client_secret or "")
        ),
    )
    shop = "https://acme.myshopify.com/admin/oauth/"
    transport = RoutedTransport({shop + "access_token": provider.base_url + "/token", shop: provider.base_url + "/"})

    connect_via_service(tenant_id, OAuthClient(transport), secrets, "shopify", {"subdomain": "acme"})

    (exchange,) = transport.sent
    assert exchange.url == "https://acme.myshopify.com/admin/oauth/access_token"
    assert exchange.form["expiring"] == "1"
    assert exchange.form["grant_type"] == "authorization_code"
    stats = provider.stats()
    secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)


# -- values from the token response (Salesforce's instance_url) -------------------------------------------


@pytest.fixture
def salesforce_like(api: Api, db, provider: DemoProvider) -> str:
    install_demo_provider(
        db.owner_target, provider, slug="demo-sf", connection_config=SALESFORCE_LIKE, api_base_url="{instance_url}"
    )
    answer = api.call(
        "PUT",
        "/integrations/demo-sf",
        body={
            "client_id": provider.settings.client_id,
            "client_secret": provider.settings.client_secret,
            "allowed_return_urls": [DEMO_RETURN_URL],
        },
    )
    assert answer.status == 200, answer.body
    return "demo-sf"


def test_the_instance_url_of_the_token_response_becomes_the_connections_configuration(
    api: Api, provider: DemoProvider, salesforce_like: str
) -> None:
    provider.configure(extra_fields={"instance_url": "https://acme.my.salesforce.com"})

    connection_id = connect_account(api, provider=salesforce_like)

    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert shown["connection_config"] == {"instance_url": "https://acme.my.salesforce.com"}


def test_a_confirmed_connect_session_keeps_the_configuration_until_the_grant_is_confirmed(
    api: Api, provider: DemoProvider, salesforce_like: str
) -> None:
    provider.configure(extra_fields={"instance_url": "https://acme.my.salesforce.com"})
    started = start_connect(api, provider=salesforce_like, require_confirmation=True)
    assert started.status == 201, started.body
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))
    query = parse_qs(urlsplit(landed.headers["Location"]).query)
    api.secrets.add(*query["confirmation"])

    confirmed = api.call(
        "POST", f"/connect-sessions/{started.json()['id']}/confirm", body={"confirmation": query["confirmation"][0]}
    )

    assert confirmed.status == 201, confirmed.body
    assert confirmed.json()["connection_config"] == {"instance_url": "https://acme.my.salesforce.com"}


@pytest.mark.parametrize(
    "instance_url",
    ["https://evil.com", "https://acme.salesforce.com.evil.com", "http://acme.my.salesforce.com", None],
    ids=["another-domain", "suffix-trick", "plain-http", "absent"],
)
def test_a_token_response_naming_a_host_outside_the_providers_domains_connects_nothing_and_revokes_the_grant(
    api: Api, db, provider: DemoProvider, salesforce_like: str, instance_url: str | None
) -> None:
    if instance_url is not None:
        provider.configure(extra_fields={"instance_url": instance_url})

    started = start_connect(api, provider=salesforce_like)
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    assert landed.status == 302
    assert parse_qs(urlsplit(landed.headers["Location"]).query)["error"] == ["invalid_token_response"]
    with owner(db) as connection:
        assert connection.run("SELECT count(*) FROM connections") == [[0]]
    stats = provider.stats()
    assert stats.revoked
    assert not stats.live_refresh_tokens


def machine_connection(api: Api, provider: str) -> Answer:
    return api.call(
        "POST", "/connections", body={"kind": "client_credentials", "provider": provider, "end_user_id": "svc"}
    )


def test_a_machine_connection_keeps_the_instance_url_its_first_token_came_with(
    api: Api, db, provider: DemoProvider, salesforce_like: str
) -> None:
    provider.configure(extra_fields={"instance_url": "https://acme.my.salesforce.com"})

    created = machine_connection(api, salesforce_like)

    assert created.status == 201, created.body
    assert created.json()["connection_config"] == {"instance_url": "https://acme.my.salesforce.com"}
    assert stored_connection(db, created.json()["id"]).connection_config == {
        "instance_url": "https://acme.my.salesforce.com"
    }
    api.secrets.add(*provider.stats().access_tokens)


def import_grant(api: Api, provider: DemoProvider, slug: str, **fields: object) -> Answer:
    """A grant the demo provider issued elsewhere, imported into a connection of ``slug``."""
    (grant,) = provider.issue_grants(1)
    api.secrets.add(grant["access_token"], grant["refresh_token"])
    body = {"kind": "imported", "provider": slug, "end_user_id": "u", "refresh_token": grant["refresh_token"]}
    return api.call("POST", "/connections", body={**body, **fields})


def test_an_imported_grant_takes_the_instance_url_from_the_refresh_that_verifies_it(
    api: Api, provider: DemoProvider, salesforce_like: str
) -> None:
    provider.configure(extra_fields={"instance_url": "https://acme.my.salesforce.com"})

    created = import_grant(api, provider, salesforce_like)

    assert created.status == 201, created.body
    assert created.json()["connection_config"] == {"instance_url": "https://acme.my.salesforce.com"}
    stats = provider.stats()
    api.secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)


def test_an_unverified_import_of_a_provider_naming_its_host_in_token_responses_is_a_400(
    api: Api, db, provider: DemoProvider, salesforce_like: str
) -> None:
    before = db_state(db)

    answer = import_grant(api, provider, salesforce_like, verify=False)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "verify"
    assert db_state(db) == before
    assert provider.stats().token_calls == {}


def test_a_bulk_import_keeps_each_grants_instance_url_and_refuses_it_unverified(
    api: Api, provider: DemoProvider, salesforce_like: str
) -> None:
    provider.configure(extra_fields={"instance_url": "https://acme.my.salesforce.com"})
    grants_ = provider.issue_grants(2)
    api.secrets.add(*(grant[name] for grant in grants_ for name in ("access_token", "refresh_token")))
    items = [
        {"provider": salesforce_like, "end_user_id": f"u{index}", "refresh_token": grant["refresh_token"]}
        for index, grant in enumerate(grants_)
    ]

    unverified = api.call("POST", "/connections/import", body={"items": items, "verify": False})
    verified = api.call("POST", "/connections/import", body={"items": items})

    assert [item["status"] for item in unverified.json()["items"]] == ["invalid", "invalid"]
    assert {item["error"]["field"] for item in unverified.json()["items"]} == {"verify"}
    assert [item["status"] for item in verified.json()["items"]] == ["created", "created"]
    for item in verified.json()["items"]:
        shown = api.call("GET", f"/connections/{item['connection_id']}").json()
        assert shown["connection_config"] == {"instance_url": "https://acme.my.salesforce.com"}
    stats = provider.stats()
    api.secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)


@pytest.mark.parametrize(
    "instance_url",
    [
        "https://acme.salesforce.com.evil.com",
        "http://acme.my.salesforce.com",
        "https://acme.my.salesforce.com@evil.com",
        "https://acme.my.salesforce.com\u0000.evil.com",
        {"host": "acme.my.salesforce.com"},
        None,
    ],
    ids=["suffix-trick", "plain-http", "userinfo", "nul", "not-text", "absent"],
)
def test_a_first_token_without_a_usable_instance_url_is_refused_revoked_and_nothing_stored(
    api: Api, db, provider: DemoProvider, salesforce_like: str, instance_url: object
) -> None:
    if instance_url is not None:
        provider.configure(extra_fields={"instance_url": instance_url})
    before = db_state(db)

    answer = machine_connection(api, salesforce_like)

    assert answer.status == 422, answer.body
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("credentials_refused", "provider")
    assert "connection_config.instance_url" in error["message"]
    assert "evil" not in answer.body and "http://" not in answer.body  # named, never echoed
    assert db_state(db) == before
    stats = provider.stats()
    (handed_out,) = stats.access_tokens
    api.secrets.add(handed_out)
    assert handed_out in stats.revoked
    assert not provider.access_token_is_active(handed_out)


# -- directly created connections --------------------------------------------------------------------------

JIRA_TOKEN = "jira-api-token-0123456789"


def jira_connection(api: Api, **fields: object) -> Answer:
    """``POST /connections`` for a Jira site (basic credentials) with ``connection_config`` acme, or ``fields``."""
    api.secrets.add(JIRA_TOKEN)
    body = {
        "provider": "jira-basic",
        "end_user_id": "u",
        "username": "me@example.com",
        "password": JIRA_TOKEN,
        "connection_config": {"subdomain": "acme"},
        **fields,
    }
    return api.call("POST", "/connections", body=body)


def test_a_directly_created_connection_carries_its_configuration(api: Api) -> None:
    created = jira_connection(api)

    assert created.status == 201, created.body
    assert created.json()["connection_config"] == {"subdomain": "acme"}


@pytest.mark.parametrize(
    ("config", "field"),
    [(None, "connection_config.subdomain"), ({"subdomain": "acme.evil.com"}, "connection_config.subdomain")],
)
def test_a_directly_created_connection_without_a_good_value_is_a_400_and_writes_nothing(
    api: Api, db, config: dict | None, field: str
) -> None:
    before = db_state(db)

    answer = jira_connection(api, connection_config=config)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert db_state(db) == before


def test_a_client_credentials_connection_gets_and_renews_its_tokens_at_its_own_host(
    okta_tenant: UUID, provider: DemoProvider, db
) -> None:
    # Given a machine connection at acme's Okta, on the tenant's integration
    transport = okta_routes(provider, "acme")
    oauth = OAuthClient(transport)
    request = grants.ClientCredentialsInput(
        target=grants.Target("okta", "billing-service", connection_config={"subdomain": "acme"}), scopes=("read",)
    )
    connection = grants.create_connection(UnitOfWork(okta_tenant), request, oauth=oauth)

    # When its token is renewed
    get_token(okta_tenant, connection.id, force_refresh=True, oauth=oauth)

    # Then both requests went to acme's token URL, and the connection keeps acme as its host
    assert [(sent.url, sent.form.get("grant_type")) for sent in transport.sent] == [
        ("https://acme.okta.com/oauth2/v1/token", "client_credentials")
    ] * 2
    assert stored_connection(db, str(connection.id)).connection_config == {"subdomain": "acme"}
    transport.close()


@pytest.mark.parametrize(
    ("config", "field"),
    [(None, "connection_config.subdomain"), ({"subdomain": "acme.evil.com"}, "connection_config.subdomain")],
)
def test_a_machine_connection_without_a_good_value_is_a_400_before_any_provider_call(
    api: Api, db, config: dict | None, field: str
) -> None:
    body = {"client_id": "okta-app", "client_secret": "o" * 32, "allowed_return_urls": [DEMO_RETURN_URL]}
    api.secrets.add("o" * 32)
    assert api.call("PUT", "/integrations/okta", body=body).status == 200
    before = db_state(db)

    answer = api.call(
        "POST",
        "/connections",
        body={"kind": "client_credentials", "provider": "okta", "end_user_id": "svc", "connection_config": config},
    )

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert db_state(db) == before


# -- a configuration never changes under an existing grant -------------------------------------------------


def test_the_api_offers_no_way_to_change_a_connections_configuration(api: Api, db) -> None:
    created = jira_connection(api).json()
    before = db_state(db)

    answer = api.call("PATCH", f"/connections/{created['id']}", body={"connection_config": {"subdomain": "evil"}})

    assert answer.status == 400, answer.body
    assert db_state(db) == before


def test_the_database_refuses_a_configuration_change_without_a_new_grant(api: Api, db) -> None:
    created = jira_connection(api).json()
    change = "UPDATE connections SET connection_config = CAST(:c AS jsonb){also} WHERE id = CAST(:i AS uuid)"
    evil = json.dumps({"subdomain": "evil"})

    refused = pytest.raises(Exception, match="connection_config changes only with a new grant")
    with as_tenant(db, api.tenant.tenant_id) as connection, refused:
        connection.run(change.format(also=""), c=evil, i=created["id"])
    with as_tenant(db, api.tenant.tenant_id) as connection:
        connection.run(change.format(also=", granted_at = now() + interval '1 s'"), c=evil, i=created["id"])
        assert connection.run("SELECT connection_config FROM connections") == [[{"subdomain": "evil"}]]


def test_another_tenant_sees_neither_the_connection_nor_its_configuration(api: Api, db) -> None:
    created = jira_connection(api).json()
    other = make_tenant("Other")

    with as_tenant(db, other) as connection:
        assert connection.run("SELECT connection_config FROM connections") == []
    with as_tenant(db, api.tenant.tenant_id) as connection:
        rows = connection.run("SELECT connection_config FROM connections WHERE id = CAST(:i AS uuid)", i=created["id"])
        assert rows == [[{"subdomain": "acme"}]]


# -- the hosted connect page --------------------------------------------------------------------------------


def test_a_connect_link_carries_the_configuration_to_the_pages_oauth_attempt(api: Api) -> None:
    shopify_integration(api)
    started = start_connect(api, provider="shopify", connection_config={"subdomain": "acme"})
    assert started.status == 201, started.body
    link = urlsplit(started.json()["connect_url"])
    api.secrets.add(*parse_qs(link.query)["token"])
    browser = Browser(api)
    page = browser.open(started.json()["connect_url"])

    redirect = browser.post({"page_token": page_token(page, api), "step": "choose", "provider": "shopify"})

    assert redirect.status == 303, redirect.body
    authorize = urlsplit(redirect.headers["Location"])
    assert (authorize.hostname, authorize.path) == ("acme.myshopify.com", "/admin/oauth/authorize")
    api.secrets.add(*parse_qs(authorize.query)["state"], *pending_verifiers(api.tenant.tenant_id))


def test_a_link_naming_a_provider_that_needs_configuration_beside_others_is_refused(api: Api, db) -> None:
    shopify_integration(api)
    before = db_state(db)

    answer = api.call(
        "POST",
        "/connect-sessions",
        body={"providers": ["shopify", "demo"], "end_user_id": "u", "return_url": DEMO_RETURN_URL},
    )

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "providers"
    assert db_state(db) == before
