"""The proxy's rules without I/O: the path can never leave the base URL (the URL-escape table), which headers
cross in each direction, and how a credential is put on a request."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest

from connvault.errors import InvalidInput
from connvault.models import ApiAuth, ApiAuthStyle, ApiKeyCredentials, AuthType, BasicCredentials, OAuth2Credentials
from connvault.proxy import credentials, headers, paths
from connvault.redacted import Redacted

BASE = "https://api.example.com/v2"

# Every way a path could try to leave the base URL's host or base path. Each is refused, or stays inside.
ESCAPES = {
    "a dot-dot segment": "../admin",
    "a dot-dot deeper down": "users/../../admin",
    "a trailing dot-dot": "users/..",
    "a dot segment": "./users",
    "an encoded dot-dot": "%2e%2e/admin",
    "an upper-case encoded dot-dot": "%2E%2E/admin",
    "a half-encoded dot-dot": ".%2e/admin",
    "a double-encoded dot-dot": "%252e%252e/admin",
    "a triple-encoded dot-dot": "%25252e%25252e/admin",
    "an encoded slash before a dot-dot": "users%2f..%2f..%2fadmin",
    "an encoded backslash": "users%5c..%5cadmin",
    "a backslash": "users\\..\\admin",
    "a backslash alone": "\\\\evil.com/x",
    "an overlong UTF-8 dot": "%c0%ae%c0%ae/admin",
    "a fullwidth dot-dot": "\uff0e\uff0e/admin",
    "an encoded fullwidth dot-dot": "%ef%bc%8e%ef%bc%8e/admin",
    "a fullwidth solidus": "users\uff0f..\uff0fadmin",
    "a dot-dot with a path parameter": "..;/admin",
    "an encoded dot-dot with a path parameter": "%2e%2e;x/admin",
    "a scheme-relative host": "/evil.com/x",
    "an empty segment": "users//admin",
    "an absolute URL": "https://evil.com/x",
    "an absolute URL without slashes": "https:evil.com",
    "userinfo before a host": "user:pass@evil.com",
    "a javascript URL": "javascript:alert(1)",
    "an encoded absolute URL": "https%3a%2f%2fevil.com",
    "a NUL": "users%00/admin",
    "a raw NUL": "users\x00",
    "a newline": "users%0d%0aX-Injected:%201",
    "a raw newline": "users\nx",
    "a C1 control": "users%c2%85",
    "a stray percent": "users%zz",
    "a lone percent": "users%",
    "a raw question mark": "users?admin=1",
    "a raw fragment": "users#x",
    "encoded too many times": "%2525252525252e",
    "empty": "",
    "too long": "a/" * 2100,
}
# What may look odd but stays on the host, under the base path: sent as it is (encoded where it must be).
INSIDE = {
    "a plain path": ("users/me", "/v2/users/me"),
    "a trailing slash": ("users/", "/v2/users/"),
    "an at sign": ("@evil.com/x", "/v2/@evil.com/x"),
    "a colon later on": ("projects/p:run", "/v2/projects/p:run"),
    "an encoded slash inside a segment": ("projects/group%2Fname", "/v2/projects/group%2Fname"),
    "dots inside a name": ("files/a..b.txt", "/v2/files/a..b.txt"),
    "a space": ("files/a b", "/v2/files/a%20b"),
    "unicode": ("caf\u00e9", "/v2/caf%C3%A9"),
    "an encoded question mark": ("a%3Fb", "/v2/a%3Fb"),
    "quotes and brackets": ('a"<>{}|^`', "/v2/a%22%3C%3E%7B%7D%7C%5E%60"),
}


@pytest.mark.parametrize("raw", list(ESCAPES.values()), ids=list(ESCAPES))
def test_a_path_that_could_leave_the_base_in_any_decoding_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        paths.safe_path(raw)

    assert caught.value.field == "path"
    if len(raw) > 3:
        assert raw not in caught.value.message


@pytest.mark.parametrize(("raw", "path"), list(INSIDE.values()), ids=list(INSIDE))
def test_an_odd_path_that_stays_inside_is_sent_on_the_bases_host_under_its_path(raw: str, path: str) -> None:
    url = paths.join(BASE, paths.safe_path(raw))

    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port, parts.username) == ("https", "api.example.com", None, None)
    assert parts.path == path


@pytest.mark.parametrize("raw", list(ESCAPES.values()) + [raw for raw, _ in INSIDE.values()])
def test_whatever_passes_the_path_check_the_url_stays_on_the_base_host(raw: str) -> None:
    try:
        safe = paths.safe_path(raw)
    except InvalidInput:
        return
    for base in (BASE, "https://acme.myshopify.com/admin/api", "https://acme.my.salesforce.com"):
        parts = urlsplit(paths.join(base, safe, paths.safe_query("a=1")))
        assert parts.hostname == urlsplit(base).hostname
        assert parts.path.startswith(urlsplit(base).path + "/")


@pytest.mark.parametrize("unchecked", ["/evil.com/x", "@evil.com#x", "..", "a/../..", "x#frag", "a//b", "./a"])
def test_join_refuses_anything_that_left_its_base_even_if_the_path_check_was_skipped(unchecked: str) -> None:
    with pytest.raises(ValueError, match="left its base"):
        paths.join("https://api.example.com/v2", unchecked)


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("", ""),
        ("a=1&b=x%20y", "a=1&b=x%20y"),
        ("q=a b", "q=a%20b"),
        ("path=/x?y", "path=/x?y"),
        ("k=%C3%A9", "k=%C3%A9"),
    ],
)
def test_a_query_is_sent_as_received_encoded_where_it_must_be(raw: str, sent: str) -> None:
    assert paths.safe_query(raw) == sent


@pytest.mark.parametrize("raw", ["a=%zz", "a=1#frag", "a=\x00", "a=\r\n", "a=" + "x" * 9000])
def test_a_query_that_is_malformed_or_injects_is_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        paths.safe_query(raw)

    assert caught.value.field == "query"


# -- headers ----------------------------------------------------------------------------------------------

RECEIVED = {
    "authorization": "Bearer cv_tenant_key",
    "cookie": "session=tenant",
    "host": "api.connvault.example",
    "content-length": "12",
    "x-forwarded-for": "203.0.113.1",
    "x-amzn-trace-id": "Root=1",
    "user-agent": "tenant-backend",
    "x-custom": "not asked for",
    "accept": "application/json",
    "content-type": "application/json",
    "if-none-match": '"abc"',
    "idempotency-key": "k-1",
    "connvault-proxy-notion-version": "2022-06-28",
    "connvault-proxy-retries": "2",
}


def test_only_listed_headers_and_deliberately_named_ones_are_forwarded() -> None:
    sent = headers.request_headers(RECEIVED, credential_header=None)

    assert sent == {
        "accept": "application/json",
        "content-type": "application/json",
        "if-none-match": '"abc"',
        "idempotency-key": "k-1",
        "notion-version": "2022-06-28",
    }


@pytest.mark.parametrize(
    "name",
    [
        "connvault-proxy-authorization",
        "connvault-proxy-proxy-authorization",
        "connvault-proxy-cookie",
        "connvault-proxy-host",
        "connvault-proxy-content-length",
        "connvault-proxy-transfer-encoding",
        "connvault-proxy-connection",
        "connvault-proxy-x-forwarded-for",
        "connvault-proxy-x-amz-security-token",
        "connvault-proxy-connvault-proxy-x",
        "connvault-proxy-",
        "connvault-proxy-x-shopify-access-token",
    ],
)
def test_a_header_that_carries_credentials_or_framing_may_not_be_forwarded_even_by_name(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        headers.request_headers({name: "x"}, credential_header="x-shopify-access-token")

    assert caught.value.field == "headers.connvault-proxy-*"  # the client's own text is never repeated
    assert caught.value.message == "connvault-proxy-* names a header connvault does not forward"


@pytest.mark.parametrize("name", ["connvault-proxy-x y", "connvault-proxy-a:b", "connvault-proxy-caf\u00e9"])
def test_a_deliberately_forwarded_name_must_be_a_header_name(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        headers.request_headers({name: "x"}, credential_header=None)

    assert caught.value.field == "headers.connvault-proxy-*"


@pytest.mark.parametrize(
    "value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x0bb", "text/\u2603", "x" * 9000]
)
def test_a_forwarded_header_value_cannot_inject_another_header(value: str) -> None:
    with pytest.raises(InvalidInput):
        headers.request_headers({"accept": value}, credential_header=None)


def test_a_value_http_can_carry_is_forwarded_as_it_is() -> None:
    value = "text/plain;\tq=0.5, caf\u00e9"
    assert headers.request_headers({"accept": value}, credential_header=None) == {"accept": value}


def test_responses_keep_everything_but_hop_by_hop_framing_cookies_and_origin_headers() -> None:
    received = [
        ("Content-Type", "application/json"),
        ("Link", '<https://api.example.com/x?page=2>; rel="next"'),
        ("Retry-After", "7"),
        ("X-RateLimit-Remaining", "99"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "10"),
        ("Strict-Transport-Security", "max-age=1"),
        ("Access-Control-Allow-Origin", "*"),
        ("Vary", "Accept"),
        ("Vary", "Origin"),
        ("Connvault-Upstream", "false"),
    ]

    assert headers.response_headers(received) == {
        "content-type": "application/json",
        "link": '<https://api.example.com/x?page=2>; rel="next"',
        "retry-after": "7",
        "x-ratelimit-remaining": "99",
        "vary": "Accept, Origin",
        "connvault-upstream": "true",
    }


# -- credentials ------------------------------------------------------------------------------------------

TOKEN = OAuth2Credentials(Redacted("at-123"), Redacted("rt-456"))
KEY = ApiKeyCredentials(Redacted("sk-789"))
BASIC = BasicCredentials("me@example.com", Redacted("pa:ss"))


@pytest.mark.parametrize(
    ("auth", "held", "header", "query"),
    [
        (ApiAuth(ApiAuthStyle.BEARER), TOKEN, ("authorization", "Bearer at-123"), None),
        (ApiAuth(ApiAuthStyle.BEARER), KEY, ("authorization", "Bearer sk-789"), None),
        (ApiAuth(ApiAuthStyle.HEADER, "x-shopify-access-token"), TOKEN, ("x-shopify-access-token", "at-123"), None),
        (ApiAuth(ApiAuthStyle.HEADER, "authorization", "Token "), KEY, ("authorization", "Token sk-789"), None),
        (ApiAuth(ApiAuthStyle.QUERY, "api_key"), KEY, None, "api_key=sk-789"),
        (ApiAuth(ApiAuthStyle.QUERY, "key"), OAuth2Credentials(Redacted("a&b=c")), None, "key=a%26b%3Dc"),
        (
            ApiAuth(ApiAuthStyle.BASIC),
            BASIC,
            ("authorization", "Basic " + base64.b64encode(b"me@example.com:pa:ss").decode()),
            None,
        ),
        (ApiAuth(ApiAuthStyle.BASIC), KEY, ("authorization", "Basic " + base64.b64encode(b"sk-789:").decode()), None),
    ],
)
def test_the_credential_goes_where_the_provider_takes_it(
    auth: ApiAuth, held: object, header: tuple[str, str] | None, query: str | None
) -> None:
    injection = credentials.inject(auth, held)  # type: ignore[arg-type]

    assert (injection.header, injection.query) == (header, query)
    assert "at-123" not in repr(injection)


@pytest.mark.parametrize(("style", "held"), [(ApiAuthStyle.BASIC, TOKEN), (ApiAuthStyle.BEARER, BASIC)])
def test_a_credential_that_cannot_go_the_providers_way_is_refused(style: ApiAuthStyle, held: object) -> None:
    with pytest.raises(credentials.CredentialMismatch):
        credentials.inject(ApiAuth(style), held)  # type: ignore[arg-type]


def test_without_a_declaration_oauth_and_keys_go_as_bearer_and_basic_providers_as_basic() -> None:
    assert credentials.effective(None, AuthType.OAUTH2).style is ApiAuthStyle.BEARER
    assert credentials.effective(None, AuthType.API_KEY).style is ApiAuthStyle.BEARER
    assert credentials.effective(None, AuthType.BASIC).style is ApiAuthStyle.BASIC


@pytest.mark.parametrize(
    "document",
    [
        {"style": "cookie"},
        {"style": "header"},
        {"style": "header", "name": "Authorization2"},
        {"style": "header", "name": "host"},
        {"style": "query"},
        {"style": "query", "name": "a b"},
        {"style": "bearer", "name": "x"},
        {"style": "basic", "prefix": "x"},
        {"style": "header", "name": "x-key", "prefix": "\r\n"},
        {"style": "bearer", "extra": 1},
        ["bearer"],
    ],
)
def test_a_malformed_api_auth_declaration_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match=r"."):
        credentials.parse_api_auth(document)


def test_api_auth_declarations_round_trip() -> None:
    for auth in (ApiAuth(ApiAuthStyle.HEADER, "x-key", "Token "), ApiAuth(ApiAuthStyle.QUERY, "key"), None):
        assert credentials.parse_api_auth(credentials.api_auth_document(auth)) == auth


@pytest.mark.parametrize(
    ("auth", "held", "echoed"),
    [
        (ApiAuth(ApiAuthStyle.QUERY, "key"), OAuth2Credentials(Redacted("tok/en+1 2345")), "tok%2Fen%2B1%202345"),
        (ApiAuth(ApiAuthStyle.QUERY, "key"), OAuth2Credentials(Redacted("tok/en+1 2345")), "tok%2Fen%2B1+2345"),
        # Python's own quote() (the slash left as it is) and lower-case escapes (outside probe, 2026-11-30)
        (ApiAuth(ApiAuthStyle.QUERY, "key"), OAuth2Credentials(Redacted("tok/en+1 2345")), "tok/en%2B1%202345"),
        (ApiAuth(ApiAuthStyle.QUERY, "key"), OAuth2Credentials(Redacted("tok/en+1 2345")), "tok%2fen%2b1%202345"),
        (ApiAuth(ApiAuthStyle.BEARER), OAuth2Credentials(Redacted("at-12345678")), "at-12345678"),
        (ApiAuth(ApiAuthStyle.BASIC), BasicCredentials("me", Redacted("pa:ss-word")), "pa:ss-word"),
        (ApiAuth(ApiAuthStyle.BASIC), BasicCredentials("me", Redacted("pa:ss-word")), "bWU6cGE6c3Mtd29yZA=="),
        (ApiAuth(ApiAuthStyle.BASIC), ApiKeyCredentials(Redacted("sk-12345678")), "sk-12345678"),
    ],
)
def test_an_answer_header_holding_the_credential_in_any_spelling_is_not_returned(
    auth: ApiAuth, held: object, echoed: str
) -> None:
    injection = credentials.inject(auth, held)  # type: ignore[arg-type]
    received = [("Location", f"https://api.example.com/next?key={echoed}"), ("X-Other", "fine")]

    assert headers.response_headers(received, secrets=injection.marks) == {
        "x-other": "fine",
        "connvault-upstream": "true",
    }


def test_an_answer_header_named_after_the_credential_is_not_returned() -> None:
    """Names were not looked at: a provider echoing the key as ``X-Echo-<key>`` handed it back (outside probe)."""
    injection = credentials.inject(
        ApiAuth(ApiAuthStyle.HEADER, "x-key"), ApiKeyCredentials(Redacted("SK-Live-12345678"))
    )
    received = [("X-Echo-SK-Live-12345678", "1"), ("X-Other", "fine")]

    assert headers.response_headers(received, secrets=injection.marks) == {
        "x-other": "fine",
        "connvault-upstream": "true",
    }


def test_spellings_too_short_to_tell_from_ordinary_text_are_not_looked_for() -> None:
    injection = credentials.inject(ApiAuth(ApiAuthStyle.BEARER), KEY)  # "sk-789"

    assert injection.marks == frozenset()
