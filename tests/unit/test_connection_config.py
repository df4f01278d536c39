"""Per-connection provider configuration: what a value may be, where a placeholder may stand, and what filling
one can never do (move a URL to another host, add a path, a port or userinfo)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
import yaml

from connvault.catalog.loader import CATALOG_PATH, load_catalog, parse_catalog
from connvault.connection_config import (
    TemplateError,
    api_base_url,
    check_template,
    check_value,
    configured,
    fill,
    keys_document,
    parse_keys,
    tenant_config,
    token_response_config,
)
from connvault.errors import InvalidInput
from connvault.models import AuthType, ConfigKey, ConfigKind, ConfigSource, Provider

SUBDOMAIN = ConfigKey("subdomain", ConfigKind.SUBDOMAIN)
INSTANCE = ConfigKey("instance_url", ConfigKind.ORIGIN, ConfigSource.TOKEN_RESPONSE, domains=("salesforce.com",))
SHOP = Provider(
    id=uuid4(),
    slug="shop",
    display_name="Shop",
    auth_type=AuthType.OAUTH2,
    authorization_url="https://{subdomain}.myshopify.com/admin/oauth/authorize",
    token_url="https://{subdomain}.myshopify.com/admin/oauth/access_token",
    issuer="https://{subdomain}.myshopify.com",
    connection_config=(SUBDOMAIN,),
    api_base_url="https://{subdomain}.myshopify.com/admin/api",
)
SALESFORCE = Provider(
    id=uuid4(),
    slug="sf",
    display_name="SF",
    auth_type=AuthType.OAUTH2,
    authorization_url="https://login.salesforce.com/services/oauth2/authorize",
    token_url="https://login.salesforce.com/services/oauth2/token",
    connection_config=(INSTANCE,),
    api_base_url="{instance_url}/services/data",
)

# Every way a value could try to leave the shop's host, or smuggle structure into a URL. Each is refused.
HOSTILE_SUBDOMAINS = {
    "another registrable domain": "acme.evil.com",
    "a second label": "acme.myshopify",
    "a trailing dot": "acme.",
    "a leading dot": ".acme",
    "a path": "acme/admin",
    "a dot segment": "x/..",
    "only dots": "..",
    "a single dot": ".",
    "userinfo": "evil.com@acme",
    "an at sign": "acme@",
    "a port": "acme:8443",
    "a query": "acme?x=1",
    "a fragment": "evil.com#",
    "a backslash": "acme\\evil.com",
    "a percent-encoded dot": "acme%2eevil",
    "a percent-encoded slash": "acme%2fevil",
    "a percent sign": "acme%",
    "an ideographic full stop": "acme\u3002evil",
    "a fullwidth full stop": "acme\uff0eevil",
    "a halfwidth ideographic full stop": "acme\uff61evil",
    "a one dot leader": "acme\u2024evil",
    "a cyrillic lookalike": "\u0430cme",
    "an IDNA A-label": "xn--80ak6aa92e",
    "a reserved hyphen pair": "ab--cd",
    "a fullwidth letter": "\uff41cme",
    "a zero width joiner": "ac\u200dme",
    "uppercase": "ACME",
    "a leading hyphen": "-acme",
    "a trailing hyphen": "acme-",
    "an underscore": "ac_me",
    "a space": "ac me",
    "a trailing newline": "acme\n",
    "a NUL": "acme\x00",
    "a tab": "ac\tme",
    "a lone surrogate": "acme\ud800",
    "too long": "a" * 64,
    "empty": "",
    "a scheme": "https://acme",
    "an IPv4 address": "127.0.0.1",
    "an IPv6 address": "[::1]",
}
HOSTILE_ORIGINS = {
    "another domain": "https://evil.com",
    "a lookalike suffix": "https://evilsalesforce.com",
    "the domain as a subdomain": "https://acme.salesforce.com.evil.com",
    "plain http": "http://acme.my.salesforce.com",
    "no scheme": "acme.my.salesforce.com",
    "a scheme-relative URL": "//acme.my.salesforce.com",
    "userinfo": "https://acme.my.salesforce.com@evil.com",
    "userinfo before the domain": "https://evil.com@acme.my.salesforce.com",
    "a fragment hiding the host": "https://evil.com#.salesforce.com",
    "a query hiding the host": "https://evil.com?.salesforce.com",
    "a backslash": "https://evil.com\\.salesforce.com",
    "a port": "https://acme.my.salesforce.com:8443",
    "a path": "https://acme.my.salesforce.com/services",
    "a trailing dot": "https://acme.my.salesforce.com.",
    "a percent-encoded dot": "https://evil%2ecom.salesforce.com",
    "an ideographic full stop": "https://evil\u3002com.salesforce.com",
    "an IDNA A-label": "https://xn--80ak6aa92e.salesforce.com",
    "an IPv4 address": "https://127.0.0.1",
    "an IPv6 address": "https://[::1]",
    "whitespace": "https://acme.my.salesforce.com ",
    "a newline": "https://acme.my.salesforce.com\n",
    "uppercase scheme": "HTTPS://acme.my.salesforce.com",
    "an empty label": "https://acme..salesforce.com",
    "too long": "https://" + "a" * 250 + ".salesforce.com",
}
NOT_STRINGS = {"none": None, "number": 1, "boolean": True, "list": ["acme"], "object": {"a": "b"}, "float": 1e400}


@pytest.mark.parametrize("value", list(HOSTILE_SUBDOMAINS.values()), ids=list(HOSTILE_SUBDOMAINS))
def test_a_subdomain_that_could_leave_the_host_or_carry_structure_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_value(SUBDOMAIN, value)

    assert caught.value.field == "connection_config.subdomain"
    if len(value) > 3:  # the value is never echoed (shorter ones occur in any sentence)
        assert value not in caught.value.message


@pytest.mark.parametrize("value", list(HOSTILE_ORIGINS.values()), ids=list(HOSTILE_ORIGINS))
def test_an_origin_outside_its_domains_or_with_more_than_a_host_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_value(INSTANCE, value)

    assert caught.value.field == "connection_config.instance_url"


@pytest.mark.parametrize("value", list(NOT_STRINGS.values()), ids=list(NOT_STRINGS))
def test_a_value_that_is_not_a_string_is_refused(value: object) -> None:
    for key in (SUBDOMAIN, INSTANCE):
        with pytest.raises(InvalidInput):
            check_value(key, value)


@pytest.mark.parametrize("value", ["acme", "a", "dev-123456", "0shop", "a" * 63, "my-shop-2"])
def test_ordinary_subdomains_are_accepted_as_they_are(value: str) -> None:
    assert check_value(SUBDOMAIN, value) == value


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("https://acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("https://na1.salesforce.com/", "https://na1.salesforce.com"),
        ("https://Acme--Dev.sandbox.my.salesforce.com", "https://acme--dev.sandbox.my.salesforce.com"),
        ("https://salesforce.com", "https://salesforce.com"),
    ],
)
def test_an_origin_under_its_domain_is_accepted_and_normalised(value: str, stored: str) -> None:
    assert check_value(INSTANCE, value) == stored


def test_a_catalog_pattern_narrows_a_kind_but_never_widens_it() -> None:
    narrow = ConfigKey("subdomain", ConfigKind.SUBDOMAIN, pattern=r"dev-[0-9]+")
    wide = ConfigKey("subdomain", ConfigKind.SUBDOMAIN, pattern=r".*")

    assert check_value(narrow, "dev-42") == "dev-42"
    with pytest.raises(InvalidInput):
        check_value(narrow, "acme")
    with pytest.raises(InvalidInput):
        check_value(wide, "acme.evil.com")


@pytest.mark.parametrize("value", ["acme", "my-shop"])
def test_filling_keeps_the_templates_host_path_and_scheme(value: str) -> None:
    url = fill(SHOP.token_url or "", SHOP.connection_config, {"subdomain": value})

    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == (
        "https",
        f"{value}.myshopify.com",
        "/admin/oauth/access_token",
    )
    assert parts.port is None and parts.username is None


@pytest.mark.parametrize("value", list(HOSTILE_SUBDOMAINS.values()), ids=list(HOSTILE_SUBDOMAINS))
def test_filling_checks_each_value_again_so_a_stored_bad_value_never_reaches_a_url(value: str) -> None:
    with pytest.raises(InvalidInput):
        fill(SHOP.api_base_url or "", SHOP.connection_config, {"subdomain": value})


def test_filling_without_the_value_names_the_missing_key() -> None:
    with pytest.raises(InvalidInput) as caught:
        api_base_url(SHOP, {})

    assert caught.value.field == "connection_config.subdomain"


def test_configured_fills_every_oauth_endpoint_and_the_issuer() -> None:
    shop = configured(SHOP, {"subdomain": "acme"})

    assert shop.authorization_url == "https://acme.myshopify.com/admin/oauth/authorize"
    assert shop.token_url == "https://acme.myshopify.com/admin/oauth/access_token"
    assert shop.issuer == "https://acme.myshopify.com"


def test_the_api_base_url_of_an_origin_key_is_the_origin_plus_the_templates_path() -> None:
    url = api_base_url(SALESFORCE, {"instance_url": "https://acme.my.salesforce.com"})

    assert url == "https://acme.my.salesforce.com/services/data"


def test_the_tenant_must_give_every_tenant_key_and_nothing_else() -> None:
    assert tenant_config(SHOP, {"subdomain": "acme"}) == {"subdomain": "acme"}
    with pytest.raises(InvalidInput) as missing:
        tenant_config(SHOP, {})
    with pytest.raises(InvalidInput) as stray:
        tenant_config(SHOP, {"subdomain": "acme", "secret-looking-key": "x"})
    with pytest.raises(InvalidInput) as providers:
        tenant_config(SALESFORCE, {"instance_url": "https://acme.my.salesforce.com"})

    assert missing.value.field == "connection_config.subdomain"
    assert stray.value.field == "connection_config"
    assert "secret-looking-key" not in stray.value.message
    assert providers.value.field == "connection_config"


def test_a_token_response_value_is_checked_like_a_tenants() -> None:
    assert token_response_config(SALESFORCE, {"instance_url": "https://acme.my.salesforce.com"}) == {
        "instance_url": "https://acme.my.salesforce.com"
    }
    for fields in ({}, {"instance_url": "https://evil.com"}, {"instance_url": 42}):
        with pytest.raises(InvalidInput) as caught:
            token_response_config(SALESFORCE, fields)
        assert caught.value.field == "connection_config.instance_url"


TENANT_ONLY = frozenset({ConfigSource.TENANT})
ANY_SOURCE = frozenset(ConfigSource)
MISPLACED = {
    "in the path": ("https://api.example.com/{subdomain}/v1", (SUBDOMAIN,)),
    "in the query": ("https://api.example.com/v1?shop={subdomain}", (SUBDOMAIN,)),
    "as part of a label": ("https://shop-{subdomain}.example.com", (SUBDOMAIN,)),
    "as the registrable domain": ("https://api.{subdomain}.com", (SUBDOMAIN,)),
    "as the top-level domain": ("https://api.example.{subdomain}", (SUBDOMAIN,)),
    "as the whole host": ("https://{subdomain}/v1", (SUBDOMAIN,)),
    "in userinfo": ("https://{subdomain}@api.example.com", (SUBDOMAIN,)),
    "with a port": ("https://{subdomain}.example.com:8443", (SUBDOMAIN,)),
    "on plain http": ("http://{subdomain}.example.com", (SUBDOMAIN,)),
    "an origin mid-URL": ("https://api.example.com/{instance_url}", (INSTANCE,)),
    "an origin as a label": ("https://{instance_url}.example.com", (INSTANCE,)),
    "an origin with another placeholder": ("{instance_url}/{subdomain}", (INSTANCE, SUBDOMAIN)),
    "an undeclared key": ("https://{shop}.example.com", (SUBDOMAIN,)),
}


@pytest.mark.parametrize(("template", "keys"), list(MISPLACED.values()), ids=list(MISPLACED))
def test_a_placeholder_may_stand_only_where_its_kind_allows(template: str, keys: tuple[ConfigKey, ...]) -> None:
    with pytest.raises(TemplateError):
        check_template(template, keys, sources=ANY_SOURCE)


def test_oauth_endpoints_may_not_use_values_that_only_the_token_response_gives() -> None:
    check_template("{instance_url}/services", (INSTANCE,), sources=ANY_SOURCE)
    with pytest.raises(TemplateError):
        check_template("{instance_url}/services/oauth2/token", (INSTANCE,), sources=TENANT_ONLY)


def test_key_declarations_round_trip_and_malformed_ones_are_refused() -> None:
    keys = (SUBDOMAIN, INSTANCE, ConfigKey("org", ConfigKind.SUBDOMAIN, pattern="[a-z]+", description="Org"))

    assert parse_keys(keys_document(keys)) == keys
    bad: list[Any] = [
        [],
        {"Sub": {"kind": "subdomain"}},
        {"sub": {"kind": "path"}},
        {"sub": {"kind": "subdomain", "source": "header"}},
        {"sub": {"kind": "subdomain", "pattern": "("}},
        {"sub": {"kind": "subdomain", "domains": ["example.com"]}},
        {"sub": {"kind": "origin"}},
        {"sub": {"kind": "origin", "domains": ["Example.com"]}},
        {"sub": {"kind": "subdomain", "extra": 1}},
        {f"k{i}": {"kind": "subdomain"} for i in range(9)},
    ]
    for document in bad:
        with pytest.raises(ValueError, match=r"."):
            parse_keys(document)


# -- the catalog ------------------------------------------------------------------------------------------


@pytest.fixture
def raw_document() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8")))


def _entry(document: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(raw for raw in document["providers"] if raw["slug"] == slug)


@pytest.mark.parametrize(
    ("slug", "field", "value"),
    [
        ("shopify", "token_url", "https://api.shopify.com/{subdomain}/token"),
        ("shopify", "api_base_url", "https://{shop}.myshopify.com/admin/api"),
        ("shopify", "authorization_url", "https://{subdomain}.com/admin/oauth/authorize"),
        ("salesforce", "token_url", "{instance_url}/services/oauth2/token"),
        ("salesforce", "connection_config", {"instance_url": {"kind": "origin", "domains": []}}),
        ("openai", "connection_config", {"org": {"kind": "subdomain"}}),
        (
            "jira-basic",
            "connection_config",
            {"subdomain": {"kind": "origin", "source": "token_response", "domains": ["atlassian.net"]}},
        ),
        ("shopify", "token_params", {"grant_type": "client_credentials"}),
    ],
)
def test_the_loader_refuses_a_misplaced_unused_or_unknowable_placeholder(
    raw_document: dict[str, Any], slug: str, field: str, value: object
) -> None:
    _entry(raw_document, slug)[field] = value

    with pytest.raises(InvalidInput) as caught:
        parse_catalog(raw_document)

    assert caught.value.field is not None
    assert caught.value.field.startswith(f"catalog.{slug}.")


def test_shopify_zendesk_and_okta_live_on_the_connections_own_host() -> None:
    catalog = {entry.slug: entry for entry in load_catalog()}
    hosts = {"shopify": "myshopify.com", "zendesk": "zendesk.com", "okta": "okta.com"}

    for slug, domain in hosts.items():
        entry = catalog[slug]
        assert [key.name for key in entry.connection_config] == ["subdomain"]
        for url in (entry.authorization_url, entry.token_url, entry.api_base_url):
            assert url is not None and urlsplit(url).hostname == "{subdomain}." + domain
    assert dict(catalog["shopify"].token_params) == {"expiring": "1"}
    assert catalog["shopify"].scope_separator == ","
    assert catalog["shopify"].pkce is False
    assert catalog["zendesk"].pkce is True
    assert catalog["okta"].issuer == "https://{subdomain}.okta.com"
    assert catalog["okta"].revocation_url == "https://{subdomain}.okta.com/oauth2/v1/revoke"
    assert "offline_access" in catalog["okta"].default_scopes


def test_salesforce_takes_its_api_host_from_the_token_response_and_only_under_salesforce_com() -> None:
    salesforce = next(entry for entry in load_catalog() if entry.slug == "salesforce")

    assert salesforce.connection_config == (
        ConfigKey(
            "instance_url",
            ConfigKind.ORIGIN,
            ConfigSource.TOKEN_RESPONSE,
            domains=("salesforce.com",),
            description=salesforce.connection_config[0].description,
        ),
    )
    assert salesforce.api_base_url == "{instance_url}"
    assert salesforce.token_url == "https://login.salesforce.com/services/oauth2/token"
