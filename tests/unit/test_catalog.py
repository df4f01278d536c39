"""The provider catalog: the YAML parses, holds the providers we promise, and the loader rejects bad entries."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from connvault.catalog.loader import CATALOG_PATH, CatalogEntry, load_catalog, parse_catalog
from connvault.errors import InvalidInput
from connvault.models import AuthType, RevocationScope, ScopeParameter, TokenEndpointAuthMethod, TokenResponseShape

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@pytest.fixture(scope="module")
def catalog() -> dict[str, CatalogEntry]:
    return {entry.slug: entry for entry in load_catalog()}


@pytest.fixture
def raw_document() -> dict[str, Any]:
    """The YAML as plain data, for tests that break one field."""
    return copy.deepcopy(yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8")))


def _entry_named(document: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(raw for raw in document["providers"] if raw["slug"] == slug)


def _rejection(document: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_catalog(document)
    return caught.value


def test_the_catalog_parses_into_at_least_fourteen_uniquely_slugged_entries() -> None:
    entries = load_catalog()

    assert len(entries) >= 14
    slugs = [entry.slug for entry in entries]
    assert len(set(slugs)) == len(slugs)
    assert all(SLUG.match(slug) for slug in slugs)


def test_the_catalog_is_parsed_once_and_cannot_be_changed_by_a_caller() -> None:
    assert load_catalog() is load_catalog()
    assert isinstance(load_catalog(), tuple)
    with pytest.raises(TypeError):
        load_catalog()[0].authorize_params["prompt"] = "none"  # type: ignore[index]


def test_every_promised_provider_is_in_the_catalog(catalog: dict[str, CatalogEntry]) -> None:
    oauth2 = {"google", "github", "slack", "microsoft", "salesforce", "notion", "hubspot", "atlassian"}
    oauth2 |= {"dropbox", "zoom", "linear", "spotify"}

    assert oauth2 <= catalog.keys()
    assert all(catalog[slug].auth_type is AuthType.OAUTH2 for slug in oauth2)
    assert sum(entry.auth_type is AuthType.API_KEY for entry in catalog.values()) >= 2
    assert any(entry.auth_type is AuthType.BASIC for entry in catalog.values())


def test_every_oauth2_entry_has_https_endpoints_and_docs(catalog: dict[str, CatalogEntry]) -> None:
    for entry in catalog.values():
        urls = [entry.docs_url]
        if entry.auth_type is AuthType.OAUTH2:
            assert entry.authorization_url, entry.slug
            assert entry.token_url, entry.slug
            urls += [entry.authorization_url, entry.token_url]
        urls += [url for url in (entry.revocation_url, entry.issuer, entry.discovery_url) if url]
        for url in urls:
            parts = urlsplit(url)
            assert parts.scheme == "https", entry.slug
            assert parts.hostname, entry.slug


def test_api_key_and_basic_entries_carry_no_oauth_settings(catalog: dict[str, CatalogEntry]) -> None:
    for entry in catalog.values():
        if entry.auth_type is AuthType.OAUTH2:
            continue
        assert entry.authorization_url is None
        assert entry.token_url is None
        assert entry.revocation_url is None
        assert entry.default_scopes == ()
        assert dict(entry.authorize_params) == {}
        assert entry.pkce is False
        assert entry.rotates_refresh_tokens is False


def test_google_asks_for_offline_access_with_forced_consent_and_can_revoke(
    catalog: dict[str, CatalogEntry],
) -> None:
    google = catalog["google"]

    assert dict(google.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert google.revocation_url == "https://oauth2.googleapis.com/revoke"
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.rotates_refresh_tokens is False
    assert google.issuer == "https://accounts.google.com"
    # Revoking one token ends the app's whole access for the user: a reconnect must not revoke the old grant.
    assert google.revocation_scope is RevocationScope.AUTHORIZATION
    assert catalog["salesforce"].revocation_scope is RevocationScope.TOKEN


def test_github_refresh_tokens_rotate_and_there_is_no_rfc7009_revocation(
    catalog: dict[str, CatalogEntry],
) -> None:
    github = catalog["github"]

    assert github.token_url == "https://github.com/login/oauth/access_token"
    assert github.rotates_refresh_tokens is True
    assert github.revocation_url is None
    assert github.token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET_POST


def test_slack_reads_the_user_token_from_authed_user_and_joins_scopes_with_commas(
    catalog: dict[str, CatalogEntry],
) -> None:
    slack = catalog["slack"]

    assert slack.token_response_shape is TokenResponseShape.NESTED_AUTHED_USER
    assert slack.scope_separator == ","
    assert slack.token_url == "https://slack.com/api/oauth.v2.access"
    assert slack.scope_parameter is ScopeParameter.USER_SCOPE
    assert slack.default_scopes == ("users:read",)
    others = [entry for entry in catalog.values() if entry.slug != "slack"]
    assert all(entry.token_response_shape is TokenResponseShape.STANDARD for entry in others)


def test_microsoft_uses_the_common_tenant_asks_offline_access_and_rotates(
    catalog: dict[str, CatalogEntry],
) -> None:
    microsoft = catalog["microsoft"]

    assert "/common/" in (microsoft.authorization_url or "")
    assert "/common/" in (microsoft.token_url or "")
    assert "offline_access" in microsoft.default_scopes
    assert microsoft.rotates_refresh_tokens is True


def test_salesforce_does_not_rotate_by_default_and_asks_for_a_refresh_token(
    catalog: dict[str, CatalogEntry],
) -> None:
    salesforce = catalog["salesforce"]

    assert salesforce.rotates_refresh_tokens is False
    assert "refresh_token" in salesforce.default_scopes


def test_notion_authenticates_with_basic_auth_and_asks_for_no_scopes(catalog: dict[str, CatalogEntry]) -> None:
    notion = catalog["notion"]

    assert notion.token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET_BASIC
    assert notion.default_scopes == ()
    assert dict(notion.authorize_params) == {"owner": "user"}


def test_hubspot_posts_its_client_secret(catalog: dict[str, CatalogEntry]) -> None:
    assert catalog["hubspot"].token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET_POST


def test_atlassian_sets_audience_and_consent_asks_offline_access_and_rotates(
    catalog: dict[str, CatalogEntry],
) -> None:
    atlassian = catalog["atlassian"]

    assert dict(atlassian.authorize_params) == {"audience": "api.atlassian.com", "prompt": "consent"}
    assert "offline_access" in atlassian.default_scopes
    assert atlassian.rotates_refresh_tokens is True


def test_dropbox_asks_for_offline_token_access(catalog: dict[str, CatalogEntry]) -> None:
    assert dict(catalog["dropbox"].authorize_params) == {"token_access_type": "offline"}


def test_zoom_linear_and_spotify_have_their_quirks(catalog: dict[str, CatalogEntry]) -> None:
    assert catalog["zoom"].rotates_refresh_tokens is True
    assert catalog["zoom"].token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET_BASIC
    assert catalog["linear"].scope_separator == ","
    assert catalog["spotify"].token_endpoint_auth_method is TokenEndpointAuthMethod.CLIENT_SECRET_BASIC


def test_no_entry_requires_iss_without_an_issuer(catalog: dict[str, CatalogEntry]) -> None:
    assert all(entry.issuer for entry in catalog.values() if entry.require_iss)


def test_every_entry_has_a_notes_comment() -> None:
    text = CATALOG_PATH.read_text(encoding="utf-8")
    blocks = text.split("\n  - slug: ")[:-1]

    assert len(blocks) == len(load_catalog())
    assert all("# notes:" in block.rsplit("\n\n", 1)[-1] for block in blocks)


def test_a_bad_slug_is_rejected_by_position(raw_document: dict[str, Any]) -> None:
    raw_document["providers"][0]["slug"] = "Not A Slug"

    error = _rejection(raw_document)

    assert error.field == "catalog.#1.slug"


def test_a_duplicate_slug_is_rejected(raw_document: dict[str, Any]) -> None:
    raw_document["providers"].append(copy.deepcopy(raw_document["providers"][0]))

    assert _rejection(raw_document).field == "catalog.google.slug"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_url", "http://oauth2.googleapis.com/token"),
        ("authorization_url", "accounts.google.com/o/oauth2/v2/auth"),
        ("scope_separator", ";"),
        ("pkce", "yes"),
        ("refresh_margin_seconds", 86_401),
        ("refresh_margin_seconds", True),
        ("token_endpoint_auth_method", "private_key_jwt"),
        ("token_response_shape", "flat"),
        ("authorize_params", {"state": "fixed"}),
        ("authorize_params", {"include_granted_scopes": True}),
        ("default_scopes", ["email", "email"]),
        ("default_scopes", ["two words"]),
        ("max_concurrent_refreshes", 0),
        ("display_name", ""),
        ("auth_type", "saml"),
        ("revocation_scope", "grant"),
    ],
)
def test_a_bad_field_is_rejected_naming_the_slug_and_field(
    raw_document: dict[str, Any], field: str, value: object
) -> None:
    _entry_named(raw_document, "google")[field] = value

    error = _rejection(raw_document)

    assert error.field == f"catalog.google.{field}"
    assert "google" in error.message
    assert field in error.message


@pytest.mark.parametrize("field", ["authorization_url", "token_url", "pkce", "rotates_refresh_tokens"])
def test_an_oauth2_entry_must_state_its_endpoints_and_behaviour(raw_document: dict[str, Any], field: str) -> None:
    del _entry_named(raw_document, "github")[field]

    assert _rejection(raw_document).field == f"catalog.github.{field}"


def test_an_unknown_field_is_rejected(raw_document: dict[str, Any]) -> None:
    _entry_named(raw_document, "slack")["scope_style"] = "user_scope"

    assert _rejection(raw_document).field == "catalog.slack.scope_style"


def test_an_api_key_entry_may_not_carry_oauth_fields(raw_document: dict[str, Any]) -> None:
    _entry_named(raw_document, "openai")["token_url"] = "https://example.com/token"

    assert _rejection(raw_document).field == "catalog.openai.token_url"


def test_require_iss_needs_an_issuer(raw_document: dict[str, Any]) -> None:
    _entry_named(raw_document, "microsoft")["require_iss"] = True

    assert _rejection(raw_document).field == "catalog.microsoft.require_iss"


def test_a_scope_may_not_contain_the_separator(raw_document: dict[str, Any]) -> None:
    _entry_named(raw_document, "linear")["default_scopes"] = ["read,write"]

    assert _rejection(raw_document).field == "catalog.linear.default_scopes"


def test_a_file_that_is_not_yaml_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text("providers:\n  - slug: [unclosed\n", encoding="utf-8")

    with pytest.raises(InvalidInput) as caught:
        load_catalog(path)

    assert caught.value.field == "catalog"
    assert "line" in caught.value.message


@pytest.mark.parametrize("document", [None, [], {"providers": []}, {"providers": [{}], "extra": 1}])
def test_a_document_of_the_wrong_shape_is_rejected(document: object) -> None:
    with pytest.raises(InvalidInput):
        parse_catalog(document)


def test_the_account_id_comes_from_where_each_provider_names_the_account(catalog: dict[str, CatalogEntry]) -> None:
    assert catalog["google"].account_id_fields == ("id_token.sub",)
    assert catalog["slack"].account_id_fields == ("team.id", "authed_user.id")
    assert catalog["microsoft"].account_id_fields == ("id_token.tid", "id_token.oid")
    assert catalog["salesforce"].account_id_fields == ("id",)
    assert catalog["hubspot"].account_id_fields == ("hub_id",)
    assert catalog["github"].account_id_fields == ()  # the token response names nobody: the tenant sets it


@pytest.mark.parametrize(
    ("slug", "value", "problem"),
    [
        ("google", ["id_token..sub"], "dotted paths"),
        ("google", ["a b"], "dotted paths"),
        ("google", "id_token.sub", "at most 4 paths"),
        ("google", ["a", "b", "c", "d", "e"], "at most 4 paths"),
        ("google", ["a.b.c.d.e"], "dotted paths"),
        ("openai", ["id"], "oauth2 providers only"),
    ],
)
def test_account_id_fields_must_be_a_few_dotted_paths_of_an_oauth_entry(
    raw_document: dict[str, Any], slug: str, value: object, problem: str
) -> None:
    _entry_named(raw_document, slug)["account_id_fields"] = value

    error = _rejection(raw_document)

    assert error.field == f"catalog.{slug}.account_id_fields"
    assert problem in error.message
