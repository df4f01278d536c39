"""OAuthClient against the demo provider over real sockets: every grant, every auth method, every way a
provider fails, and no secret in any resulting exception."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from connvault.errors import ConnvaultError, ProviderRejected, ProviderUnavailable, ReauthRequired
from connvault.models import (
    ClientCredentials,
    OAuth2Tokens,
    Provider,
    ScopeParameter,
    TokenEndpointAuthMethod,
    TokenResponseShape,
)
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.redacted import Redacted
from demo_provider import CLIENT_SECRET_POST, DemoProvider, Fault
from tests.oauth.flows import REDIRECT_URI, Redirect

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

type Entry = Callable[..., Provider]
type Authorize = Callable[..., Redirect]
type Transports = Callable[..., HttpTransport]


def connect(
    oauth: OAuthClient, provider: Provider, credentials: ClientCredentials, authorize: Authorize
) -> OAuth2Tokens:
    redirect = authorize(provider, credentials.client_id, pkce=provider.pkce)
    return oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI, redirect.verifier, NOW)


def refresh_token_of(tokens: OAuth2Tokens) -> str:
    assert tokens.refresh_token is not None
    return tokens.refresh_token.reveal()


# authorize URL ---------------------------------------------------------------------------------------


def test_authorize_url_carries_the_protocol_parameters_and_keeps_the_catalog_query(
    oauth: OAuthClient, catalog_entry: Entry
) -> None:
    provider = catalog_entry(
        authorization_url="https://idp.example/oauth2/authorize?tenant=common",
        authorize_params={"access_type": "offline", "prompt": "consent", "state": "from-catalog"},
        scope_separator=",",
    )

    url = oauth.authorize_url(provider, "cid", REDIRECT_URI, ["read", "write"], "the-state", "the-challenge")

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "idp.example", "/oauth2/authorize")
    assert parse_qs(parts.query) == {
        "tenant": ["common"],
        "access_type": ["offline"],
        "prompt": ["consent"],
        "response_type": ["code"],
        "client_id": ["cid"],
        "redirect_uri": [REDIRECT_URI],
        "state": ["the-state"],
        "scope": ["read,write"],
        "code_challenge": ["the-challenge"],
        "code_challenge_method": ["S256"],
    }


def test_authorize_url_puts_scopes_in_the_providers_scope_parameter(oauth: OAuthClient, catalog_entry: Entry) -> None:
    slack_like = catalog_entry(scope_parameter=ScopeParameter.USER_SCOPE, scope_separator=",")

    params = parse_qs(urlsplit(oauth.authorize_url(slack_like, "cid", REDIRECT_URI, ["a:read", "b"], "s", None)).query)

    assert params["user_scope"] == ["a:read,b"]
    assert "scope" not in params


def test_authorize_url_without_pkce_or_scopes_leaves_them_out(oauth: OAuthClient, catalog_entry: Entry) -> None:
    url = oauth.authorize_url(catalog_entry(pkce=False), "cid", REDIRECT_URI, [], "s", None)

    params = parse_qs(urlsplit(url).query)
    assert "scope" not in params
    assert "code_challenge" not in params
    assert "code_challenge_method" not in params


def test_the_provider_redirects_back_with_a_code_and_the_same_state(
    demo: DemoProvider, catalog_entry: Entry, credentials: ClientCredentials, authorize: Authorize
) -> None:
    demo.configure(send_iss=True)

    redirect = authorize(catalog_entry(), credentials.client_id, ["read", "write"])

    assert redirect.params["state"] == redirect.state
    assert redirect.params["code"]
    assert redirect.params["iss"] == demo.base_url
    (recorded,) = demo.stats().authorizations
    assert recorded.state == redirect.state
    assert recorded.scope == "read write"
    assert recorded.code_challenge is not None


def test_a_denied_authorization_comes_back_as_access_denied(
    demo: DemoProvider, catalog_entry: Entry, credentials: ClientCredentials, authorize: Authorize
) -> None:
    demo.configure(deny_authorization=True)

    redirect = authorize(catalog_entry(), credentials.client_id)

    assert redirect.params == {"state": redirect.state, "error": "access_denied"}


# code exchange ----------------------------------------------------------------------------------------


def test_code_exchange_with_basic_auth_returns_tokens(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    tokens = connect(oauth, catalog_entry(), credentials, authorize)

    assert demo.access_token_is_active(tokens.access_token.reveal())
    assert refresh_token_of(tokens) in demo.stats().live_refresh_tokens
    assert tokens.token_type == "Bearer"
    assert tokens.expires_at == NOW + timedelta(seconds=3600)
    assert tokens.scopes == ("read",)
    assert demo.stats().token_calls == {"authorization_code": 1}


def test_code_exchange_with_post_auth_returns_tokens(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(token_endpoint_auth_method=CLIENT_SECRET_POST)
    provider = catalog_entry(token_endpoint_auth_method=TokenEndpointAuthMethod.CLIENT_SECRET_POST)

    tokens = connect(oauth, provider, credentials, authorize)

    assert demo.access_token_is_active(tokens.access_token.reveal())


def test_basic_auth_form_encodes_an_awkward_client_secret(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, authorize: Authorize
) -> None:
    demo.configure(client_id="id with:colon", client_secret="s3cr:t%2B+&é=")
    credentials = ClientCredentials("id with:colon", Redacted("s3cr:t%2B+&é="))

    tokens = connect(oauth, catalog_entry(), credentials, authorize)

    assert demo.access_token_is_active(tokens.access_token.reveal())


def test_a_public_client_sends_its_id_and_a_verifier(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, authorize: Authorize
) -> None:
    demo.configure(client_secret=None)
    credentials = ClientCredentials(demo.settings.client_id, None)

    tokens = connect(oauth, catalog_entry(), credentials, authorize)

    assert demo.access_token_is_active(tokens.access_token.reveal())


def test_a_client_authenticating_the_wrong_way_is_refused_as_invalid_client(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(token_endpoint_auth_method=CLIENT_SECRET_POST)

    with pytest.raises(ReauthRequired) as caught:
        connect(oauth, catalog_entry(), credentials, authorize)

    assert caught.value.reason == "invalid_client"


def test_a_wrong_client_secret_is_refused_as_invalid_client(
    oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials, authorize: Authorize
) -> None:
    wrong = ClientCredentials(credentials.client_id, Redacted("not-the-secret"))

    with pytest.raises(ReauthRequired) as caught:
        connect(oauth, catalog_entry(), wrong, authorize)

    assert caught.value.reason == "invalid_client"


def test_a_pkce_verifier_that_does_not_match_is_refused(
    oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials, authorize: Authorize
) -> None:
    provider = catalog_entry()
    redirect = authorize(provider, credentials.client_id)

    with pytest.raises(ReauthRequired) as caught:
        oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI, "x" * 43, NOW)

    assert caught.value.reason == "invalid_grant"


def test_a_code_works_once(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry()
    redirect = authorize(provider, credentials.client_id)
    oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI, redirect.verifier, NOW)

    with pytest.raises(ReauthRequired):
        oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI, redirect.verifier, NOW)

    assert demo.stats().code_reuse == 1


def test_a_code_is_bound_to_its_redirect_uri(
    oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials, authorize: Authorize
) -> None:
    provider = catalog_entry()
    redirect = authorize(provider, credentials.client_id)

    with pytest.raises(ReauthRequired):
        oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI + "x", redirect.verifier, NOW)


# refresh ---------------------------------------------------------------------------------------------


def test_refresh_with_rotation_replaces_the_refresh_token(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry(rotates_refresh_tokens=True)
    first = connect(oauth, provider, credentials, authorize)

    second = oauth.refresh(provider, credentials, refresh_token_of(first), NOW)

    assert refresh_token_of(second) != refresh_token_of(first)
    assert demo.stats().live_refresh_tokens == {refresh_token_of(second)}
    assert demo.access_token_is_active(second.access_token.reveal())
    assert demo.stats().refresh_token_reuse == 0


def test_a_rotated_refresh_token_is_dead_and_its_reuse_is_counted(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry(rotates_refresh_tokens=True)
    first = connect(oauth, provider, credentials, authorize)
    oauth.refresh(provider, credentials, refresh_token_of(first), NOW)

    with pytest.raises(ReauthRequired) as caught:
        oauth.refresh(provider, credentials, refresh_token_of(first), NOW)

    assert caught.value.reason == "invalid_grant"
    assert demo.stats().refresh_token_reuse == 1


def test_refresh_without_rotation_answers_no_refresh_token_and_the_old_one_lives_on(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(rotate_refresh_tokens=False)
    provider = catalog_entry()
    first = connect(oauth, provider, credentials, authorize)

    second = oauth.refresh(provider, credentials, refresh_token_of(first), NOW)
    third = oauth.refresh(provider, credentials, refresh_token_of(first), NOW)

    assert second.refresh_token is None
    assert third.access_token != second.access_token
    assert demo.stats().token_calls == {"authorization_code": 1, "refresh_token": 2}


def test_concurrent_refreshes_reach_the_provider_together(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(rotate_refresh_tokens=False, latency_seconds=0.3)
    provider = catalog_entry()
    refresh_token = refresh_token_of(connect(oauth, provider, credentials, authorize))
    barrier = threading.Barrier(8)

    def refresh() -> None:
        barrier.wait()
        oauth.refresh(provider, credentials, refresh_token, NOW)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = demo.stats()
    assert stats.token_calls["refresh_token"] == 8
    assert stats.max_in_flight == 8
    assert stats.in_flight == 0


# provider failures -------------------------------------------------------------------------------------


def test_invalid_grant_requires_reauth(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    demo.inject(Fault.error(400, "invalid_grant"))

    with pytest.raises(ReauthRequired) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "invalid_grant"


def test_an_unknown_refresh_token_requires_reauth(
    oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    with pytest.raises(ReauthRequired):
        oauth.refresh(catalog_entry(), credentials, "rt_never_issued", NOW)


def test_invalid_scope_is_rejected_not_reauth(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    demo.inject(Fault.error(400, "invalid_scope"))

    with pytest.raises(ProviderRejected) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "invalid_scope"


def test_a_server_error_is_transient(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    demo.inject(Fault.server_error())

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "server_error"


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [("7", 7.0), ("Sat, 01 Mar 2025 12:01:00 GMT", 60.0)],
)
def test_rate_limiting_is_transient_with_retry_after(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    retry_after: str,
    seconds: float,
) -> None:
    demo.inject(Fault.rate_limited(retry_after))

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "rate_limited"
    assert caught.value.retry_after == seconds


def test_a_slow_provider_times_out(demo: DemoProvider, catalog_entry: Entry, credentials: ClientCredentials) -> None:
    impatient = HttpTransport(deadline_seconds=0.2)
    demo.inject(Fault.slow(5.0))

    with pytest.raises(ProviderUnavailable) as caught:
        OAuthClient(impatient).refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "unreachable"


def test_a_dropped_connection_is_transient_and_the_pool_recovers(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry()
    tokens = connect(oauth, provider, credentials, authorize)
    demo.inject(Fault.dropped())

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(provider, credentials, refresh_token_of(tokens), NOW)

    assert caught.value.reason == "unreachable"
    assert oauth.refresh(provider, credentials, refresh_token_of(tokens), NOW).refresh_token is not None


def test_a_garbage_body_is_transient(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    demo.inject(Fault.garbage())

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "invalid_response"


def test_an_oversized_body_is_transient(
    demo: DemoProvider, catalog_entry: Entry, credentials: ClientCredentials, make_transport: Transports
) -> None:
    small = make_transport(max_body_bytes=1024)
    demo.inject(Fault(status=200, body=b'{"access_token": "' + b"a" * 4096 + b'"}'))

    with pytest.raises(ProviderUnavailable) as caught:
        OAuthClient(small).refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "response_too_large"


def test_a_provider_that_is_down_is_transient(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    provider = catalog_entry()
    demo.stop()

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(provider, credentials, "rt_anything", NOW)

    assert caught.value.reason == "unreachable"


def test_a_redirect_from_the_token_endpoint_is_not_followed(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    demo.inject(Fault(status=302, headers=(("Location", "https://elsewhere.example/steal"),)))

    with pytest.raises(ProviderUnavailable) as caught:
        oauth.refresh(catalog_entry(), credentials, "rt_anything", NOW)

    assert caught.value.reason == "unexpected_status"
    assert demo.stats().token_calls == {"refresh_token": 1}


def test_a_provider_without_a_token_url_is_a_catalog_error(
    oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    with pytest.raises(ConnvaultError) as caught:
        oauth.refresh(catalog_entry(token_url=None), credentials, "rt_anything", NOW)

    assert caught.value.code == "validation_error"


# provider dialects ---------------------------------------------------------------------------------------


def test_github_style_form_bodies_errors_as_200_and_no_expiry(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(form_encoded=True, errors_as_200=True, expires_in=None)
    provider = catalog_entry()

    tokens = connect(oauth, provider, credentials, authorize)
    with pytest.raises(ReauthRequired) as caught:
        oauth.refresh(provider, credentials, "rt_never_issued", NOW)

    assert demo.access_token_is_active(tokens.access_token.reveal())
    assert tokens.expires_at is None
    assert caught.value.reason == "invalid_grant"


def test_slack_style_nested_user_token(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(nested_authed_user=True, errors_as_200=True)
    provider = catalog_entry(token_response_shape=TokenResponseShape.NESTED_AUTHED_USER)

    tokens = connect(oauth, provider, credentials, authorize)
    refreshed = oauth.refresh(provider, credentials, refresh_token_of(tokens), NOW)
    with pytest.raises(ReauthRequired):
        oauth.refresh(provider, credentials, refresh_token_of(tokens), NOW)

    assert tokens.token_type == "user"
    assert tokens.extra["team"] == {"id": "T0DEMO", "name": "Demo Team"}
    assert tokens.extra["authed_user"] == {"id": "U0DEMO"}
    assert demo.access_token_is_active(refreshed.access_token.reveal())


def test_extra_response_fields_are_kept(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    demo.configure(extra_fields={"instance_url": "https://demo.my.salesforce.com", "signature": "sig"})

    tokens = connect(oauth, catalog_entry(), credentials, authorize)

    assert tokens.extra == {"instance_url": "https://demo.my.salesforce.com"}


# revocation ----------------------------------------------------------------------------------------------


def test_revoking_a_refresh_token_kills_it(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry()
    tokens = connect(oauth, provider, credentials, authorize)

    assert oauth.revoke(provider, credentials, refresh_token_of(tokens), "refresh_token") is True

    assert refresh_token_of(tokens) in demo.stats().revoked
    with pytest.raises(ReauthRequired):
        oauth.refresh(provider, credentials, refresh_token_of(tokens), NOW)


def test_revoking_an_access_token_makes_it_inactive(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
) -> None:
    provider = catalog_entry()
    access_token = connect(oauth, provider, credentials, authorize).access_token.reveal()

    assert oauth.revoke(provider, credentials, access_token, "access_token") is True
    assert not demo.access_token_is_active(access_token)


def test_revoke_is_false_without_a_revocation_url(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    assert oauth.revoke(catalog_entry(revocation_url=None), credentials, "rt_x", "refresh_token") is False
    assert demo.stats().revoked == frozenset()


@pytest.mark.parametrize(
    ("fault", "revoked"),
    [
        (Fault.server_error(), False),
        (Fault.error(400, "unsupported_token_type"), False),
        (Fault.dropped(), False),
        (Fault.garbage(), True),  # RFC 7009 §2.2: any 200 is success; the body is ignored
    ],
    ids=["500", "400", "dropped", "200-garbage"],
)
def test_revoke_is_true_only_for_a_200(
    demo: DemoProvider,
    oauth: OAuthClient,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    fault: Fault,
    revoked: bool,
) -> None:
    demo.inject(fault, path="/revoke")

    assert oauth.revoke(catalog_entry(), credentials, "rt_x", "refresh_token") is revoked


def test_revoke_is_false_when_the_client_is_refused(oauth: OAuthClient, catalog_entry: Entry) -> None:
    wrong = ClientCredentials("demo-client", Redacted("wrong"))

    assert oauth.revoke(catalog_entry(), wrong, "rt_x", "refresh_token") is False


def test_revoke_is_false_when_the_provider_is_down(
    demo: DemoProvider, oauth: OAuthClient, catalog_entry: Entry, credentials: ClientCredentials
) -> None:
    provider = catalog_entry()
    demo.stop()

    assert oauth.revoke(provider, credentials, "rt_x", "refresh_token") is False


# metadata -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_the_provider_publishes_its_metadata(demo: DemoProvider, transport: HttpTransport, path: str) -> None:
    demo.configure(send_iss=True, token_endpoint_auth_method=CLIENT_SECRET_POST)

    response = transport.request("GET", demo.base_url + path)

    metadata = json.loads(response.body)
    assert metadata["issuer"] == demo.base_url
    assert metadata["token_endpoint"] == demo.base_url + "/token"
    assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_post"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


# secrets ----------------------------------------------------------------------------------------------------


def test_no_secret_appears_in_any_failure(
    demo: DemoProvider,
    catalog_entry: Entry,
    credentials: ClientCredentials,
    authorize: Authorize,
    make_transport: Transports,
) -> None:
    oauth = OAuthClient(make_transport(deadline_seconds=0.3))
    provider = catalog_entry()
    redirect = authorize(provider, credentials.client_id)
    tokens = oauth.exchange_code(provider, credentials, redirect.code, REDIRECT_URI, redirect.verifier, NOW)
    refresh_token = refresh_token_of(tokens)
    assert credentials.client_secret is not None
    secrets = [
        credentials.client_secret.reveal(),
        redirect.code,
        redirect.state,
        redirect.verifier,
        refresh_token,
        tokens.access_token.reveal(),
    ]
    echo = json.dumps({"error": refresh_token, "error_description": f"bad {refresh_token} for {redirect.code}"})
    demo.inject(
        Fault(status=400, body=echo.encode()),
        Fault(status=200, body=echo.encode()),
        Fault(status=500, body=echo.encode(), content_type="text/html"),
        Fault.rate_limited(refresh_token),
        Fault.slow(5.0),
        Fault.dropped(),
        Fault.garbage(),
    )
    failures: list[ConnvaultError] = []
    for _ in range(7):
        with pytest.raises(ConnvaultError) as caught:
            oauth.refresh(provider, credentials, refresh_token, NOW)
        failures.append(caught.value)
    for code in (redirect.code, refresh_token):  # an already-used code, a wrong verifier
        with pytest.raises(ConnvaultError) as caught:
            oauth.exchange_code(provider, credentials, code, REDIRECT_URI, refresh_token, NOW)
        failures.append(caught.value)

    assert {type(failure) for failure in failures} == {ProviderRejected, ProviderUnavailable, ReauthRequired}
    for failure in failures:
        shown = " ".join((str(failure), repr(failure), repr(vars(failure)), str(failure.__cause__)))
        for secret in secrets:
            assert secret is not None
            assert secret not in shown, f"a secret leaked into {type(failure).__name__}"
