"""The OAuth connect flow (issue 4) through the real handlers: connect session, the provider, the callback.

The demo provider is a real HTTP server; ``follow_authorize`` plays the browser. Every state, code, verifier
and token is registered with the secret scanner, and ``Api`` checks every Location header we build for them.
"""

from __future__ import annotations

import hashlib
import threading
from base64 import urlsafe_b64encode
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
from sqlalchemy import event

from connvault.db import engine as db_engine
from connvault.redacted import Redacted
from connvault.services.connect import CallbackParams, complete_connect
from connvault.services.scheduler import run_scheduled
from demo_provider import CLIENT_SECRET_POST, Fault
from devserver.demo_setup import install_demo_provider
from tests.api.conftest import (
    DEMO_RETURN_URL,
    Api,
    connect_account,
    db_state,
    follow_authorize,
    pending_verifiers,
    start_connect,
)
from tests.support.factories import make_oauth_session, make_tenant, owner

CALLBACK_URL = "http://127.0.0.1:3000/oauth/callback"  # CONNVAULT_CALLBACK_URL in tests/conftest.py


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def land(api: Api, **session: object) -> tuple[str, dict[str, str]]:
    """Start a connect and bring the browser back: the callback's query and where the callback sent it."""
    started = start_connect(api, **session)
    assert started.status == 201, started.body
    query = follow_authorize(started.json()["authorize_url"], api.secrets)
    answer = api.callback(query)
    assert answer.status == 302, answer.body
    location = answer.headers["Location"]
    assert location.startswith(DEMO_RETURN_URL + "?")
    return query, query_of(location)


def connection_rows(db) -> list[tuple[object, ...]]:
    with owner(db) as connection:
        return [tuple(row) for row in connection.run("SELECT id, end_user_id, alias FROM connections")]


def token_of(api: Api, connection_id: str) -> str:
    answer = api.call("GET", f"/connections/{connection_id}/token")
    assert answer.status == 200, answer.body
    return answer.json()["access_token"]


# -- the authorize URL -----------------------------------------------------------------------------------


def test_authorize_url_carries_client_redirect_scopes_state_and_s256_challenge(api: Api, provider, db) -> None:
    with owner(db) as connection:
        connection.run(
            "UPDATE providers SET scope_separator = ',', authorize_params = CAST(:p AS jsonb) WHERE slug = 'demo'",
            p='{"access_type": "offline", "prompt": "consent"}',
        )

    started = start_connect(api, scopes=["read", "write", "admin"])

    assert started.status == 201, started.body
    assert started.headers["Cache-Control"] == "no-store"
    url = started.json()["authorize_url"]
    assert url.startswith(f"{provider.base_url}/authorize?")
    params = query_of(url)
    (verifier,) = pending_verifiers(api.tenant.tenant_id)
    expected_challenge = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert params == {
        "access_type": "offline",
        "prompt": "consent",
        "response_type": "code",
        "client_id": provider.settings.client_id,
        "redirect_uri": CALLBACK_URL,
        "state": params["state"],
        "scope": "read,write,admin",
        "code_challenge": expected_challenge,
        "code_challenge_method": "S256",
    }
    assert len(params["state"]) >= 43


def test_default_scopes_are_the_integrations(api: Api) -> None:
    started = start_connect(api)

    assert query_of(started.json()["authorize_url"])["scope"] == "read"


def test_provider_requiring_pkce_checks_the_verifier_at_the_exchange(api: Api, provider) -> None:
    provider.configure(require_pkce=True)

    _, back = land(api)

    assert "connection_id" in back
    assert provider.stats().token_calls == {"authorization_code": 1}


def test_a_code_spliced_into_another_sessions_callback_fails_pkce(api: Api, provider, db) -> None:
    """Same client, same redirect URI: only the verifier tells the two sessions apart at the provider."""
    provider.configure(require_pkce=True)
    first, second = start_connect(api, end_user_id="victim"), start_connect(api, end_user_id="attacker")
    stolen_code = query_of("?" + follow_authorize(first.json()["authorize_url"], api.secrets))["code"]
    own_state = query_of(second.json()["authorize_url"])["state"]

    answer = api.callback(f"code={stolen_code}&state={own_state}")

    assert query_of(answer.headers["Location"]) == {"error": "invalid_grant"}
    assert provider.stats().token_calls == {"authorization_code": 1}
    assert connection_rows(db) == []


# -- client authentication at the token endpoint ----------------------------------------------------------


def test_code_exchange_with_client_secret_basic(api: Api, provider) -> None:
    connection_id = connect_account(api)

    assert provider.access_token_is_active(token_of(api, connection_id))


def test_code_exchange_with_client_secret_post(api: Api, provider, db) -> None:
    provider.configure(token_endpoint_auth_method=CLIENT_SECRET_POST)
    install_demo_provider(db.owner_target, provider)

    connection_id = connect_account(api)

    assert provider.access_token_is_active(token_of(api, connection_id))


def test_client_authenticating_the_wrong_way_is_refused_and_nothing_is_stored(api: Api, provider, db) -> None:
    provider.configure(token_endpoint_auth_method=CLIENT_SECRET_POST)  # the catalog still says basic

    _, back = land(api)

    assert back == {"error": "invalid_client"}
    assert connection_rows(db) == []


# -- single use and expiry of the state -------------------------------------------------------------------


def test_replayed_callback_is_refused_and_writes_nothing(api: Api, db) -> None:
    query, back = land(api)
    assert "connection_id" in back
    before = db_state(db)

    replay = api.callback(query)

    assert replay.status == 400
    assert "invalid_state" in replay.body
    assert replay.headers["Cache-Control"] == "no-store"
    assert db_state(db) == before


def test_unknown_or_missing_state_gets_the_error_page(api: Api) -> None:
    for query in ("code=abcdefgh&state=not-a-state-we-made", "code=abcdefgh", "", "state=" + "x" * 600):
        answer = api.callback(query)
        assert answer.status == 400, query
        assert "invalid_state" in answer.body


def test_expired_state_is_refused_without_calling_the_provider(api: Api, provider, db, reconfigure) -> None:
    reconfigure(connect_session_ttl_seconds=0)

    _, back = land(api)

    assert back == {"error": "expired_state"}
    assert provider.stats().token_calls == {}
    assert db_state(db)["oauth_sessions"] == []
    assert connection_rows(db) == []


def test_access_denied_returns_to_the_tenant_with_the_error_and_consumes_the_session(api: Api, provider, db) -> None:
    provider.configure(deny_authorization=True)

    query, back = land(api)

    assert back == {"error": "access_denied"}
    assert db_state(db)["oauth_sessions"] == []
    assert connection_rows(db) == []
    assert api.callback(query).status == 400


# -- token response shapes --------------------------------------------------------------------------------


def test_form_encoded_token_response(api: Api, provider) -> None:
    provider.configure(form_encoded=True)

    connection_id = connect_account(api)

    assert provider.access_token_is_active(token_of(api, connection_id))


def test_token_without_expires_in_is_stored_without_expiry_and_served(api: Api, provider) -> None:
    provider.configure(expires_in=None)
    connection_id = connect_account(api)

    assert api.call("GET", f"/connections/{connection_id}").json()["expires_at"] is None
    fetched = api.call("GET", f"/connections/{connection_id}/token")
    assert fetched.status == 200, fetched.body
    assert fetched.json()["expires_at"] is None
    assert provider.access_token_is_active(fetched.json()["access_token"])
    assert provider.stats().token_calls == {"authorization_code": 1}


# -- provider failures ------------------------------------------------------------------------------------


def test_provider_error_at_the_exchange_redirects_with_an_error_and_stores_nothing(api: Api, provider, db) -> None:
    provider.inject(Fault.server_error())

    _, back = land(api)

    assert back == {"error": "provider_unavailable"}
    assert connection_rows(db) == []
    assert db_state(db)["oauth_sessions"] == []


def test_provider_timeout_at_the_exchange_redirects_with_an_error_and_stores_nothing(
    api: Api, provider, db, reconfigure
) -> None:
    reconfigure(http_timeout_seconds=0.3)
    provider.inject(Fault.slow(1.5))

    _, back = land(api)

    assert back == {"error": "provider_unavailable"}
    assert connection_rows(db) == []


def test_return_url_outside_the_allow_list_is_refused(api: Api, db) -> None:
    before = db_state(db)

    answer = start_connect(api, return_url="https://evil.example/steal")

    assert answer.status == 400
    assert answer.json()["error"] == {
        "code": "validation_error",
        "message": "return_url is in neither the integration's nor the connect settings' allowed_return_urls",
        "field": "return_url",
    }
    assert db_state(db) == before


@pytest.mark.parametrize(
    ("registered", "requested", "ascii_form"),
    [
        ("https://café.example/back", "https://café.example/back", "https://xn--caf-dma.example/back"),
        (
            "https://app.example/€?to=x\u2028y",
            "https://app.example/€?to=x\u2028y",
            "https://app.example/%E2%82%AC?to=x%E2%80%A8y",
        ),
        ("https://app.example/a\x85b", "https://app.example/a%C2%85b", "https://app.example/a%C2%85b"),
    ],
    ids=["idna_host", "euro_and_line_separator", "nel_as_sent_or_escaped"],
)
def test_return_urls_are_kept_and_compared_in_one_ascii_spelling_and_redirected_to_so(
    api: Api, provider, registered: str, requested: str, ascii_form: str
) -> None:
    """Issue 23.9: non-ASCII return URLs were accepted and written raw into ``Location``."""
    integration = api.call("GET", "/integrations/demo").json()
    saved = api.call(
        "PUT",
        "/integrations/demo",
        body={"client_id": integration["client_id"], "allowed_return_urls": [registered]},
    )
    assert saved.status == 200, saved.body
    assert saved.json()["allowed_return_urls"] == [ascii_form]

    started = start_connect(api, return_url=requested)
    assert started.status == 201, started.body
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    location = landed.headers["Location"]
    assert location.isascii()
    assert location.startswith(ascii_form + ("&" if "?" in ascii_form else "?"))


# -- races and reconnects ---------------------------------------------------------------------------------


def test_two_callbacks_racing_on_one_state_make_exactly_one_connection(api: Api, provider, db) -> None:
    """At the service: one Lambda serves one request at a time, so the race is between processes."""
    provider.configure(latency_seconds=0.2)
    started = start_connect(api)
    params = query_of("?" + follow_authorize(started.json()["authorize_url"], api.secrets))
    callback = CallbackParams(state=Redacted(params["state"]), code=Redacted(params["code"]))
    barrier = threading.Barrier(2)
    results = []

    def finish() -> None:
        barrier.wait()
        results.append(complete_connect(callback, callback_url=CALLBACK_URL))

    threads = [threading.Thread(target=finish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.error or "connected" for r in results) == ["connected", "invalid_state"]
    assert len(connection_rows(db)) == 1
    assert provider.stats().token_calls == {"authorization_code": 1}
    assert provider.stats().code_reuse == 0


def test_reconnect_replaces_the_tokens_of_the_same_connection(api: Api, provider, db) -> None:
    first = connect_account(api, alias="work")
    old_token = token_of(api, first)

    second = connect_account(api, alias="work")

    assert second == first
    assert len(connection_rows(db)) == 1
    new_token = token_of(api, second)
    assert new_token != old_token
    assert provider.access_token_is_active(new_token)


def test_another_alias_makes_another_connection(api: Api, db) -> None:
    assert connect_account(api, alias="work") != connect_account(api, alias="home")
    assert len(connection_rows(db)) == 2


# -- RFC 9207 issuer identification -----------------------------------------------------------------------


@pytest.fixture
def iss_required(api: Api, provider, db) -> Api:
    provider.configure(send_iss=True)
    install_demo_provider(db.owner_target, provider, require_iss=True)
    return api


def test_matching_iss_is_accepted(iss_required: Api) -> None:
    _, back = land(iss_required)

    assert "connection_id" in back


def test_wrong_iss_is_a_mix_up_and_nothing_is_written(iss_required: Api, provider, db) -> None:
    provider.configure(issuer="https://attacker.example")

    query, back = land(iss_required)

    assert query_of("?" + query)["iss"] == "https://attacker.example"
    assert back == {"error": "issuer_mismatch"}
    assert provider.stats().token_calls == {}
    assert connection_rows(db) == []


def test_missing_iss_is_refused_when_the_provider_always_sends_it(iss_required: Api, provider, db) -> None:
    provider.configure(send_iss=False)

    _, back = land(iss_required)

    assert back == {"error": "issuer_mismatch"}
    assert connection_rows(db) == []


@pytest.mark.parametrize(
    ("issuer", "error"), [(None, "access_denied"), ("https://attacker.example", "issuer_mismatch")]
)
def test_an_error_answer_is_checked_for_its_issuer_too(
    iss_required: Api, provider, issuer: str | None, error: str
) -> None:
    """RFC 9207 §2.4: an error answer from another server is a mix-up as much as a code is (an outside probe's)."""
    provider.configure(deny_authorization=True, **({"issuer": issuer} if issuer else {}))

    _, back = land(iss_required)

    assert back == {"error": error}


# -- without a return URL ---------------------------------------------------------------------------------


def test_without_return_url_the_callback_shows_a_connected_page(api: Api, db) -> None:
    started = start_connect(api, return_url=None)
    answer = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "connected" in answer.body.lower()
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    (row,) = connection_rows(db)
    assert row[1] == "user-1"


def test_without_return_url_a_failure_shows_an_error_page(api: Api, provider) -> None:
    provider.configure(deny_authorization=True)
    started = start_connect(api, return_url=None)

    answer = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    assert answer.status == 400
    assert "access_denied" in answer.body
    assert "Location" not in answer.headers


def test_connected_location_names_only_the_connection(api: Api) -> None:
    _, back = land(api)

    assert set(back) == {"connection_id"}
    UUID(back["connection_id"])


def test_starting_a_connect_session_purges_the_tenants_abandoned_ones_and_no_one_elses(api: Api, db, secrets) -> None:
    with owner(db) as sql:
        sql.run("DELETE FROM oauth_sessions")
    other = make_tenant("Other")
    make_oauth_session(other, secrets)
    started = start_connect(api)
    assert started.status == 201
    with owner(db) as sql:
        sql.run("UPDATE oauth_sessions SET expires_at = now() - interval '1 minute'")

    assert start_connect(api).status == 201

    with owner(db) as sql:
        remaining = sql.run("SELECT tenant_id = :o, expires_at > now() FROM oauth_sessions ORDER BY 1", o=other)
    assert remaining == [[False, True], [True, False]]


# -- one tenant's abandoned connect sessions do not slow everyone's (issue 23, item 6) ------------------------


def test_the_scheduled_run_purges_expired_connect_sessions_of_every_tenant(api: Api, db, secrets) -> None:
    # Given expired and live connect sessions of two tenants, neither of which starts another
    with owner(db) as sql:
        sql.run("DELETE FROM oauth_sessions")
    other = make_tenant("Other")
    for tenant in (other, api.tenant.tenant_id, other):
        make_oauth_session(tenant, secrets)
    with owner(db) as sql:
        sql.run("UPDATE oauth_sessions SET expires_at = now() - interval '1 minute'")
    live = make_oauth_session(other, secrets)[0].id

    # When the scheduled function runs
    run_scheduled(lambda: 600_000)

    # Then only the live session is left
    with owner(db) as sql:
        assert sql.run("SELECT id FROM oauth_sessions") == [[live]]


def test_a_tenants_purge_walks_its_own_expired_sessions_only(api: Api, db) -> None:
    # Given twenty thousand expired sessions of another tenant
    other = make_tenant("Other")
    with owner(db) as sql:
        provider_id = sql.run("SELECT id FROM providers WHERE slug = 'github' AND tenant_id IS NULL")[0][0]
        sql.run(
            "INSERT INTO oauth_sessions (tenant_id, provider_id, state_sha256, end_user_id, expires_at)"
            " SELECT :t, :p, sha256(i::text::bytea), 'u', now() - interval '1 hour' FROM generate_series(1, 20000) i",
            t=other,
            p=provider_id,
        )
        sql.run("ANALYZE oauth_sessions")

    # When this tenant starts a connect session (which purges its own expired ones)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(db_engine.get_engine(), "before_cursor_execute", capture)
    try:
        assert start_connect(api).status == 201
    finally:
        event.remove(db_engine.get_engine(), "before_cursor_execute", capture)
    purge, parameters = next(
        (s, p) for s, p in statements if s.lstrip().upper().startswith("DELETE FROM OAUTH_SESSIONS")
    )

    # Then its purge statement, run again for this tenant and explained, reads none of the other tenant's rows
    raw = db_engine.get_engine().raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT set_config('app.tenant_id', %s, true)", (str(api.tenant.tenant_id),))
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + purge, parameters)
        plan = cursor.fetchone()[0][0]["Plan"]
    finally:
        raw.rollback()
        raw.close()
    assert _rows_removed(plan) < 100, plan


def _rows_removed(plan: dict[str, Any]) -> int:
    """Rows a plan read and then threw away, in all its nodes."""
    own = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    return own + sum(_rows_removed(child) for child in plan.get("Plans", []))


# -- issue 13.7: a callback never orphans a grant ----------------------------------------------------------


def test_provider_fields_with_nul_or_lone_surrogates_are_dropped_and_the_connect_succeeds(
    api: Api, provider, db
) -> None:
    provider.configure(
        extra_fields={
            "team_name": "Acme\x00Corp",
            "team_label": "half \ud800 a pair",
            "\ud83d": "a key that is half a pair",
            "team_id": "T123",
            "huge": 10**30,
        }
    )

    _query, location = land(api)

    connection = api.call("GET", f"/connections/{location['connection_id']}").json()
    assert connection["metadata"] == {"provider": {"team_id": "T123"}}


def test_a_failure_after_the_code_exchange_revokes_the_new_grant_and_redirects_with_server_error(
    api: Api, provider, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connvault.db.connections import ConnectionRepository

    def broken_write(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the write failed")

    monkeypatch.setattr(ConnectionRepository, "save_grant", broken_write)
    before = db_state(db)

    _query, location = land(api)

    assert location == {"error": "server_error"}
    stats = provider.stats()
    assert stats.token_calls.get("authorization_code") == 1
    assert stats.live_refresh_tokens == frozenset()
    assert len(stats.revoked) == 1
    assert db_state(db)["connections"] == before["connections"]


def test_connect_settings_keep_return_urls_in_the_same_ascii_spelling_the_sessions_are_compared_in(api: Api) -> None:
    """The connect settings' list is the other place a return URL is registered (issue 23.9, after issue 21)."""
    saved = api.call("PUT", "/connect-settings", body={"allowed_return_urls": ["https://café.example/back"]})

    assert saved.status == 200, saved.body
    assert saved.json()["allowed_return_urls"] == ["https://xn--caf-dma.example/back"]


@pytest.mark.parametrize("host", ["faß.example", "FAẞ.example", "σας.example", "a\u200db.example", "a\u200cb.example"])
def test_a_return_url_host_browsers_and_idna_2003_spell_differently_is_refused(api: Api, host: str) -> None:
    """An outside probe: ``faß.example`` was registered as ``fass.example`` (Python's IDNA 2003), another domain
    than the ``xn--fa-hia.example`` a browser goes to; sessions returning to ``fass.example`` were then accepted."""
    for path, field in (("/connect-settings", "allowed_return_urls"), ("/connect-settings", "frame_ancestors")):
        answer = api.call(
            "PUT", path, body={field: [f"https://{host}/back" if field != "frame_ancestors" else f"https://{host}"]}
        )

        assert answer.status == 400, answer.body
        assert host not in answer.body
