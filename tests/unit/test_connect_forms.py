"""The connect page's catalog data: credential forms and checks, and the logos shipped with connvault."""

from __future__ import annotations

import base64
import re

import pytest

from connvault.catalog.forms import FormProblem, default_form, parse_credential_check, parse_credential_form
from connvault.catalog.loader import load_catalog, parse_catalog
from connvault.catalog.logos import LOGO_DIR, logo_data_uri
from connvault.errors import InvalidInput
from connvault.models import AuthType, CheckAuth

API_KEY_FORM = {"fields": [{"name": "api_key", "label": "Key", "pattern": "k_[a-z0-9]{8,}"}]}


def test_every_api_key_and_basic_entry_has_a_form_and_a_check_over_https() -> None:
    static = [entry for entry in load_catalog() if entry.auth_type is not AuthType.OAUTH2]

    assert static
    for entry in static:
        assert entry.credential_form is not None, entry.slug
        assert entry.credential_form.help_url and entry.credential_form.help_url.startswith("https://"), entry.slug
        assert entry.credential_check is not None, entry.slug
        assert entry.credential_check.url.startswith("https://"), entry.slug


def test_every_catalog_provider_has_a_shipped_logo_that_can_do_nothing_but_draw() -> None:
    slugs = {entry.slug for entry in load_catalog()}

    assert {path.stem for path in LOGO_DIR.glob("*.svg")} == slugs
    for path in LOGO_DIR.glob("*.svg"):
        svg = path.read_text(encoding="utf-8").lower()
        assert svg.startswith("<svg"), path.name
        for forbidden in ("<script", "href", "foreignobject", " on", "url(", "<!entity", "<style", "@import"):
            assert forbidden not in svg, (path.name, forbidden)


def test_a_provider_without_a_shipped_logo_gets_a_monogram_of_one_letter_of_its_name() -> None:
    uri = logo_data_uri("tenant-own", "<script>&Co")

    svg = base64.b64decode(uri.removeprefix("data:image/svg+xml;base64,")).decode()
    assert ">S</text>" in svg
    assert "<script" not in svg


def test_the_default_forms_ask_for_the_auth_types_credentials() -> None:
    assert [(f.name, f.secret) for f in default_form(AuthType.API_KEY).fields] == [("api_key", True)]
    assert [(f.name, f.secret) for f in default_form(AuthType.BASIC).fields] == [
        ("username", False),
        ("password", True),
    ]


@pytest.mark.parametrize(
    "pattern",
    ["^sk-.+$", "(?=x)y", "a(?<n>b)", r"(a)\1", "[a-z-(]", "[a|b]", "x" * 301, "(unclosed", ""],
)
def test_a_pattern_that_python_and_browsers_would_read_differently_is_refused(pattern: str) -> None:
    with pytest.raises(FormProblem):
        parse_credential_form({"fields": [{"name": "api_key", "label": "Key", "pattern": pattern}]}, AuthType.API_KEY)


@pytest.mark.parametrize(
    ("form", "auth_type"),
    [
        ({"fields": [{"name": "username", "label": "User"}]}, AuthType.API_KEY),
        ({"fields": [{"name": "api_key"}, {"name": "password"}]}, AuthType.API_KEY),
        ({"fields": [{"name": "username"}]}, AuthType.BASIC),
        ({"fields": [{"name": "api_key"}, {"name": "api_key"}]}, AuthType.API_KEY),
        ({"fields": [{"name": "Api Key"}]}, AuthType.API_KEY),
        ({"fields": [{"name": "api_key", "label": "a\nb"}]}, AuthType.API_KEY),
        ({"fields": []}, AuthType.API_KEY),
        ({"fields": [{"name": "api_key"}], "help_url": "http://example.com"}, AuthType.API_KEY),
        ({"fields": [{"name": "api_key"}], "extra": 1}, AuthType.API_KEY),
        ({"fields": [{"name": "api_key"}]}, AuthType.OAUTH2),
    ],
)
def test_a_form_that_does_not_fit_its_auth_type_is_refused(form: dict, auth_type: AuthType) -> None:
    with pytest.raises(FormProblem):
        parse_credential_form(form, auth_type)


def test_a_check_url_may_name_only_patterned_non_secret_fields() -> None:
    form = parse_credential_form(
        {
            "fields": [
                {"name": "api_key"},
                {"name": "site", "label": "Site", "pattern": "[a-z]{1,20}"},
                {"name": "region", "label": "Region"},
            ]
        },
        AuthType.API_KEY,
    )

    assert parse_credential_check({"url": "https://{site}.example.com/me"}, form).auth is CheckAuth.BEARER
    for url in ("https://{api_key}.example.com", "https://{region}.example.com", "https://x/{site!r}", "https://x/{"):
        with pytest.raises(FormProblem):
            parse_credential_check({"url": url}, form)


@pytest.mark.parametrize(
    "check",
    [
        {"url": "http://api.example.com/me"},
        {"url": "https://user:pw@api.example.com/me"},
        {"url": "https://api.example.com/me", "auth": "digest"},
        {"url": "https://api.example.com/me", "auth": "header"},
        {"url": "https://api.example.com/me", "auth": "header", "header": "Host"},
        {"url": "https://api.example.com/me", "auth": "header", "header": "X-Key\r\nEvil: 1"},
        {"url": "https://api.example.com/me", "header": "X-Key"},
        {"auth": "bearer"},
    ],
)
def test_a_check_that_could_send_credentials_anywhere_unexpected_is_refused(check: dict) -> None:
    form = parse_credential_form(API_KEY_FORM, AuthType.API_KEY)

    with pytest.raises(FormProblem):
        parse_credential_check(check, form)


def test_a_catalog_entry_with_a_bad_form_names_the_entry_and_member() -> None:
    document = {
        "providers": [
            {
                "slug": "keyed",
                "display_name": "Keyed",
                "auth_type": "api_key",
                "docs_url": "https://example.com/docs",
                "credential_form": {"fields": [{"name": "api_key", "pattern": "^x$"}]},
            }
        ]
    }

    with pytest.raises(InvalidInput) as error:
        parse_catalog(document)

    assert error.value.field == "catalog.keyed.credential_form.fields[0].pattern"
    assert "^x$" not in error.value.message


def test_the_catalog_patterns_match_what_they_describe() -> None:
    forms = {entry.slug: entry.credential_form for entry in load_catalog() if entry.credential_form}
    samples = {
        "openai": ("api_key", "sk-proj-" + "a1B2_c3-" * 5),
        "stripe": ("api_key", "sk_test_" + "a" * 24),
        "twilio": ("username", "AC" + "0123456789abcdef" * 2),
    }
    for slug, (name, value) in samples.items():
        (field,) = [f for f in forms[slug].fields if f.name == name]
        assert re.fullmatch(field.pattern, value), slug


def test_a_check_url_names_only_the_stored_connection_config_never_a_form_field_for_the_same_host() -> None:
    """An outside probe: jira-basic's check asked ``{site}`` from the end user's form while the connection was
    stored for the tenant's ``subdomain``, so a key could pass the check on one host and be saved for another."""
    (jira,) = [entry for entry in load_catalog() if entry.slug == "jira-basic"]
    assert jira.credential_check is not None and jira.credential_form is not None

    assert "{subdomain}" in jira.credential_check.url
    assert "site" not in {f.name for f in jira.credential_form.fields}
    form = jira.credential_form
    with pytest.raises(FormProblem):
        parse_credential_check({"url": "https://{subdomain}.example.com/me"}, form)
    check = parse_credential_check(
        {"url": "https://{subdomain}.example.com/me"}, form, config_keys=frozenset({"subdomain"})
    )
    assert check.url == "https://{subdomain}.example.com/me"
