"""The proxy through the real handlers, against the demo provider's API on 127.0.0.1: the request arrives as
sent (method, path, query, body, allowed headers) with the connection's credential in its place and never the
tenant's; the answer comes back as the provider gave it, less hop-by-hop headers and cookies; a 401 costs one
refresh and one retry; paths that could leave the base never reach the provider.

Every query value and body these tests send is registered as a secret: none may reach a log line.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from connvault import wiring
from connvault.config import get_settings
from connvault.egress import BLOCKED_MESSAGE, EgressPolicy
from connvault.oauth.http import HttpTransport
from connvault.proxy.limits import MAX_RESPONSE_BODY_BYTES
from demo_provider import DemoProvider, Fault
from devserver.events import http_event
from tests.api.conftest import Answer, Api, connect_account, stored_connection
from tests.support.factories import make_tenant, owner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

QUERY_SECRET = "q-value-that-must-not-be-logged-9f2c"
BODY_SECRET = "body-that-must-not-be-logged-71d3"


def proxy(
    api: Api,
    connection_id: str,
    path: str,
    *,
    method: str = "GET",
    query: str = "",
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """A request to ``/connections/{id}/proxy/{path}`` as API Gateway hands it to the proxy function."""
    decision = api.authorize(f"Bearer {api.tenant.api_key.reveal()}")
    event = http_event(
        method,
        f"/connections/{connection_id}/proxy/{path}",
        route_key="ANY /connections/{connection_id}/proxy/{path+}",
        query=query,
        body=body,
        headers={"authorization": f"Bearer {api.tenant.api_key.reveal()}", **(headers or {})},
        tenant_id=decision["context"]["tenant_id"],
    )
    answer = api.invoke("proxy", event)
    for name, value in answer.headers.items():
        api.secrets.check(value, f"the proxied answer's {name} header")
    return answer


def content(answer: Answer) -> bytes:
    """The body the provider sent: the proxy answers in base64, whatever the type."""
    return base64.b64decode(answer.body)


def api_calls(provider: DemoProvider) -> list[Any]:
    return list(provider.stats().api_calls)


@pytest.fixture
def connection(api: Api) -> str:
    return connect_account(api)


# -- what goes out ----------------------------------------------------------------------------------------


def test_a_get_reaches_the_providers_api_with_the_connections_token(
    api: Api, provider: DemoProvider, connection: str, db
) -> None:
    answer = proxy(api, connection, "me")

    assert answer.status == 200, answer.body
    assert json.loads(content(answer)) == {"sub": "demo-user", "name": "Demo User"}
    assert answer.headers["content-type"] == "application/json"
    (call,) = api_calls(provider)
    assert (call.method, call.path, call.credential_via) == ("GET", "/api/me", "bearer")
    stored = stored_connection(db, connection).credentials
    assert call.credential == stored.access_token.reveal()  # type: ignore[union-attr]


def test_method_path_query_and_body_arrive_as_sent(api: Api, provider: DemoProvider, connection: str) -> None:
    api.secrets.add(QUERY_SECRET, BODY_SECRET)
    body = json.dumps({"note": BODY_SECRET}).encode()

    answer = proxy(
        api,
        connection,
        "echo",
        method="PATCH",
        query=f"a=1&b=x%20y&secret={QUERY_SECRET}",
        body=body,
        headers={"content-type": "application/json"},
    )

    assert answer.status == 200, answer.body
    echoed = json.loads(content(answer))
    assert (echoed["method"], echoed["path"]) == ("PATCH", "/api/echo")
    assert echoed["query"] == f"a=1&b=x%20y&secret={QUERY_SECRET}"
    assert echoed["body"] == body.decode()
    assert echoed["headers"]["content-type"] == "application/json"


def test_binary_bodies_cross_both_ways_unchanged(api: Api, provider: DemoProvider, connection: str) -> None:
    body = bytes(range(256)) * 4

    answer = proxy(
        api, connection, "echo", method="PUT", body=body, headers={"content-type": "application/octet-stream"}
    )

    assert answer.status == 200
    (call,) = api_calls(provider)
    assert call.body == body


def test_the_tenants_authorization_and_unlisted_headers_never_reach_the_provider(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    sent = {
        "cookie": "tenant_session=1",
        "x-forwarded-for": "203.0.113.9",
        "x-custom": "not asked for",
        "accept": "application/json",
        "connvault-proxy-notion-version": "2022-06-28",
        "connvault-proxy-x-request-id": "req-42",
    }

    answer = proxy(api, connection, "echo", headers=sent)

    assert answer.status == 200
    (call,) = api_calls(provider)
    assert call.credential != api.tenant.api_key.reveal()
    assert api.tenant.api_key.reveal() not in json.dumps(dict(call.headers))
    assert {"cookie", "x-forwarded-for", "x-custom", "connvault-proxy-notion-version"}.isdisjoint(call.headers)
    assert call.headers["accept"] == "application/json"
    assert call.headers["notion-version"] == "2022-06-28"
    assert call.headers["x-request-id"] == "req-42"


@pytest.mark.parametrize(
    "header",
    [
        {"connvault-proxy-authorization": "Bearer other"},
        {"connvault-proxy-cookie": "a=1"},
        {"connvault-proxy-host": "evil.com"},
        {"connvault-proxy-x-forwarded-host": "evil.com"},
        {"accept": "a\r\nX-Injected: 1"},
    ],
)
def test_a_header_that_may_not_cross_is_a_400_and_nothing_is_sent(
    api: Api, provider: DemoProvider, connection: str, header: dict[str, str]
) -> None:
    answer = proxy(api, connection, "me", headers=header)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"].startswith("headers.")
    assert api_calls(provider) == []


# -- what comes back --------------------------------------------------------------------------------------


def test_status_body_and_safe_headers_come_back_but_no_hop_by_hop_header_or_cookie(api: Api, connection: str) -> None:
    answer = proxy(api, connection, "echo")

    assert answer.status == 200
    names = {name.lower() for name in answer.headers}
    assert "x-ratelimit-remaining" in names
    assert {"set-cookie", "connection", "x-demo-hop", "strict-transport-security", "content-length"}.isdisjoint(names)


def test_pagination_links_and_a_provider_error_status_pass_through(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    page = proxy(api, connection, "items", query="page=2&per_page=20")
    missing = proxy(api, connection, "nothing/here")

    assert page.status == 200
    assert [item["id"] for item in json.loads(content(page))["items"]] == list(range(21, 41))
    assert 'rel="next"' in page.headers["link"] and 'rel="prev"' in page.headers["link"]
    assert missing.status == 404
    assert json.loads(content(missing)) == {"error": "not_found"}


def test_head_requests_get_headers_and_no_body(api: Api, connection: str) -> None:
    answer = proxy(api, connection, "me", method="HEAD")

    assert answer.status == 200
    assert content(answer) == b""


@pytest.mark.parametrize(("status", "header"), [(429, "7"), (503, "12")])
def test_rate_limits_and_unavailability_pass_retry_after_back_and_are_not_retried_unasked(
    api: Api, provider: DemoProvider, connection: str, status: int, header: str
) -> None:
    provider.inject(
        Fault(status=status, body=b'{"error": "slow_down"}', headers=(("Retry-After", header),)), path="/api/me"
    )

    answer = proxy(api, connection, "me")

    assert answer.status == status
    assert answer.headers["retry-after"] == header
    assert len(api_calls(provider)) == 0  # the fault answered before the API saw the call


def test_an_idempotent_request_is_retried_when_the_caller_asks(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    provider.inject(Fault(status=502), Fault(status=503, headers=(("Retry-After", "0"),)), path="/api/me")

    asked = proxy(api, connection, "me", headers={"connvault-proxy-retries": "2"})

    assert asked.status == 200, asked.body
    assert len(api_calls(provider)) == 1


def test_a_post_is_never_retried_and_asking_for_it_is_a_400(api: Api, provider: DemoProvider, connection: str) -> None:
    answer = proxy(api, connection, "echo", method="POST", body=b"{}", headers={"connvault-proxy-retries": "1"})

    assert answer.status == 400
    assert answer.json()["error"]["field"] == "headers.connvault-proxy-retries"
    assert api_calls(provider) == []


@pytest.mark.parametrize(
    "value",
    ["4", "-1", "1.0", "\u0662", "0" * 4300, "0" * 4301, "9" * 5000],
    ids=["four", "negative", "decimal", "arabic-indic-digit", "4300-zeros", "4301-zeros", "5000-nines"],
)
def test_a_retries_header_that_is_not_0_to_3_is_a_400(
    api: Api, provider: DemoProvider, connection: str, value: str
) -> None:
    answer = proxy(api, connection, "me", headers={"connvault-proxy-retries": value})

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["error"]["field"] == "headers.connvault-proxy-retries"
    assert api_calls(provider) == []


def test_an_answer_larger_than_lambda_can_return_is_a_502_not_a_cut_body(
    api: Api, provider: DemoProvider, connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    fits = proxy(api, connection, "bytes", query=f"size={MAX_RESPONSE_BODY_BYTES}")
    too_large = proxy(api, connection, "bytes", query=f"size={MAX_RESPONSE_BODY_BYTES + 1}")
    # The provider's fault: a warning, never an error line that pages whoever runs connvault.
    failed = [r.levelname for r in caplog.records if r.getMessage().startswith("request failed")]

    assert fits.status == 200
    assert len(content(fits)) == MAX_RESPONSE_BODY_BYTES
    assert len(json.dumps({"statusCode": 200, "headers": fits.headers, "body": fits.body})) < 6 * 1024 * 1024
    assert too_large.status == 502
    assert too_large.json()["error"]["code"] == "response_too_large"
    assert failed == ["WARNING"]


def test_headers_are_counted_as_the_lambda_answer_carries_them_escaped_and_all(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    """94 headers of 344 double quotes are 32,618 characters, under the cap as characters, but twice that as the
    JSON the answer travels in: with a body at its own cap, that answer passed 6 MB and Lambda refused it (outside
    probe, 2026-11-30)."""
    answer = proxy(api, connection, "bytes", query=f"size={MAX_RESPONSE_BODY_BYTES}&quoted_headers=94")

    assert answer.status == 502
    assert answer.json()["error"]["code"] == "response_too_large"


# -- 401, refresh, retry ----------------------------------------------------------------------------------


def test_a_401_refreshes_once_retries_once_and_keeps_the_rotated_refresh_token(
    api: Api, provider: DemoProvider, connection: str, db
) -> None:
    before = stored_connection(db, connection).credentials
    provider.expire_access_tokens()

    answer = proxy(api, connection, "me")

    assert answer.status == 200, answer.body
    stats = provider.stats()
    assert stats.token_calls.get("refresh_token") == 1
    assert stats.refresh_token_reuse == 0
    first, second = stats.api_calls
    assert first.credential == before.access_token.reveal()  # type: ignore[union-attr]
    after = stored_connection(db, connection).credentials
    assert second.credential == after.access_token.reveal()  # type: ignore[union-attr]
    assert after.refresh_token.reveal() in stats.live_refresh_tokens  # type: ignore[union-attr]
    assert before.refresh_token.reveal() not in stats.live_refresh_tokens  # type: ignore[union-attr]


def test_a_second_401_right_after_a_refresh_is_passed_on_not_refreshed_again(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    provider.expire_access_tokens()
    assert proxy(api, connection, "me").status == 200
    provider.expire_access_tokens()

    answer = proxy(api, connection, "me")

    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert provider.stats().token_calls.get("refresh_token") == 1


def test_a_401_too_late_for_a_refresh_to_fit_the_deadline_is_passed_on_unrefreshed(
    api: Api, provider: DemoProvider, connection: str, reconfigure: Callable[..., None]
) -> None:
    """An outside probe: an upstream 401 after 23 s, then a refresh with its own 10 s, answered after 33 s, past the
    proxy's 25 s deadline and API Gateway's 30 s. A refresh that cannot fit is not started."""
    settings = get_settings()
    reconfigure(proxy_deadline_seconds=settings.refresh_lease_floor_seconds - 0.5)
    provider.expire_access_tokens()

    answer = proxy(api, connection, "me")

    assert answer.status == 401
    assert provider.stats().token_calls.get("refresh_token") is None


def test_concurrent_401s_cost_at_most_two_refreshes_and_every_caller_gets_through(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    provider.expire_access_tokens()
    answers: list[int] = []

    def call() -> None:
        answers.append(proxy(api, connection, "me").status)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 8
    stats = provider.stats()
    assert 1 <= stats.token_calls.get("refresh_token", 0) <= 2
    assert stats.refresh_token_reuse == 0


def test_a_refused_refresh_after_a_401_is_needs_reauth(api: Api, provider: DemoProvider, connection: str) -> None:
    provider.expire_access_tokens()
    provider.inject(Fault.error(400, "invalid_grant"))

    answer = proxy(api, connection, "me")

    assert answer.status == 409
    assert answer.json()["error"]["code"] == "needs_reauth"


def test_a_refresh_after_a_401_answered_for_another_account_is_needs_reauth_and_its_token_never_sent(
    api: Api, provider: DemoProvider
) -> None:
    """The proxy refreshes through the token route's single flight: an answer whose id token names another end
    user (OpenID Connect Core 12.2) is refused there, so the retry never goes out with that user's token."""
    provider.configure(id_token_subject="alice")
    connection = connect_account(api)
    provider.expire_access_tokens()
    provider.configure(id_token_subject="mallory")

    answer = proxy(api, connection, "me")

    assert answer.status == 409
    assert answer.json()["error"]["code"] == "needs_reauth"
    assert len(api_calls(provider)) == 1  # the 401; no retry
    assert api.call("GET", f"/connections/{connection}").json()["last_error_code"] == "account_changed"
    assert provider.stats().revoked == frozenset()


def test_a_refresh_after_a_401_that_the_provider_refuses_without_killing_the_grant_is_a_502_not_needs_reauth(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    provider.expire_access_tokens()
    provider.inject(Fault(status=404, body=b"not found", content_type="text/plain"))

    answer = proxy(api, connection, "me")

    assert answer.status == 502
    assert answer.json()["error"]["code"] == "provider_error"
    shown = api.call("GET", f"/connections/{connection}").json()
    assert (shown["status"], shown["refresh_failures"], shown["last_error_code"]) == ("active", 1, "http_404")


# -- credential styles ------------------------------------------------------------------------------------


def install_static(db, provider: DemoProvider, slug: str, auth_type: str, api_auth: dict[str, str]) -> None:
    with owner(db) as connection:
        connection.run(
            "INSERT INTO providers (slug, display_name, auth_type, api_base_url, api_auth)"
            " VALUES (:s, :s, :t, :u, CAST(:a AS jsonb)) ON CONFLICT (slug) WHERE tenant_id IS NULL DO UPDATE"
            " SET auth_type = EXCLUDED.auth_type, api_base_url = EXCLUDED.api_base_url, api_auth = EXCLUDED.api_auth",
            s=slug,
            t=auth_type,
            u=f"{provider.base_url}/api",
            a=json.dumps(api_auth),
        )


@pytest.mark.parametrize(
    ("auth_type", "api_auth", "via"),
    [
        ("api_key", {}, "bearer"),
        ("api_key", {"style": "header", "name": "x-demo-key"}, "header"),
        ("api_key", {"style": "query", "name": "api_key"}, "query"),
        ("api_key", {"style": "basic"}, "basic"),
        ("basic", {}, "basic"),
    ],
)
def test_static_credentials_go_where_the_provider_takes_them(
    api: Api, provider: DemoProvider, db, auth_type: str, api_auth: dict[str, str], via: str
) -> None:
    key = "sk-demo-" + uuid4().hex
    api.secrets.add(key)
    provider.add_api_key(key)
    provider.add_basic_user("me@example.com", key)
    install_static(db, provider, "demo-static", auth_type, api_auth)
    body = {"provider": "demo-static", "end_user_id": "u"}
    body |= {"api_key": key} if auth_type == "api_key" else {"username": "me@example.com", "password": key}
    created = api.call("POST", "/connections", body=body)
    assert created.status == 201, created.body

    answer = proxy(api, created.json()["id"], "me", query="x=1")

    assert answer.status == 200, answer.body
    (call,) = api_calls(provider)
    assert call.credential_via == via
    expected = {"api_key": key, "basic": f"{key}:"} if auth_type == "api_key" else {"basic": f"me@example.com:{key}"}
    assert call.credential == expected.get(via, key)


def test_a_query_carrying_the_credentials_parameter_is_refused(api: Api, provider: DemoProvider, db) -> None:
    api.secrets.add("sk-demo-query-0123456789")
    provider.add_api_key("sk-demo-query-0123456789")
    install_static(db, provider, "demo-query", "api_key", {"style": "query", "name": "api_key"})
    created = api.call(
        "POST",
        "/connections",
        body={"provider": "demo-query", "end_user_id": "u", "api_key": "sk-demo-query-0123456789"},
    ).json()

    answer = proxy(api, created["id"], "me", query="api_key=mine")

    assert answer.status == 400
    assert answer.json()["error"]["field"] == "query"
    assert api_calls(provider) == []


def test_a_401_on_an_api_key_connection_is_passed_on(api: Api, provider: DemoProvider, db) -> None:
    api.secrets.add("sk-demo-unknown-0123456789")
    install_static(db, provider, "demo-key", "api_key", {})
    created = api.call(
        "POST",
        "/connections",
        body={"provider": "demo-key", "end_user_id": "u", "api_key": "sk-demo-unknown-0123456789"},
    ).json()

    answer = proxy(api, created["id"], "me")

    assert answer.status == 401
    assert provider.stats().token_calls == {}


def test_an_answer_header_echoing_the_credential_is_not_passed_back(api: Api, provider: DemoProvider, db) -> None:
    # Given a provider that takes its key in the query and redirects with the request's URL in Location
    key = "sk-demo-" + uuid4().hex
    api.secrets.add(key)
    provider.add_api_key(key)
    install_static(db, provider, "demo-query", "api_key", {"style": "query", "name": "api_key"})
    created = api.call("POST", "/connections", body={"provider": "demo-query", "end_user_id": "u", "api_key": key})
    echoed = (
        ("Location", f"{provider.base_url}/api/v2/me?api_key={key}"),
        ("X-Request-Url", f"/api/me?x=1&api_key={key}"),
        ("X-Kept", "no credential here"),
    )
    provider.inject(Fault(status=301, headers=echoed), path="/api/me")

    # When the tenant calls it through the proxy
    answer = proxy(api, created.json()["id"], "me", query="x=1")

    # Then the redirect comes back unfollowed, less every header that holds the key
    assert answer.status == 301
    assert "location" not in answer.headers and "x-request-url" not in answer.headers
    assert answer.headers["x-kept"] == "no credential here"


@pytest.mark.parametrize("api_auth", [{}, {"style": "header", "name": "x-demo-key"}], ids=["bearer", "header"])
def test_an_api_key_no_header_can_carry_is_a_400_not_a_500(
    api: Api, provider: DemoProvider, db, api_auth: dict[str, str]
) -> None:
    """Stored as the tenant gave it (a query or basic style could send it), but never put in a header it cannot be:
    ``http.client`` failed to encode it, a 500 on every call (an outside probe)."""
    key = "sk-\u2028-\U0001f600-" + uuid4().hex
    api.secrets.add(key)
    install_static(db, provider, "demo-key", "api_key", api_auth)
    created = api.call("POST", "/connections", body={"provider": "demo-key", "end_user_id": "u", "api_key": key})
    assert created.status == 201, created.body

    answer = proxy(api, created.json()["id"], "me")

    assert answer.status == 400
    assert answer.json()["error"]["field"] == "connection_id"
    assert api_calls(provider) == []


@pytest.mark.parametrize("status", [101, 102, 199, 600, 999])
def test_an_answer_without_a_final_status_is_a_502(
    api: Api, provider: DemoProvider, connection: str, status: int
) -> None:
    """A 1xx passed on as final left the client waiting for the real answer (curl: empty reply), a 101 announces a
    protocol switch, and API Gateway answers its own 500 for a status past 599."""
    provider.inject(Fault(status=status), path="/api/me")

    answer = proxy(api, connection, "me")

    assert answer.status == 502
    assert answer.json()["error"]["code"] == "provider_error"


def test_an_answer_header_no_header_may_hold_is_not_passed_back(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    sent = (("X-Nul", "a\x00b"), ("X-Vertical-Tab", "a\x0bb"), ("X-Kept", "fine"))
    provider.inject(Fault(status=200, headers=sent), path="/api/me")

    answer = proxy(api, connection, "me")

    assert answer.status == 200
    assert "x-nul" not in answer.headers and "x-vertical-tab" not in answer.headers
    assert answer.headers["x-kept"] == "fine"


# -- redirects, egress, time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    ["{base}/api/echo", "http://169.254.169.254/latest/meta-data/", "https://elsewhere.example/api/me"],
)
def test_a_redirect_is_passed_back_and_never_followed(
    api: Api, provider: DemoProvider, connection: str, location: str
) -> None:
    target = location.format(base=provider.base_url)
    provider.inject(Fault(status=302, headers=(("Location", target),)), path="/api/me")

    answer = proxy(api, connection, "me", headers={"connvault-proxy-retries": "3"})

    assert answer.status == 302
    assert answer.headers["location"] == target
    assert answer.headers["connvault-upstream"] == "true"
    assert api_calls(provider) == []  # not even the provider's own /api/echo was called


def test_every_call_goes_through_the_egress_guard_and_a_blocked_address_is_not_retried(
    api: Api, provider: DemoProvider, connection: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the proxy's transport with the deployed policy: loopback (the demo provider) is not public
    strict = HttpTransport(5.0, policy=EgressPolicy(allow_insecure_loopback=False))
    monkeypatch.setattr(wiring, "get_proxy_transport", lambda: strict)

    answer = proxy(api, connection, "me", headers={"connvault-proxy-retries": "3"})

    assert answer.status == 503
    assert answer.json()["error"]["message"] == BLOCKED_MESSAGE
    assert "connvault-upstream" not in answer.headers
    assert api_calls(provider) == []
    (record,) = [r for r in caplog.records if r.getMessage() == "proxied"]
    assert record.attempts == 1  # type: ignore[attr-defined]
    strict.close()


@pytest.fixture
def one_second_deadline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A proxy deadline of one second; the settings cache is cleared on the way in and out, so nobody else
    reads it."""
    monkeypatch.setenv("CONNVAULT_PROXY_DEADLINE_SECONDS", "1")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.usefixtures("one_second_deadline")
def test_a_provider_slower_than_the_deadline_is_a_503_in_time(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    provider.inject(Fault.slow(5.0), path="/api/me")

    started = time.monotonic()
    answer = proxy(api, connection, "me", headers={"connvault-proxy-retries": "3"})
    took = time.monotonic() - started

    assert answer.status == 503
    assert answer.json()["error"]["code"] == "provider_unavailable"
    assert took < 3.0


# -- what is refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../admin",
        "users/../../token",
        "%2e%2e/%2e%2e/token",
        "%252e%252e/token",
        "users%2f..%2f..%2ftoken",
        "a%5c..%5c..%5ctoken",
        "%c0%ae%c0%ae/token",
        "%ef%bc%8e%ef%bc%8e/token",
        "..;/token",
        "https:%2f%2fevil.com",
        "a%00b",
    ],
)
def test_a_path_that_could_leave_the_api_is_a_400_and_reaches_nobody(
    api: Api, provider: DemoProvider, connection: str, path: str
) -> None:
    answer = proxy(api, connection, path)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "path"
    assert api_calls(provider) == []
    assert provider.stats().token_calls.get("refresh_token", 0) == 0


@pytest.mark.parametrize(
    ("path", "query", "method", "body", "field"),
    [
        ("me/\ud800", "", "GET", None, "path"),
        ("me/%41\ud800", "", "GET", None, "path"),
        ("me", "x=\ud800", "GET", None, "query"),
        ("echo", "", "POST", '{"a": "\ud800"}', "body"),
    ],
    ids=["path", "path-escaped", "query", "text-body"],
)
def test_a_lone_surrogate_anywhere_in_the_request_is_a_400_and_reaches_nobody(
    api: Api, provider: DemoProvider, connection: str, path: str, query: str, method: str, body: str | None, field: str
) -> None:
    """It has no UTF-8 form to send on: quoting or encoding it was a 500 (outside probe, 2026-11-30)."""
    answer = proxy(api, connection, path, query=query, method=method, body=body)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    assert api_calls(provider) == []


def test_an_empty_first_segment_matches_no_route(api: Api, provider: DemoProvider, connection: str) -> None:
    answer = proxy(api, connection, "/evil.com/x")

    assert answer.status in (400, 404)
    assert api_calls(provider) == []


def test_another_tenants_connection_and_an_unknown_one_are_404(
    api: Api, provider: DemoProvider, connection: str
) -> None:
    other = make_tenant("Other")
    decision_event = http_event(
        "GET",
        f"/connections/{connection}/proxy/me",
        route_key="ANY /connections/{connection_id}/proxy/{path+}",
        tenant_id=str(other),
    )

    theirs = api.invoke("proxy", decision_event)
    unknown = proxy(api, str(uuid4()), "me")

    assert (theirs.status, unknown.status) == (404, 404)
    assert api_calls(provider) == []


def test_a_method_the_proxy_does_not_forward_is_refused(api: Api, connection: str) -> None:
    answer = proxy(api, connection, "me", method="TRACE")

    assert answer.status in (400, 404, 405)


def test_the_proxy_logs_provider_method_status_and_latency_and_never_the_query_or_body(
    api: Api, connection: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.secrets.add(QUERY_SECRET, BODY_SECRET)

    proxy(api, connection, "echo", method="POST", query=f"q={QUERY_SECRET}", body=BODY_SECRET.encode())

    (record,) = [r for r in caplog.records if r.getMessage() == "proxied"]
    assert (record.provider, record.method, record.status) == ("demo", "POST", 200)  # type: ignore[attr-defined]
    assert record.latency_ms > 0  # type: ignore[attr-defined]
    assert "echo" not in json.dumps(record.__dict__, default=str)


def test_a_provider_without_an_api_base_url_is_a_400(api: Api, provider: DemoProvider, db, connection: str) -> None:
    with owner(db) as admin:
        admin.run("UPDATE providers SET api_base_url = NULL WHERE slug = 'demo'")

    answer = proxy(api, connection, "me")

    assert answer.status == 400
    assert api_calls(provider) == []
