"""Discovery metadata that cannot be trusted or used is refused, clearly and without quoting it, and nothing
is stored; metadata that can is read the way RFC 8414 and OpenID Connect Discovery say."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from connvault.errors import InvalidInput, ProviderUnavailable
from connvault.models import TokenEndpointAuthMethod
from connvault.oauth import discovery
from demo_provider import DemoProvider
from tests.custom_providers.conftest import OIDC_PATH, SLUG, Api, DocumentServer, define, discovery_url

MARKER = "metadata-body-marker-7f3a9c"
"""Put into refused documents and registered as a secret: an error body quoting the document fails the test."""


def metadata(issuer: str, **changes: Any) -> dict[str, Any]:
    document = {
        "issuer": issuer,
        "authorization_endpoint": "https://idp.example/authorize",
        "token_endpoint": "https://idp.example/token",
        "revocation_endpoint": "https://idp.example/revoke",
        "code_challenge_methods_supported": ["S256"],
        "comment": MARKER,
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not None}


@pytest.fixture(autouse=True)
def _marker_is_secret(secrets) -> None:
    secrets.add(MARKER)


def refused_field(answer) -> str:
    """The field of a definition refused before any fetch (400 ``validation_error``)."""
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    return error["field"]


def failed_field(answer) -> str:
    """The field of a discovery that failed (issue 13 "Also"): 422 ``discovery_failed``, which the tenant can act on."""
    assert answer.status == 422, answer.body
    error = answer.json()["error"]
    assert error["code"] == "discovery_failed"
    return error["field"]


def assert_nothing_stored(api: Api) -> None:
    assert api.call("GET", "/integrations").json()["items"] == []
    assert SLUG not in {item["slug"] for item in api.call("GET", "/providers").json()["items"]}


def test_a_document_naming_another_issuer_is_refused(tenant_a: Api, idp: DemoProvider) -> None:
    idp.configure(issuer="https://someone-else.example")

    answer = define(tenant_a, idp)

    assert failed_field(answer) == "issuer"
    assert "issuer" in answer.json()["error"]["message"]
    assert_nothing_stored(tenant_a)


def test_a_given_issuer_must_match_exactly(tenant_a: Api, idp: DemoProvider) -> None:
    assert failed_field(define(tenant_a, idp, issuer="https://expected.example")) == "issuer"
    assert define(tenant_a, idp, issuer=idp.base_url).status == 200


@pytest.mark.parametrize("member", ["authorization_endpoint", "token_endpoint"])
def test_a_document_without_a_required_endpoint_is_refused(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, member: str
) -> None:
    url = documents.serve(OIDC_PATH, json.dumps(metadata(documents.base_url, **{member: None})).encode())

    answer = define(tenant_a, idp, discovery_url=url)

    assert failed_field(answer) == member
    assert_nothing_stored(tenant_a)


def test_a_document_without_a_revocation_endpoint_defines_a_provider_that_skips_revocation(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    url = documents.serve(OIDC_PATH, json.dumps(metadata(documents.base_url, revocation_endpoint=None)).encode())
    answer = define(tenant_a, idp, discovery_url=url)
    assert answer.status == 200, answer.body
    assert answer.json()["custom_provider"]["revocation_url"] is None


def test_a_discovered_authorization_endpoint_is_kept_in_one_ascii_spelling_as_a_given_one(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    """It reaches the connect page's Location and Content-Security-Policy headers; discovery's went there raw
    (outside probe, 2026-11-30), while a given ``authorization_url`` was already kept in ASCII."""
    endpoint = documents.base_url + "/authorize/caf\u00e9 x\u2028"
    url = documents.serve(OIDC_PATH, json.dumps(metadata(documents.base_url, authorization_endpoint=endpoint)).encode())

    answer = define(tenant_a, idp, discovery_url=url)

    assert answer.status == 200, answer.body
    assert (
        answer.json()["custom_provider"]["authorization_url"]
        == documents.base_url + "/authorize/caf%C3%A9%20x%E2%80%A8"
    )


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"<html>" + MARKER.encode() + b"</html>", "text/html", "not JSON"),
        (b"\xff\xfe" + MARKER.encode(), "application/json", "not JSON"),
        (json.dumps([MARKER]).encode(), "application/json", "not a JSON object"),
        (json.dumps({"pad": MARKER * 3000}).encode(), "application/json", "larger than"),
        (b"[" * 60_000, "application/json", "not JSON"),  # deeper than the parser goes: a RecursionError, a 500
    ],
    ids=["html", "not-utf8", "array", "oversize", "nested-past-the-parser"],
)
def test_a_body_that_is_not_a_small_json_object_is_refused(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, body: bytes, content_type: str, message: str
) -> None:
    url = documents.serve(OIDC_PATH, body, content_type=content_type)

    answer = define(tenant_a, idp, discovery_url=url)

    assert failed_field(answer) == "discovery_url"
    assert message in answer.json()["error"]["message"]
    assert_nothing_stored(tenant_a)


@pytest.mark.parametrize(
    "changes",
    [
        {"comment": "LONE"},
        {"LONE": MARKER},
        {"extensions": {"tags": [MARKER, "LONE"]}},
        {"token_endpoint": "https://idp.example/LONE"},
    ],
    ids=["value", "key", "nested", "endpoint"],
)
def test_metadata_holding_a_lone_surrogate_is_refused_like_a_body_that_is_not_json(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, changes: dict[str, Any]
) -> None:
    text = json.dumps(metadata(documents.base_url, **changes)).replace("LONE", "\\udc00")
    url = documents.serve(OIDC_PATH, text.encode())

    answer = define(tenant_a, idp, discovery_url=url)

    assert failed_field(answer) == "discovery_url"
    assert "lone UTF-16 surrogate" in answer.json()["error"]["message"]
    assert_nothing_stored(tenant_a)


def test_metadata_with_a_surrogate_pair_escape_is_read(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    text = json.dumps(metadata(documents.base_url, comment="\U0001f600"))
    assert "\\ud83d\\ude00" in text  # the pair's escapes, as a provider would write them
    url = documents.serve(OIDC_PATH, text.encode())

    assert define(tenant_a, idp, discovery_url=url).status == 200


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"token_endpoint": "http://idp.example/token"}, "token_endpoint"),
        ({"authorization_endpoint": ["https://idp.example/authorize"]}, "authorization_endpoint"),
        ({"token_endpoint_auth_methods_supported": "client_secret_basic"}, "token_endpoint_auth_methods_supported"),
        ({"authorization_response_iss_parameter_supported": "yes"}, "authorization_response_iss_parameter_supported"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, "token_endpoint_auth_methods_supported"),
        ({"device_authorization_endpoint": "http://idp.example/device"}, "device_authorization_endpoint"),
        ({"device_authorization_endpoint": "https://169.254.169.254/device"}, "device_authorization_endpoint"),
        ({"token_endpoint": "https://192.0.0.8/t"}, "token_endpoint"),
        ({"revocation_endpoint": "https://[3fff::1]/revoke"}, "revocation_endpoint"),
        ({"token_endpoint": "https://idp.example/token{x}"}, "token_endpoint"),
    ],
    ids=[
        "plain-http-endpoint",
        "endpoint-not-a-string",
        "methods-not-a-list",
        "flag-not-a-bool",
        "no-secret-method",
        "plain-http-device-endpoint",
        "device-endpoint-at-a-blocked-address",
        "token-endpoint-in-ietf-protocol-assignments",
        "revocation-endpoint-in-ipv6-documentation",
        "endpoint-holding-a-placeholder",
    ],
)
def test_members_of_the_wrong_kind_are_refused_by_name(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, changes: dict[str, Any], field: str
) -> None:
    url = documents.serve(OIDC_PATH, json.dumps(metadata(documents.base_url, **changes)).encode())
    assert failed_field(define(tenant_a, idp, discovery_url=url)) == field


def test_a_plain_http_discovery_url_off_loopback_is_refused_before_any_request(
    tenant_a: Api, idp: DemoProvider
) -> None:
    # No network here: a request to example.com would have failed with 503, not 400.
    answer = define(tenant_a, idp, discovery_url="http://example.com/.well-known/openid-configuration")
    assert refused_field(answer) == "custom_provider.discovery_url"
    assert "https" in answer.json()["error"]["message"]


@pytest.mark.parametrize("status", [404, 302, 503, 429])
def test_a_discovery_url_that_does_not_answer_200_is_a_discovery_failure_that_names_no_status(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer, status: int
) -> None:
    url = documents.serve(OIDC_PATH, MARKER.encode(), content_type="text/plain", status=status)
    answer = define(tenant_a, idp, discovery_url=url)
    assert failed_field(answer) in ("discovery_url", "custom_provider.discovery_url")
    assert str(status) not in answer.json()["error"]["message"]
    assert_nothing_stored(tenant_a)


def test_a_discovery_url_nobody_listens_on_is_a_discovery_failure(tenant_a: Api, idp: DemoProvider) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    answer = define(tenant_a, idp, discovery_url=f"http://127.0.0.1:{port}{OIDC_PATH}")
    assert failed_field(answer) == "custom_provider.discovery_url"
    assert answer.json()["error"]["message"] == "discovery failed: could not reach the provider"
    assert_nothing_stored(tenant_a)


def test_a_discovery_url_whose_name_resolves_to_a_blocked_address_is_a_discovery_failure(
    tenant_a: Api, idp: DemoProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connvault import egress

    monkeypatch.setattr(egress, "system_resolver", lambda _host, _port: ["169.254.169.254"])
    monkeypatch.setattr(
        egress.EgressPolicy, "from_settings", classmethod(lambda cls: cls(resolve=egress.system_resolver))
    )
    answer = define(tenant_a, idp, discovery_url=f"https://idp.example{OIDC_PATH}")
    assert failed_field(answer) == "custom_provider.discovery_url"
    assert answer.json()["error"]["message"] == "discovery failed: blocked address"
    assert_nothing_stored(tenant_a)


def test_the_rfc8414_well_known_url_serves_as_well(tenant_a: Api, idp: DemoProvider) -> None:
    answer = define(tenant_a, idp, discovery_url=discovery_url(idp, "/.well-known/oauth-authorization-server"))
    assert answer.status == 200, answer.body
    assert answer.json()["custom_provider"]["issuer"] == idp.base_url


def test_a_url_that_is_not_a_well_known_url_needs_the_issuer(
    tenant_a: Api, idp: DemoProvider, documents: DocumentServer
) -> None:
    url = documents.serve("/metadata.json", json.dumps(metadata("https://issuer.example")).encode())
    assert refused_field(define(tenant_a, idp, discovery_url=url)) == "custom_provider.discovery_url"
    assert define(tenant_a, idp, discovery_url=url, issuer="https://issuer.example").status == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"token_url": "https://idp.example/token"},
        {"pkce": True},
        {"token_endpoint_auth_method": "client_secret_post"},
        {"require_iss": False},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_fields_the_metadata_decides_are_refused_next_to_a_discovery_url(
    tenant_a: Api, idp: DemoProvider, changes: dict[str, Any]
) -> None:
    assert refused_field(define(tenant_a, idp, **changes)) == f"custom_provider.{next(iter(changes))}"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"discovery_url": None}, "custom_provider.authorization_url"),
        ({"discovery_url": None, "authorization_url": "https://idp.example/a"}, "custom_provider.token_url"),
        ({"authorize_params": {"state": "fixed"}}, "custom_provider.authorize_params"),
        ({"authorize_params": {"prompt": "a\nb"}}, "custom_provider.authorize_params"),
        (
            {
                "discovery_url": None,
                "authorization_url": "https://i.example/a",
                "token_url": "https://i.example/t",
                "require_iss": True,
            },
            "custom_provider.issuer",
        ),
    ],
    ids=["no-endpoints", "no-token-url", "reserved-param", "control-character", "require-iss-without-issuer"],
)
def test_incomplete_or_unsafe_definitions_are_refused(
    tenant_a: Api, idp: DemoProvider, changes: dict[str, Any], field: str
) -> None:
    assert refused_field(define(tenant_a, idp, **changes)) == field
    assert_nothing_stored(tenant_a)


EXPLICIT = {
    "authorization_url": "https://i.example/authorize",
    "token_url": "https://i.example/token",
    "revocation_url": "https://i.example/revoke",
    "device_authorization_url": "https://i.example/device",
    "issuer": "https://i.example",
}


@pytest.mark.parametrize("name", [*EXPLICIT, "discovery_url", "api_base_url"])
def test_a_url_holding_a_placeholder_is_refused_naming_the_field(tenant_a: Api, idp: DemoProvider, name: str) -> None:
    """An outside probe: a token_url with ``{x}`` passed definition, then every refresh failed (a custom provider
    declares no connection_config to fill a placeholder, and the OAuth client sends no URL still holding one)."""
    urls = {"discovery_url": None, **EXPLICIT, "api_base_url": "https://i.example/api"}
    if name == "discovery_url":
        urls = {"discovery_url": discovery_url(idp)}
    urls[name] = (urls[name] or "") + "/{x}"

    assert refused_field(define(tenant_a, idp, **urls)) == f"custom_provider.{name}"
    assert_nothing_stored(tenant_a)


@pytest.mark.parametrize(
    ("url", "issuer"),
    [
        ("https://idp.example/.well-known/openid-configuration", "https://idp.example"),
        ("https://idp.example/tenant/.well-known/openid-configuration", "https://idp.example/tenant"),
        ("https://idp.example/.well-known/oauth-authorization-server", "https://idp.example"),
        ("https://idp.example/.well-known/oauth-authorization-server/tenant", "https://idp.example/tenant"),
        ("https://idp.example/.well-known/openid-configuration/tenant", "https://idp.example/tenant"),
        ("https://idp.example/metadata.json", None),
        ("https://idp.example/.well-known/openid-configuration?x=1", None),
    ],
)
def test_the_issuer_a_well_known_url_was_built_from(url: str, issuer: str | None) -> None:
    assert discovery.issuer_of(url) == issuer


def test_an_issuer_with_a_trailing_slash_matches_its_well_known_url() -> None:
    # Auth0 style: issuer "https://x.example/" lives at https://x.example/.well-known/openid-configuration.
    parsed = discovery.parse_metadata(
        metadata("https://x.example/"), discovery._accepted_issuers("https://x.example" + OIDC_PATH, None)
    )
    assert parsed.issuer == "https://x.example/"


@pytest.mark.parametrize(
    ("advertised", "has_secret", "chosen"),
    [
        (None, True, TokenEndpointAuthMethod.CLIENT_SECRET_BASIC),
        (["client_secret_post", "client_secret_basic"], True, TokenEndpointAuthMethod.CLIENT_SECRET_BASIC),
        (["private_key_jwt", "client_secret_post"], True, TokenEndpointAuthMethod.CLIENT_SECRET_POST),
        (["none"], False, TokenEndpointAuthMethod.CLIENT_SECRET_BASIC),
    ],
)
def test_the_auth_method_prefers_basic_then_post(
    advertised: list[str] | None, has_secret: bool, chosen: TokenEndpointAuthMethod
) -> None:
    document = metadata("https://x.example", token_endpoint_auth_methods_supported=advertised)
    parsed = discovery.parse_metadata(document, ("https://x.example",))
    assert parsed.auth_method(has_client_secret=has_secret) is chosen


def test_pkce_needs_s256_not_plain() -> None:
    plain = discovery.parse_metadata(
        metadata("https://x.example", code_challenge_methods_supported=["plain"]), ("https://x.example",)
    )
    absent = discovery.parse_metadata(
        metadata("https://x.example", code_challenge_methods_supported=None), ("https://x.example",)
    )
    assert (plain.pkce, absent.pkce) == (False, False)


def test_errors_are_typed_and_never_quote_the_document(documents: DocumentServer) -> None:
    url = documents.serve(OIDC_PATH, b"not json " + MARKER.encode(), content_type="text/plain")
    with pytest.raises(InvalidInput) as refused:
        discovery.fetch_metadata(url)
    assert MARKER not in str(refused.value)
    down = documents.serve("/down" + OIDC_PATH, b"", status=500)
    with pytest.raises(ProviderUnavailable):
        discovery.fetch_metadata(down, expected_issuer=documents.base_url)
