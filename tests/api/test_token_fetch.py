"""Token fetch, ``GET /connections/{id}/token``, through the real handlers against the demo provider."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from connvault import wiring
from demo_provider import Fault
from devserver.demo_setup import install_demo_provider
from tests.api.conftest import Answer, Api, connect_account, stored_connection
from tests.hardening.support import end_backoff
from tests.support.factories import owner


def fetch(api: Api, connection_id: str, **query: str) -> Answer:
    return api.call("GET", f"/connections/{connection_id}/token", query=query)


def access_token(answer: Answer) -> str:
    assert answer.status == 200, answer.body
    return answer.json()["access_token"]


def set_expiry(db, connection_id: str, seconds_from_now: int) -> None:
    """Age the token: it expires in ``seconds_from_now`` and was issued as long before as it lives."""
    with owner(db) as connection:
        connection.run(
            "UPDATE connections SET expires_at = now() + make_interval(secs => :s),"
            " granted_at = now() + make_interval(secs => :s) - (expires_at - granted_at) WHERE id = CAST(:i AS uuid)",
            s=seconds_from_now,
            i=connection_id,
        )


def refresh_calls(provider) -> int:
    return provider.stats().token_calls.get("refresh_token", 0)


def last_used_at(db, connection_id: str) -> datetime | None:
    with owner(db) as connection:
        return connection.run("SELECT last_used_at FROM connections WHERE id = CAST(:i AS uuid)", i=connection_id)[0][0]


@contextmanager
def counting_kms_calls() -> Iterator[list[str]]:
    """The KMS operations this process's client makes inside the block."""
    calls: list[str] = []

    def record(event_name: str, **_kwargs: object) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    events = wiring.get_kms_client().meta.events
    events.register("before-call.kms.*", record)
    try:
        yield calls
    finally:
        events.unregister("before-call.kms.*", record)


# -- serving ----------------------------------------------------------------------------------------------


def test_a_valid_token_is_served_with_no_store(api: Api, provider) -> None:
    connection_id = connect_account(api)

    answer = fetch(api, connection_id)

    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["credential_type"] == "oauth2"
    assert body["token_type"] == "Bearer"
    assert body["scopes"] == ["read"]
    assert provider.access_token_is_active(body["access_token"])
    assert "refresh_token" not in answer.body


def test_a_warm_valid_fetch_costs_no_kms_and_no_provider_call(api: Api, provider) -> None:
    connection_id = connect_account(api)
    first = access_token(fetch(api, connection_id))
    calls_before = provider.stats().token_calls

    with counting_kms_calls() as kms_calls:
        served = [access_token(fetch(api, connection_id)) for _ in range(3)]

    assert served == [first] * 3
    assert kms_calls == []
    assert provider.stats().token_calls == calls_before


def test_a_cold_process_unwraps_the_data_key_once(api: Api, reconfigure) -> None:
    connection_id = connect_account(api)
    reconfigure()  # as in a new process: no cached collaborators, no cached data keys

    with counting_kms_calls() as kms_calls:
        for _ in range(3):
            access_token(fetch(api, connection_id))

    assert kms_calls == ["Decrypt"]


def test_last_used_at_is_written_at_most_once_a_minute(api: Api, db) -> None:
    connection_id = connect_account(api)
    assert last_used_at(db, connection_id) is None

    access_token(fetch(api, connection_id))
    first = last_used_at(db, connection_id)
    for _ in range(3):
        access_token(fetch(api, connection_id))

    assert first is not None
    assert last_used_at(db, connection_id) == first


def test_a_fetch_that_hands_out_nothing_is_not_a_use(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    provider.inject(Fault.error(400, "invalid_grant"))

    assert error_of(fetch(api, connection_id, force_refresh="true"), 409)["code"] == "needs_reauth"
    assert error_of(fetch(api, connection_id), 409)["code"] == "needs_reauth"
    assert last_used_at(db, connection_id) is None


# -- refreshing -------------------------------------------------------------------------------------------


def test_min_ttl_beyond_the_tokens_remaining_life_refreshes_first(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    before = access_token(fetch(api, connection_id, min_ttl="1800"))
    assert refresh_calls(provider) == 0
    set_expiry(db, connection_id, 1000)  # the demo's tokens live an hour: a fresh one satisfies 1800 s

    after = access_token(fetch(api, connection_id, min_ttl="1800"))

    assert after != before
    assert refresh_calls(provider) == 1
    assert provider.access_token_is_active(after)


def test_a_token_inside_the_providers_margin_is_refreshed(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    before = access_token(fetch(api, connection_id))
    set_expiry(db, connection_id, 120)  # the demo provider's margin is 300 s

    after = access_token(fetch(api, connection_id))

    assert after != before
    assert refresh_calls(provider) == 1


def test_rotation_stores_each_new_refresh_token(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    original = stored_connection(db, connection_id).refresh_token.reveal()

    for _ in range(2):
        access_token(fetch(api, connection_id, force_refresh="true"))

    current = stored_connection(db, connection_id).refresh_token.reveal()
    stats = provider.stats()
    assert current != original
    assert stats.live_refresh_tokens == frozenset({current})
    assert stats.refresh_token_reuse == 0
    assert refresh_calls(provider) == 2


def test_a_provider_that_does_not_rotate_keeps_the_old_refresh_token(api: Api, provider, db) -> None:
    provider.configure(rotate_refresh_tokens=False)
    install_demo_provider(db.owner_target, provider)
    connection_id = connect_account(api)
    original = stored_connection(db, connection_id).refresh_token.reveal()

    first = access_token(fetch(api, connection_id, force_refresh="true"))
    assert stored_connection(db, connection_id).refresh_token.reveal() == original
    second = access_token(fetch(api, connection_id, force_refresh="true"))

    assert first != second
    assert stored_connection(db, connection_id).refresh_token.reveal() == original
    assert refresh_calls(provider) == 2


# -- refusals -------------------------------------------------------------------------------------------


def error_of(answer: Answer, status: int) -> dict:
    assert answer.status == status, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    return answer.json()["error"]


def test_invalid_grant_on_refresh_means_needs_reauth(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.error(400, "invalid_grant"))

    assert error_of(fetch(api, connection_id), 409)["code"] == "needs_reauth"
    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert (shown["status"], shown["last_error_code"]) == ("needs_reauth", "invalid_grant")

    assert error_of(fetch(api, connection_id), 409)["code"] == "needs_reauth"
    assert refresh_calls(provider) == 1


def test_a_refused_refresh_of_an_expired_token_is_a_502_and_the_connection_is_retried_not_sent_to_reconnect(
    api: Api, provider, db
) -> None:
    """An outside probe: a 403 page from a firewall in front of the token endpoint made the connection needs_reauth
    for good (409 on every fetch). It refused the request, not the grant."""
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault(status=403, body=b"<html>Request blocked</html>", content_type="text/html"))

    refused = error_of(fetch(api, connection_id), 502)
    shown = api.call("GET", f"/connections/{connection_id}").json()
    backing_off = fetch(api, connection_id)

    assert refused == {
        "code": "provider_error",
        "message": "the provider refused the refresh request, not the grant; it is retried later",
    }
    assert (shown["status"], shown["refresh_failures"], shown["last_error_code"]) == ("active", 1, "http_403")
    assert error_of(backing_off, 503)["code"] == "provider_unavailable"
    assert int(backing_off.headers["Retry-After"]) >= 1
    assert refresh_calls(provider) == 1


def test_a_refused_refresh_while_the_token_is_valid_serves_the_current_token(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    current = access_token(fetch(api, connection_id))
    set_expiry(db, connection_id, 120)  # due for refresh, still valid
    provider.inject(Fault.error(400, "unsupported_grant_type"))

    assert access_token(fetch(api, connection_id)) == current
    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert (shown["status"], shown["last_error_code"]) == ("active", "unsupported_grant_type")
    assert refresh_calls(provider) == 1


def test_a_deleted_integration_is_409_integration_missing_and_the_connection_keeps_its_grant(
    api: Api, provider, db
) -> None:
    """The tenant deleted its app: no provider call, no needs_reauth (the grant is still good); a valid token is
    still served, and defining the integration again lets the next fetch refresh."""
    connection_id = connect_account(api)
    with owner(db) as keeper:
        keeper.run("CREATE TEMP TABLE kept AS SELECT * FROM integrations")
        keeper.run("DELETE FROM integrations")
        served = fetch(api, connection_id).status
        set_expiry(db, connection_id, -60)
        missing = error_of(fetch(api, connection_id), 409)
        shown = api.call("GET", f"/connections/{connection_id}").json()
        keeper.run("INSERT INTO integrations SELECT * FROM kept")

    assert served == 200
    assert missing["code"] == "integration_missing"
    assert (shown["status"], shown["last_error_code"]) == ("active", None)
    assert refresh_calls(provider) == 0
    assert provider.access_token_is_active(access_token(fetch(api, connection_id)))
    assert refresh_calls(provider) == 1


def test_needs_reauth_is_cleared_by_connecting_again(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.error(400, "invalid_grant"))
    fetch(api, connection_id)

    assert connect_account(api) == connection_id
    assert provider.access_token_is_active(access_token(fetch(api, connection_id)))


def test_revoked_connection_is_409_revoked(api: Api, db) -> None:
    connection_id = connect_account(api)
    with owner(db) as connection:
        connection.run("UPDATE connections SET status = 'revoked' WHERE id = CAST(:i AS uuid)", i=connection_id)

    assert error_of(fetch(api, connection_id), 409)["code"] == "revoked"


def test_expired_token_without_refresh_token_is_409_expired(api: Api, provider, db) -> None:
    provider.configure(issue_refresh_tokens=False)
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)

    assert error_of(fetch(api, connection_id), 409)["code"] == "expired"
    assert api.call("GET", f"/connections/{connection_id}").json()["status"] == "expired"
    assert error_of(fetch(api, connection_id), 409)["code"] == "expired"
    assert refresh_calls(provider) == 0


def test_an_unexpired_token_without_refresh_token_is_served_inside_the_margin(api: Api, provider, db) -> None:
    provider.configure(issue_refresh_tokens=False)
    connection_id = connect_account(api)
    set_expiry(db, connection_id, 60)

    assert provider.access_token_is_active(access_token(fetch(api, connection_id)))


def test_expired_token_and_provider_down_is_503_with_retry_after(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.server_error())

    answer = fetch(api, connection_id)

    assert error_of(answer, 503)["code"] == "provider_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert (shown["status"], shown["refresh_failures"]) == ("active", 1)

    again = fetch(api, connection_id)  # backing off: the provider is not asked again yet
    assert error_of(again, 503)["code"] == "provider_unavailable"
    assert int(again.headers["Retry-After"]) >= 1
    assert refresh_calls(provider) == 1


def test_a_providers_retry_after_reaches_the_caller(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.rate_limited("120"))

    answer = fetch(api, connection_id)

    assert error_of(answer, 503)["code"] == "provider_unavailable"
    assert int(answer.headers["Retry-After"]) >= 120


def test_transient_failure_while_the_token_is_valid_serves_the_current_token(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    current = access_token(fetch(api, connection_id))
    set_expiry(db, connection_id, 120)  # due for refresh, still valid
    provider.inject(Fault.server_error())

    assert access_token(fetch(api, connection_id)) == current
    assert refresh_calls(provider) == 1


def test_forced_refresh_with_the_provider_down_is_503_even_with_a_valid_token(api: Api, provider) -> None:
    connection_id = connect_account(api)
    provider.inject(Fault.server_error())

    assert error_of(fetch(api, connection_id, force_refresh="true"), 503)["code"] == "provider_unavailable"


# -- what a refresh's answer may not do -------------------------------------------------------------------------


def name_accounts_by_sub(api: Api, db, *subjects: str) -> None:
    """The demo provider's connections take their account id from the id token's ``sub``, as Google's do; the
    ids are sealed like secrets, so none may reach a log line."""
    with owner(db) as sql:
        sql.run("UPDATE providers SET account_id_fields = '{id_token.sub}' WHERE slug = 'demo'")
    api.secrets.add(*subjects)


def test_a_refresh_answering_for_another_account_is_refused_stored_nowhere_and_not_revoked(
    api: Api, provider, db
) -> None:
    """An outside probe: connected as alice, a refresh whose id token named mallory left the connection active as
    mallory, serving mallory's token. OpenID Connect Core 12.2: a refresh's ``sub`` is the original's. Those tokens
    may be another user's, read off a desynchronised connection: not ours to use, nor to end."""
    # Given alice's connection
    name_accounts_by_sub(api, db, "alice", "mallory")
    provider.configure(id_token_subject="alice")
    connection_id = connect_account(api)
    before = stored_connection(db, connection_id)

    # When a forced refresh is answered for mallory
    provider.configure(id_token_subject="mallory")
    refused = fetch(api, connection_id, force_refresh="true")

    # Then no token is served, the connection needs its end user, saying why, and holds alice's grant as it was
    assert error_of(refused, 409)["code"] == "needs_reauth"
    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert (shown["status"], shown["last_error_code"]) == ("needs_reauth", "account_changed")
    assert shown["provider_account_id"] == "alice"
    after = stored_connection(db, connection_id)
    assert after.credentials == before.credentials
    assert after.token_version == before.token_version
    # And mallory's tokens were not revoked, and are never served
    assert provider.stats().revoked == frozenset()
    assert error_of(fetch(api, connection_id), 409)["code"] == "needs_reauth"
    assert refresh_calls(provider) == 1


def test_a_due_refresh_answering_for_another_account_is_refused_too(api: Api, provider, db) -> None:
    provider.configure(id_token_subject="alice")
    connection_id = connect_account(api)
    set_expiry(db, connection_id, 60)
    provider.configure(id_token_subject="mallory")

    assert error_of(fetch(api, connection_id), 409)["code"] == "needs_reauth"
    assert api.call("GET", f"/connections/{connection_id}").json()["last_error_code"] == "account_changed"


def test_a_refresh_naming_the_same_account_or_nobody_is_stored(api: Api, provider, db) -> None:
    """Only two known, different subjects refuse an answer: many refresh answers carry no id token at all."""
    name_accounts_by_sub(api, db, "alice")
    provider.configure(id_token_subject="alice")
    connection_id = connect_account(api)

    same = access_token(fetch(api, connection_id, force_refresh="true"))
    # The refresh naming alice stored its own id token (the connect's when both were issued in the same second).
    named = stored_connection(db, connection_id).credentials
    provider.configure(id_token_subject=None)
    unnamed = access_token(fetch(api, connection_id, force_refresh="true"))

    assert provider.access_token_is_active(same) and provider.access_token_is_active(unnamed)
    kept = stored_connection(db, connection_id)
    assert (kept.status.value, kept.credentials.access_token.reveal()) == ("active", unnamed)
    assert kept.credentials.id_token == named.id_token  # the grant's, kept for the next refresh to compare
    assert api.call("GET", f"/connections/{connection_id}").json()["provider_account_id"] == "alice"


def lifetime_after_refresh(db, connection_id: str) -> float | None:
    """Seconds between the stored token's refresh and its expiry; None when it has no expiry."""
    with owner(db) as sql:
        [[seconds]] = sql.run(
            "SELECT extract(epoch FROM expires_at - last_refresh_at)::float FROM connections"
            " WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )
    return seconds


@pytest.mark.parametrize(
    "expires_in", [None, "soon", 0, -5, True, 1e300], ids=["absent", "text", "zero", "negative", "boolean", "1e300"]
)
def test_a_refresh_answer_without_a_usable_expires_in_lives_as_long_as_the_token_it_replaces(
    api: Api, provider, db, expires_in: object
) -> None:
    """An outside probe: such an answer made a token that expires count as never expiring, so the connection was
    never refreshed again and token fetch served a dead token forever."""
    provider.configure(expires_in=600)
    connection_id = connect_account(api)

    provider.configure(expires_in=None, extra_fields={} if expires_in is None else {"expires_in": expires_in})
    access_token(fetch(api, connection_id, force_refresh="true"))
    first = lifetime_after_refresh(db, connection_id)
    access_token(fetch(api, connection_id, force_refresh="true"))

    assert first == pytest.approx(600.0, abs=1.0)
    assert lifetime_after_refresh(db, connection_id) == first  # carried over from one guess to the next, unshortened


def test_a_numeral_in_a_string_is_the_expiry_a_refresh_answer_gives(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    provider.configure(extra_fields={"expires_in": "1800.0"})

    access_token(fetch(api, connection_id, force_refresh="true"))

    assert lifetime_after_refresh(db, connection_id) == pytest.approx(1800.0, abs=1.0)


def test_an_assumed_lifetime_is_at_least_a_minute_and_none_without_a_known_one(api: Api, provider, db) -> None:
    """The previous lifetime is a guess: an imported token's may be only what was left of it, or nothing at all
    (an import without expiry is taken as expired when stored); a guess must not have every fetch call the
    provider, and nothing is no lifetime."""
    short = connect_account(api)
    unknown = connect_account(api, end_user_id="user-2")
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET granted_at = now() - interval '5 seconds',"
            " expires_at = now() + interval '5 seconds' WHERE id = CAST(:i AS uuid)",
            i=short,
        )
        sql.run("UPDATE connections SET expires_at = granted_at WHERE id = CAST(:i AS uuid)", i=unknown)
    provider.configure(expires_in=None)

    access_token(fetch(api, short, force_refresh="true"))
    access_token(fetch(api, unknown, force_refresh="true"))

    assert lifetime_after_refresh(db, short) == 60.0
    assert lifetime_after_refresh(db, unknown) is None


def test_a_token_that_never_said_when_it_expires_still_never_does_after_a_refresh(api: Api, provider, db) -> None:
    """RFC 6749 makes ``expires_in`` optional: a connect without one keeps meaning "no expiry known"."""
    provider.configure(expires_in=None)
    connection_id = connect_account(api)
    assert stored_connection(db, connection_id).expires_at is None

    access_token(fetch(api, connection_id, force_refresh="true"))

    assert stored_connection(db, connection_id).expires_at is None


def test_a_provider_error_code_that_could_carry_a_domain_is_shown_to_tenants_as_provider_error(
    api: Api, provider, db
) -> None:
    connection_id = connect_account(api)
    provider.inject(Fault.error(400, "session.expired.reconnect.at.evil-login.example.com"))

    # An unknown code refuses the request, not the grant: a counted failure, retried later (502 meanwhile).
    assert error_of(fetch(api, connection_id, force_refresh="true"), 502)["code"] == "provider_error"
    assert api.call("GET", f"/connections/{connection_id}").json()["last_error_code"] == "provider_error"


def test_forced_fetches_while_a_refresh_backs_off_call_no_provider_and_spend_no_failure_budget(
    api: Api, provider, db
) -> None:
    """An outside probe: with the provider answering 429 Retry-After: 3600, ten forced fetches in a second made ten
    provider calls and left the connection in error with ten failures."""
    connection_id = connect_account(api)
    provider.inject(*[Fault.rate_limited("3600")] * 10)

    first = fetch(api, connection_id, force_refresh="true")
    forced = [fetch(api, connection_id, force_refresh="true") for _ in range(9)]
    plain = fetch(api, connection_id)
    shown = api.call("GET", f"/connections/{connection_id}").json()

    assert error_of(first, 503)["code"] == "provider_unavailable"
    for answer in forced:
        assert error_of(answer, 503)["code"] == "provider_unavailable"
        assert 3500 <= int(answer.headers["Retry-After"]) <= 3600
    assert plain.status == 200, plain.body  # the token is still valid: served as it is
    assert (shown["status"], shown["refresh_failures"], shown["last_error_code"]) == ("active", 1, "rate_limited")
    assert refresh_calls(provider) == 1


def test_the_backoff_ends_when_next_refresh_at_passes_for_plain_and_forced_fetches(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.server_error(), Fault.server_error())
    assert error_of(fetch(api, connection_id), 503)["code"] == "provider_unavailable"
    assert error_of(fetch(api, connection_id), 503)["code"] == "provider_unavailable"  # backing off, no call

    end_backoff(db, connection_id)
    after_plain = fetch(api, connection_id)  # the provider fails again: a second failure, a second backoff
    end_backoff(db, connection_id)
    after_forced = fetch(api, connection_id, force_refresh="true")

    assert error_of(after_plain, 503)["code"] == "provider_unavailable"
    assert provider.access_token_is_active(access_token(after_forced))
    assert refresh_calls(provider) == 3


def unfillable_endpoint(db, column: str) -> None:
    """The demo provider's ``column`` holding a placeholder that no connection_config fills, as a custom provider
    defined before definitions refused one may hold it (an outside probe defined a token_url ending in ``{x}``)."""
    with owner(db) as sql:
        sql.run(f"UPDATE providers SET {column} = {column} || '{{x}}' WHERE slug = 'demo'")


def test_a_provider_whose_token_url_holds_an_unfilled_placeholder_is_409_provider_misconfigured_not_400(
    api: Api, provider, db
) -> None:
    """The provider's definition is at fault, not the caller's input (it was 400 validation_error naming a
    connection_config nobody sent); a still-valid token is served meanwhile, and nothing is sent anywhere."""
    connection_id = connect_account(api)
    unfillable_endpoint(db, "token_url")
    set_expiry(db, connection_id, 120)  # due for refresh, still valid
    served = fetch(api, connection_id)
    set_expiry(db, connection_id, -60)

    refused = error_of(fetch(api, connection_id), 409)

    assert served.status == 200, served.body
    assert refused["code"] == "provider_misconfigured"
    assert "token_url" in refused["message"]
    shown = api.call("GET", f"/connections/{connection_id}").json()
    assert (shown["status"], shown["refresh_failures"]) == ("active", 0)
    assert refresh_calls(provider) == 0


def test_a_connection_whose_revocation_url_cannot_be_called_is_still_deleted(api: Api, provider, db) -> None:
    connection_id = connect_account(api)
    unfillable_endpoint(db, "revocation_url")

    deleted = api.call("DELETE", f"/connections/{connection_id}")

    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "failed"
    assert api.call("GET", f"/connections/{connection_id}").status == 404


def test_a_refused_refresh_answers_with_no_text_the_provider_chose(api: Api, provider, db) -> None:
    """A provider's error code reaches the connection's last_error_code (as sanitised), never the message of the
    answer a backend may show its users."""
    connection_id = connect_account(api)
    set_expiry(db, connection_id, -60)
    provider.inject(Fault.error(400, "session.expired.call.support.evil.example"))

    refused = error_of(fetch(api, connection_id, force_refresh="true"), 502)

    assert refused["code"] == "provider_error"
    assert "evil" not in refused["message"]
