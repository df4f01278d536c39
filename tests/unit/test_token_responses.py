"""Token responses as providers really send them: JSON or forms, loose types, errors dressed as 200,
Slack's nested user token, and never anything but a connvault error on garbage."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connvault.errors import ConnvaultError, ProviderRejected, ProviderUnavailable, ReauthRequired
from connvault.models import OAuth2Tokens, TokenResponseShape
from connvault.oauth.responses import parse_token_response, subject
from connvault.redacted import Redacted
from connvault.validation import MAX_PROVIDER_TOKEN_LENGTH

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JSON = "application/json; charset=utf-8"
FORM = "application/x-www-form-urlencoded"
STANDARD = TokenResponseShape.STANDARD
NESTED = TokenResponseShape.NESTED_AUTHED_USER


def parse(document: dict[str, Any], shape: TokenResponseShape = STANDARD, status: int = 200) -> OAuth2Tokens:
    return parse_token_response(status, JSON, json.dumps(document).encode(), shape, NOW)


def test_a_complete_standard_response_is_parsed() -> None:
    tokens = parse(
        {
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt-1",
            "id_token": "eyJ.id.token",
            "scope": "openid email",
        }
    )

    assert tokens.access_token.reveal() == "at-1"
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.reveal() == "rt-1"
    assert tokens.id_token is not None
    assert tokens.id_token.reveal() == "eyJ.id.token"
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at == NOW + timedelta(hours=1)
    assert tokens.scopes == ("openid", "email")
    assert tokens.extra == {}


def test_a_minimal_response_leaves_the_unknowns_unknown() -> None:
    tokens = parse({"access_token": "at-1"})

    assert tokens.token_type == "Bearer"
    assert tokens.refresh_token is None
    assert tokens.id_token is None
    assert tokens.expires_at is None
    assert tokens.scopes is None


def test_github_legacy_form_encoded_response_is_parsed() -> None:
    body = b"access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer"

    tokens = parse_token_response(200, FORM, body, STANDARD, NOW)

    assert tokens.access_token.reveal() == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    assert tokens.scopes == ("repo", "gist")
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at is None


def test_a_form_body_with_a_vague_content_type_is_still_read() -> None:
    tokens = parse_token_response(200, "text/plain", b"access_token=at-1&expires_in=60", STANDARD, NOW)

    assert tokens.access_token.reveal() == "at-1"
    assert tokens.expires_at == NOW + timedelta(seconds=60)


def test_json_without_a_content_type_is_still_read() -> None:
    tokens = parse_token_response(200, "", b'{"access_token": "at-1"}', STANDARD, NOW)

    assert tokens.access_token.reveal() == "at-1"


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (3600, 3600),
        ("3600", 3600),
        (" 120 ", 120),
        ("3600.0", 3600),
        (" 59.9 ", 59),
        (1799.9, 1799),
        ("abc", None),
        ("", None),
        ("1e3", None),
        ("-5", None),
        ("0", None),
        ("0.5", None),
        (-5, None),
        (0, None),
        (0.5, None),
        (True, None),
        (False, None),
        (None, None),
        ([3600], None),
        ({"seconds": 3600}, None),
        (float("inf"), None),
        (float("nan"), None),
        (10**30, None),
        (10**400, None),
        (1e300, None),
        (10 * 365 * 86_400 + 1, None),
    ],
)
def test_expires_in_is_read_leniently_and_bad_values_count_as_missing(expires_in: object, seconds: int | None) -> None:
    tokens = parse({"access_token": "at-1", "expires_in": expires_in})

    assert tokens.expires_at == (None if seconds is None else NOW + timedelta(seconds=seconds))


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read write", ("read", "write")),
        ("read,write", ("read", "write")),
        ("read, write", ("read", "write")),
        ("read+write", ("read", "write")),
        ("  read   write ", ("read", "write")),
        (["read", "write"], ("read", "write")),
        (["read", 7, "", None], ("read",)),
        ("", ()),
        (42, None),
        ({"read": True}, None),
    ],
)
def test_scope_is_split_on_any_separator_or_read_as_a_list(scope: object, expected: tuple[str, ...]) -> None:
    assert parse({"access_token": "at-1", "scope": scope}).scopes == expected


@pytest.mark.parametrize(
    ("token_type", "expected"),
    [("bearer", "Bearer"), ("BEARER", "Bearer"), ("Bearer", "Bearer"), ("mac", "mac"), ("DPoP", "DPoP")],
)
def test_token_type_bearer_is_normalised_and_others_kept(token_type: str, expected: str) -> None:
    assert parse({"access_token": "at-1", "token_type": token_type}).token_type == expected


@pytest.mark.parametrize("token_type", [None, "", 5, "two words", "x" * 33])
def test_an_unusable_token_type_becomes_bearer(token_type: object) -> None:
    assert parse({"access_token": "at-1", "token_type": token_type}).token_type == "Bearer"


def test_github_200_with_an_error_body_is_an_error() -> None:
    body = {
        "error": "bad_verification_code",
        "error_description": "The code passed is incorrect or expired.",
        "error_uri": "https://docs.github.com/apps/troubleshooting",
    }

    with pytest.raises(ReauthRequired) as caught:
        parse(body)

    assert caught.value.reason == "bad_verification_code"


def test_slack_ok_false_is_an_error() -> None:
    with pytest.raises(ReauthRequired) as caught:
        parse({"ok": False, "error": "invalid_refresh_token"}, NESTED)

    assert caught.value.reason == "invalid_refresh_token"


def test_ok_false_without_a_code_is_transient() -> None:
    with pytest.raises(ProviderUnavailable):
        parse({"ok": False, "access_token": "at-1"})


SLACK_V2 = {
    "ok": True,
    "app_id": "A0KRD7HC3",
    "authed_user": {
        "id": "U1234",
        "scope": "chat:write",
        "access_token": "xoxe.xoxp-1234",
        "expires_in": 43200,
        "refresh_token": "xoxe-1-user",
        "token_type": "user",
    },
    "scope": "commands,incoming-webhook",
    "token_type": "bot",
    "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    "bot_user_id": "U0KRQLJ9H",
    "refresh_token": "xoxe-1-bot",
    "expires_in": 43200,
    "team": {"name": "Slack Softball Team", "id": "T9TK3CUKW"},
    "enterprise": None,
    "is_enterprise_install": False,
    "incoming_webhook": {
        "channel": "#general",
        "url": "https://hooks.slack.com/TXXXXX/BXXXXX/XXXXXXXXXX",
    },
}


def test_slack_nested_shape_takes_the_user_token_with_its_own_fields() -> None:
    tokens = parse(SLACK_V2, NESTED)

    assert tokens.access_token.reveal() == "xoxe.xoxp-1234"
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.reveal() == "xoxe-1-user"
    assert tokens.scopes == ("chat:write",)
    assert tokens.token_type == "user"
    assert tokens.expires_at == NOW + timedelta(seconds=43200)


def test_slack_nested_shape_keeps_the_non_secret_context_only() -> None:
    extra = parse(SLACK_V2, NESTED).extra

    assert extra["team"] == {"name": "Slack Softball Team", "id": "T9TK3CUKW"}
    assert extra["app_id"] == "A0KRD7HC3"
    assert extra["bot_user_id"] == "U0KRQLJ9H"
    assert extra["authed_user"] == {"id": "U1234"}
    assert extra["enterprise"] is None
    dumped = json.dumps(extra)
    for secret in ("xoxb-", "xoxp-", "xoxe-", "hooks.slack.com"):
        assert secret not in dumped


def test_slack_nested_shape_without_a_user_token_uses_the_top_level() -> None:
    refreshed = {"ok": True, "access_token": "xoxe.xoxp-2", "refresh_token": "xoxe-1-next", "expires_in": 43200}

    tokens = parse(refreshed, NESTED)

    assert tokens.access_token.reveal() == "xoxe.xoxp-2"
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.reveal() == "xoxe-1-next"


def test_the_standard_shape_ignores_a_nested_user_token() -> None:
    assert parse(SLACK_V2).access_token.reveal().startswith("xoxb-")


def test_extra_keeps_salesforce_instance_url_and_drops_secret_looking_fields() -> None:
    extra = parse(
        {
            "access_token": "00D!AQ",
            "instance_url": "https://yourInstance.salesforce.com",
            "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
            "issued_at": "1278448832702",
            "signature": "0CmxinZir53Yex7nE0TD+zMpvIWYGb/bdJh6XfOH6EQ=",
            "api_key": "k",
            "client_secret": "s",
            "auth_code": "c",
            "user_password": "p",
            "refresh_token_expires_in": 15897600,
            "ratio": float("nan"),
            "long": "x" * 2000,
            "list": ["a", "b"],
            "deep": {"level": {"too": "deep"}, "ok": 1},
        }
    ).extra

    assert extra == {
        "instance_url": "https://yourInstance.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P",
        "issued_at": "1278448832702",
        "deep": {"ok": 1},
    }


@pytest.mark.parametrize(
    ("status", "body", "kind", "reason"),
    [
        (400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
         ReauthRequired, "invalid_grant"),
        (401, {"error": "invalid_client"}, ReauthRequired, "invalid_client"),
        (400, {"error": "invalid_scope"}, ProviderRejected, "invalid_scope"),
        (503, {"error": "invalid_grant"}, ProviderUnavailable, "server_error"),
        (429, {}, ProviderUnavailable, "rate_limited"),
    ],
)  # fmt: skip
def test_error_statuses_are_classified(status: int, body: dict[str, Any], kind: type[Exception], reason: str) -> None:
    with pytest.raises(kind) as caught:
        parse(body, status=status)

    assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_an_html_error_page_is_classified_by_status_with_retry_after() -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        parse_token_response(503, "text/html", b"<html>Service Unavailable</html>", STANDARD, NOW, retry_after="30")

    assert caught.value.retry_after == 30.0
    assert caught.value.reason == "server_error"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (JSON, b""),
        (JSON, b"not json"),
        (JSON, b"[1, 2]"),
        (JSON, b'"access_token"'),
        (JSON, b'{"access_token": 12345}'),
        (JSON, b'{"access_token": ""}'),
        (JSON, b'{"token_type": "Bearer"}'),
        ("text/html", b"<html><body>Login</body></html>"),
        ("text/html", b"\xff\xfe\x00garbage"),
        (FORM, b"token_type=bearer"),
        (JSON, b"[" * 100_000),
    ],
)
def test_an_unusable_success_is_a_transient_invalid_response(content_type: str, body: bytes) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        parse_token_response(200, content_type, body, STANDARD, NOW)

    assert caught.value.reason == "invalid_response"


def test_an_error_body_that_echoes_secrets_does_not_leak_into_the_exception() -> None:
    secret = "rt_supersecretvalue_0123456789"
    body = {"error": f"invalid token {secret}", "error_description": f"refresh_token={secret}"}

    with pytest.raises(ProviderRejected) as caught:
        parse(body, status=400)

    assert caught.value.reason == "provider_error"
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value)


def test_parsed_tokens_do_not_show_secrets_in_their_repr() -> None:
    tokens = parse({"access_token": "at-visible?", "refresh_token": "rt-visible?", "id_token": "id-visible?"})

    assert "visible" not in repr(tokens)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)
token_fields = st.sampled_from(
    ["access_token", "refresh_token", "id_token", "expires_in", "scope", "token_type", "error", "ok",
     "authed_user", "team", "instance_url"]
)  # fmt: skip
content_types = st.sampled_from([JSON, FORM, "text/plain", "text/html", ""]) | st.text(max_size=30)


@given(
    status=st.integers(min_value=100, max_value=599),
    content_type=content_types,
    body=st.binary(max_size=512),
    shape=st.sampled_from(list(TokenResponseShape)),
)
def test_arbitrary_bytes_yield_tokens_or_a_connvault_error(
    status: int, content_type: str, body: bytes, shape: TokenResponseShape
) -> None:
    try:
        tokens = parse_token_response(status, content_type, body, shape, NOW)
    except ConnvaultError:
        return
    assert tokens.access_token.reveal()


@given(
    status=st.sampled_from([200, 201, 400, 401, 429, 500]),
    document=st.dictionaries(token_fields | st.text(max_size=10), json_values, max_size=8),
    shape=st.sampled_from(list(TokenResponseShape)),
)
def test_arbitrary_json_documents_yield_tokens_or_a_connvault_error(
    status: int, document: dict[str, Any], shape: TokenResponseShape
) -> None:
    try:
        tokens = parse_token_response(status, JSON, json.dumps(document).encode(), shape, NOW)
    except ConnvaultError:
        return
    assert tokens.access_token.reveal()
    json.dumps(dict(tokens.extra), allow_nan=False)  # extra must be storable as jsonb


# -- the connected account's id (catalog account_id_fields) ------------------------------------------------------


def id_token(claims: dict[str, Any]) -> str:
    """A compact JWS whose signature nobody checks (it came straight from the token endpoint)."""

    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def account_of(document: dict[str, Any], fields: tuple[str, ...], shape: TokenResponseShape = STANDARD) -> str | None:
    tokens = parse_token_response(200, JSON, json.dumps(document).encode(), shape, NOW, account_id_fields=fields)
    return None if tokens.provider_account_id is None else tokens.provider_account_id.reveal()


@pytest.mark.parametrize(
    ("document", "fields", "expected", "shape"),
    [
        ({"id_token": id_token({"sub": "1093"})}, ("id_token.sub",), "1093", STANDARD),
        (
            {"id_token": id_token({"tid": "t-9", "oid": "o-7", "sub": "x"})},
            ("id_token.tid", "id_token.oid"),
            "t-9:o-7",
            STANDARD,
        ),
        (
            {"id": "https://login.salesforce.com/id/00D/005"},
            ("id",),
            "https://login.salesforce.com/id/00D/005",
            STANDARD,
        ),
        ({"hub_id": 62515}, ("hub_id",), "62515", STANDARD),
        ({"workspace_id": "w1", "owner": {"user": {"id": "u1"}}}, ("workspace_id", "owner.user.id"), "w1:u1", STANDARD),
        (
            {"ok": True, "team": {"id": "T1"}, "authed_user": {"id": "U1", "access_token": "xoxp-user"}},
            ("team.id", "authed_user.id"),
            "T1:U1",
            NESTED,
        ),
    ],
    ids=["openid-sub", "microsoft-tid-oid", "salesforce-identity-url", "hubspot-integer", "nested-path", "slack"],
)
def test_the_account_id_is_read_where_the_catalog_says(
    document: dict[str, Any], fields: tuple[str, ...], expected: str, shape: TokenResponseShape
) -> None:
    tokens = parse(
        {"access_token": "at-1", **document} if shape is STANDARD else document, shape
    )  # without fields: nothing is read
    assert tokens.provider_account_id is None
    assert account_of({"access_token": "at-1", **document}, fields, shape) == expected


@pytest.mark.parametrize(
    ("document", "fields"),
    [
        ({}, ("id_token.sub",)),
        ({"id_token": "not-a-jwt"}, ("id_token.sub",)),
        ({"id_token": "a.!!!.c"}, ("id_token.sub",)),
        ({"id_token": id_token({"sub": ""})}, ("id_token.sub",)),
        ({"team": {"id": "T1"}}, ("team.id", "authed_user.id")),
        ({"team": "T1"}, ("team.id",)),
        ({"flag": True}, ("flag",)),
        ({"nested": {"a": 1}}, ("nested",)),
        ({"weird": "line\nbreak"}, ("weird",)),
        ({"huge": "x" * 256}, ("huge",)),
    ],
    ids=[
        "absent",
        "not-a-jwt",
        "bad-base64",
        "empty",
        "one-of-two",
        "not-an-object",
        "bool",
        "object",
        "control",
        "long",
    ],
)
def test_an_account_id_that_is_not_there_or_not_usable_is_none(
    document: dict[str, Any], fields: tuple[str, ...]
) -> None:
    assert account_of({"access_token": "at-1", **document}, fields) is None


def test_the_account_id_is_redacted_and_left_out_of_the_clear_extra_fields() -> None:
    document = {"access_token": "at-1", "user": "acct-7", "team": {"id": "T1", "name": "Acme"}, "instance": "eu"}

    tokens = parse_token_response(
        200, JSON, json.dumps(document).encode(), STANDARD, NOW, account_id_fields=("user", "team.id")
    )

    assert tokens.provider_account_id is not None
    assert tokens.provider_account_id.reveal() == "acct-7:T1"
    assert "acct-7" not in repr(tokens)
    assert tokens.extra == {"team": {"name": "Acme"}, "instance": "eu"}


def test_provider_fields_are_capped_in_bytes_whatever_their_shape() -> None:
    """Issue 23.5: 32 keys of 32 nested keys of 1 KiB strings was a megabyte of metadata per connection."""
    from connvault.oauth.responses import MAX_EXTRA_BYTES

    document = {f"k{i}": {f"n{j}": "x" * 1024 for j in range(32)} for i in range(32)}
    flat = {f"k{i}": "y" * 1000 for i in range(32)}
    for extra_fields in (document, flat):
        tokens = parse_token_response(
            200,
            "application/json",
            json.dumps({"access_token": "at", **extra_fields}).encode(),
            TokenResponseShape.STANDARD,
            NOW,
        )
        assert 0 < len(json.dumps(tokens.extra, ensure_ascii=False).encode()) <= MAX_EXTRA_BYTES


# -- lone UTF-16 surrogates (an outside probe: one in the account id's field made every connect and refresh a 500) --

LONE = "\\udc00"
"""A lone low surrogate as JSON writes it: the escape, not the character (which UTF-8 could not carry)."""


@pytest.mark.parametrize(
    "body",
    [
        '{"access_token": "at1", "token_type": "Bearer", "expires_in": 3600, "user": {"id": "LONE"}}',
        '{"access_token": "at1", "user": {"id": "u1", "LONE": "x"}}',
        '{"access_token": "at1", "user": {"id": "u1", "teams": [["ok", "LONE"]]}}',
        '{"access_token": "at1", "user": {"id": "LONE\\ud800"}}',
        '{"access_token": "at1", "LONE": {"user": {"id": "u1"}}, "user": {"id": "u2", "tags": {"LONE": 1}}}',
    ],
    ids=["value", "key", "nested-array", "halves-in-the-wrong-order", "top-level-key"],
)
def test_members_holding_a_lone_surrogate_are_dropped_and_the_rest_is_read(body: str) -> None:
    tokens = parse_token_response(
        200, JSON, body.replace("LONE", LONE).encode(), STANDARD, NOW, account_id_fields=("user.id",)
    )

    assert tokens.access_token.reveal() == "at1"
    for text in (json.dumps(dict(tokens.extra), ensure_ascii=False), *(tokens.scopes or ())):
        text.encode("utf-8")  # storable: nothing left that UTF-8 cannot carry
    if tokens.provider_account_id is not None:
        tokens.provider_account_id.reveal().encode("utf-8")


def test_an_account_id_field_holding_a_lone_surrogate_is_no_account_id() -> None:
    body = '{"access_token": "at1", "user": {"id": "' + LONE + '"}, "team": "T1"}'

    tokens = parse_token_response(200, JSON, body.encode(), STANDARD, NOW, account_id_fields=("user.id",))

    assert tokens.provider_account_id is None
    assert tokens.extra == {"team": "T1"}


@pytest.mark.parametrize(
    "body",
    ['{"access_token": "at' + LONE + '"}', '{"access_token": ["at1", "' + LONE + '"]}', '{"' + LONE + '": "at1"}'],
    ids=["in-the-token", "beside-it-in-an-array", "as-a-key"],
)
def test_an_access_token_holding_a_lone_surrogate_is_an_invalid_response(body: str) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        parse_token_response(200, JSON, body.encode(), STANDARD, NOW)
    assert caught.value.reason == "invalid_response"


def test_an_id_token_whose_claims_hold_a_lone_surrogate_names_no_account() -> None:
    payload = base64.urlsafe_b64encode(('{"sub": "' + LONE + '"}').encode()).decode().rstrip("=")
    body = json.dumps({"access_token": "at1", "id_token": f"h.{payload}.s"})

    tokens = parse_token_response(200, JSON, body.encode(), STANDARD, NOW, account_id_fields=("id_token.sub",))

    assert tokens.provider_account_id is None


def test_a_surrogate_pair_escape_is_one_character_and_is_kept() -> None:
    body = r'{"access_token": "at1", "user": {"id": "u\ud83d\ude00"}, "team_name": "Acme \ud83d\ude00"}'

    tokens = parse_token_response(200, JSON, body.encode(), STANDARD, NOW, account_id_fields=("user.id",))

    assert tokens.provider_account_id is not None
    assert tokens.provider_account_id.reveal() == "u\U0001f600"
    assert tokens.extra == {"team_name": "Acme \U0001f600"}


# -- tokens a header cannot carry, and scopes beyond reason (two outside probes, 2026-11-30) --------------------


@pytest.mark.parametrize(
    "token",
    ["AT_\r\nX-Injected: 1", "AT_\ntoken", "AT_\ttoken", "AT_\u2028_tok", "AT_\U0001f600_tok", "é", "x" * 16_385],
    ids=["crlf-header", "lf", "tab", "line-separator", "emoji", "latin-1", "past-16-KiB"],
)
def test_an_access_token_no_header_can_carry_as_it_came_is_an_invalid_response(token: str) -> None:
    """RFC 6749 A.12: printable ASCII. Stored, a line break became a 500 on every proxied call (and a header
    injection for whoever else sends it)."""
    with pytest.raises(ProviderUnavailable) as caught:
        parse({"access_token": token})
    assert caught.value.reason == "invalid_response"


def test_a_refresh_token_no_header_can_carry_is_none_and_the_access_token_is_kept() -> None:
    tokens = parse({"access_token": "at-1 with a space is printable", "refresh_token": "rt\r\n"})

    assert tokens.access_token.reveal() == "at-1 with a space is printable"
    assert tokens.refresh_token is None


def test_granted_scopes_are_oauth_scopes_each_once_and_at_most_a_hundred() -> None:
    many = " ".join(f"s{n % 150}" for n in range(50_000))

    assert parse({"access_token": "at-1", "scope": many}).scopes == tuple(f"s{n}" for n in range(100))
    assert parse({"access_token": "at-1", "scope": ["a", "a", 'b"q', "x" * 257, "é", "c"]}).scopes == ("a", "c")


# -- the ID token ------------------------------------------------------------------------------------------------


def test_an_id_token_up_to_the_token_cap_is_kept() -> None:
    claims = {"sub": "1093", "pad": "x" * 10_000}
    token = id_token(claims)
    token += "A" * (MAX_PROVIDER_TOKEN_LENGTH - len(token))

    tokens = parse({"access_token": "at-1", "id_token": token})

    assert tokens.id_token is not None
    assert tokens.id_token.reveal() == token
    assert subject(tokens.id_token) == "1093"


@pytest.mark.parametrize(
    "value",
    [
        id_token({"sub": "1093"}) + "A" * MAX_PROVIDER_TOKEN_LENGTH,
        "not-a-jwt",
        "a.b",
        "a.b.c.d.e.f",
        "..",
        "eyJ.id token.sig",
        "eyJ.id\r\ntoken.sig",
        "eyJ.ïd.sig",
        "eyJ.id.sig\u0000",
        "",
        42,
        ["eyJ.id.sig"],
    ],
    ids=[
        "past-16-KiB",
        "not-a-jwt",
        "two-parts",
        "six-parts",
        "no-header",
        "space",
        "line-break",
        "non-ascii",
        "nul",
        "empty",
        "number",
        "list",
    ],
)
def test_an_id_token_past_the_cap_or_not_a_jwt_is_dropped_and_the_rest_of_the_answer_kept(value: object) -> None:
    """An outside probe's ~1 MB id tokens were sealed with the tokens and held by the token function's cache of
    opened credentials: 145 MiB over 60 connections. One that is no JWT is of no use either."""
    tokens = parse({"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 60, "id_token": value})

    assert tokens.id_token is None
    assert tokens.access_token.reveal() == "at-1"
    assert tokens.refresh_token is not None
    assert tokens.expires_at == NOW + timedelta(seconds=60)


def test_an_encrypted_id_token_is_kept_and_names_nobody() -> None:
    jwe = "eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVydGV4dA.dGFn"

    tokens = parse({"access_token": "at-1", "id_token": jwe})

    assert tokens.id_token is not None
    assert subject(tokens.id_token) is None


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (id_token({"sub": "alice", "iss": "https://idp.example"}), "alice"),
        (id_token({"iss": "https://idp.example"}), None),
        (id_token({"sub": ""}), None),
        (id_token({"sub": 1093}), None),
        (id_token({"sub": ["alice"]}), None),
        ("a.!!!.c", None),
        (None, None),
    ],
)
def test_the_subject_is_the_id_tokens_sub_when_it_is_a_string(token: str | None, expected: str | None) -> None:
    assert subject(None if token is None else Redacted(token)) == expected
