"""Faults around a refresh: the provider, the database and KMS each failing in the ways they do.

For each: the caller gets a typed error, no row is half-written, the refresh lease is given back, and a refresh
token the provider rotated is never lost (stored, after retrying the write), or, when it was lost before it reached
us, the connection ends ``needs_reauth`` with a reason instead of looking healthy.

Both refresh paths are driven: token fetch (``force_refresh``, through the handler) and the scheduler run.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from connvault import observability, wiring
from connvault.db.refresh_statements import RefreshStatements
from connvault.db.uow import UnitOfWork
from connvault.errors import DatabaseUnavailable, NotFound
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.services.fanout import enqueue_due
from connvault.services.refresh import STALE_LEASE_REASON, RefreshPolicy
from connvault.services.scheduler import refresh_due
from demo_provider import DemoProvider, Fault
from devserver.demo_setup import install_demo_provider
from devserver.events import http_event
from tests.api.conftest import Api, connect_account
from tests.hardening.support import (
    POLICY,
    RUN,
    TIMEOUT,
    end_backoff,
    fetch,
    make_due,
    row,
    run_scheduler,
    settle,
    stored_refresh_token,
)
from tests.scheduler import support as grants
from tests.support.factories import owner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.hardening.conftest import Snapshot
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

PROVIDER_FAULTS = {
    "slow": (Fault.slow(4 * TIMEOUT), "unreachable"),
    "dropped": (Fault.dropped(), "unreachable"),
    "garbage": (Fault.garbage(), "invalid_response"),
    "rate_limited": (Fault.rate_limited("120"), "rate_limited"),
    "server_error": (Fault.server_error(), "server_error"),
}


@pytest.fixture
def oauth() -> Iterator[OAuthClient]:
    transport = HttpTransport(TIMEOUT, maxsize=4)
    yield OAuthClient(transport)
    transport.close()


@pytest.fixture
def connection_id(api: Api, reconfigure: Callable[..., None]) -> str:
    reconfigure(http_timeout_seconds=TIMEOUT)
    return connect_account(api)


# -- the provider fails --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["token_fetch", "scheduler"])
@pytest.mark.parametrize("fault", sorted(PROVIDER_FAULTS))
def test_a_failing_provider_leaves_the_old_tokens_the_lease_released_and_a_retry_scheduled(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, oauth: OAuthClient, fault: str, path: str
) -> None:
    # Given a connection whose refresh token the provider would accept
    injected, reason = PROVIDER_FAULTS[fault]
    before = row(db, connection_id)
    refresh_token = stored_refresh_token(db, connection_id)

    # When a refresh meets the fault
    provider.inject(injected)
    if path == "token_fetch":
        answer = fetch(api, connection_id)
        assert answer.status == 503, answer.body
        assert answer.json()["error"]["code"] == "provider_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
    else:
        make_due(db, connection_id)
        before = row(db, connection_id)
        assert run_scheduler(oauth).transient_failures == 1

    # Then the failure is recorded and nothing else changed: same sealed credentials, lease given back
    after = row(db, connection_id)
    assert (after.status, after.last_error_code, after.refresh_failures) == ("active", reason, 1)
    assert after.next_refresh_at is not None and after.next_refresh_at > datetime.now(UTC)
    assert not after.leased
    assert after.credentials == before.credentials
    assert stored_refresh_token(db, connection_id) == refresh_token
    if fault == "rate_limited":
        assert (after.next_refresh_at - datetime.now(UTC)).total_seconds() > 100  # Retry-After: 120 is a floor


@pytest.mark.parametrize("fault", sorted(set(PROVIDER_FAULTS) - {"slow"}))
def test_after_a_failure_that_reached_no_token_logic_the_next_refresh_works_without_reuse(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, fault: str
) -> None:
    provider.inject(PROVIDER_FAULTS[fault][0])
    assert fetch(api, connection_id).status == 503
    end_backoff(db, connection_id)

    answer = fetch(api, connection_id)

    assert answer.status == 200, answer.body
    assert provider.access_token_is_active(answer.json()["access_token"])
    assert stored_refresh_token(db, connection_id) in provider.stats().live_refresh_tokens
    assert provider.stats().refresh_token_reuse == 0
    assert row(db, connection_id).last_error_code is None


def test_a_refresh_the_provider_finished_after_we_gave_up_ends_needs_reauth_not_silently_broken(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str
) -> None:
    # Given a provider that answered only after the timeout, having rotated the refresh token meanwhile
    provider.inject(Fault.slow(4 * TIMEOUT))
    assert fetch(api, connection_id).status == 503
    settle(provider)
    assert stored_refresh_token(db, connection_id) not in provider.stats().live_refresh_tokens

    # When the connection is refreshed again, after the backoff
    end_backoff(db, connection_id)
    answer = fetch(api, connection_id)

    # Then the dead refresh token is found out: needs_reauth saying a refresh was interrupted (the timed-out
    # call had rotated it), never "active" with dead tokens
    assert answer.status == 409, answer.body
    assert answer.json()["error"]["code"] == "needs_reauth"
    after = row(db, connection_id)
    assert (after.status, after.last_error_code) == ("needs_reauth", "refresh_interrupted")
    assert not after.leased


def test_tokens_living_shorter_than_the_horizon_are_refreshed_once_per_run_not_in_a_loop(
    api: Api, provider: DemoProvider, secrets: SecretRegistry, oauth: OAuthClient
) -> None:
    # Given a provider issuing 60-second tokens, shorter than the 15-minute horizon, and more due connections
    # than one claim takes
    provider.configure(expires_in=60)
    with UnitOfWork(api.tenant.tenant_id) as uow:
        demo = uow.providers.get_by_slug("demo")
    minted = grants.mint_grants(provider, demo, 12, register=secrets.add)
    grants.add_connections(api.tenant.tenant_id, demo, minted, expires_at=datetime.now(UTC) + timedelta(seconds=60))

    # When one scheduled run has a few seconds (it ends as soon as nothing is due)
    ends = time.monotonic() + 8.0
    refresh_due(
        remaining_ms=lambda: int((ends - time.monotonic()) * 1000),
        config=replace(RUN, batch_size=4, deadline_margin_ms=500),
        policy=POLICY,
        oauth=oauth,
    )

    # Then each connection was refreshed once, not again and again
    assert provider.stats().token_calls.get("refresh_token", 0) == len(minted)


# -- the database fails --------------------------------------------------------------------------------------


def failing_store(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """The store of a refresh fails in the database (nothing written), ``failures`` times; returns the attempt
    log."""
    real = RefreshStatements.store
    attempts: list[int] = []

    def store(self: RefreshStatements, *args: Any, **kwargs: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise DatabaseUnavailable("the database failed a refresh statement; retry shortly")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RefreshStatements, "store", store)
    return attempts


def test_a_commit_failing_after_the_provider_rotated_is_retried_and_the_new_refresh_token_kept(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database whose first two commits of the refreshed tokens fail
    attempts = failing_store(monkeypatch, failures=2)

    # When a refresh rotates the refresh token
    answer = fetch(api, connection_id)

    # Then the write was retried until it held: the stored refresh token is the provider's live one
    assert answer.status == 200, answer.body
    assert attempts == [1, 2, 3]
    assert stored_refresh_token(db, connection_id) in provider.stats().live_refresh_tokens
    assert not row(db, connection_id).leased
    monkeypatch.undo()
    again = fetch(api, connection_id)
    assert again.status == 200, again.body
    assert provider.stats().refresh_token_reuse == 0


def test_a_commit_that_never_succeeds_is_a_typed_error_and_the_next_refresh_says_refresh_interrupted(
    api: Api,
    provider: DemoProvider,
    db: TestDatabase,
    reconfigure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a short refresh lease and a database that fails every commit of the refreshed tokens
    reconfigure(http_timeout_seconds=TIMEOUT, db_statement_timeout_ms=2_000, refresh_lease_seconds=3)
    connection_id = connect_account(api)
    attempts = failing_store(monkeypatch, failures=10)

    # When a refresh rotates the refresh token and cannot store the new one
    answer = fetch(api, connection_id)

    # Then the caller gets a typed 503, the rotated tokens are gone with the process, and the lease is kept as
    # the mark of an interrupted refresh
    assert len(attempts) == RefreshPolicy().store_attempts
    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert row(db, connection_id).leased
    monkeypatch.undo()

    # And once the lease has run out, the next refresh ends the connection needs_reauth, saying why
    time.sleep(3.1)
    again = fetch(api, connection_id)
    assert again.status == 409, again.body
    after = row(db, connection_id)
    assert (after.status, after.last_error_code) == ("needs_reauth", STALE_LEASE_REASON)
    assert not after.leased


@pytest.mark.parametrize(
    ("job", "method", "path"),
    [("token_fetch", "GET", "/connections/{id}/token"), ("api", "GET", "/connections"), ("api", "GET", "/providers")],
)
def test_an_unreachable_database_is_a_503_database_unavailable(
    api: Api, connection_id: str, reconfigure: Callable[..., None], job: str, method: str, path: str
) -> None:
    # Given a process whose database is gone (a socket nobody listens on)
    reconfigure(database_url="postgresql+pg8000://postgres@/postgres?unix_sock=/nonexistent/.s.PGSQL.5432")
    event = http_event(method, path.format(id=connection_id), tenant_id=str(api.tenant.tenant_id))

    answer = api.invoke(job, event)

    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("database_url", "mysql://operator:hunter2-password@db.internal/connvault"),
        ("db_app_role", "app; DROP ROLE x"),
    ],
)
def test_a_misconfigured_database_is_a_500_internal_error_with_the_detail_in_the_log_only(
    api: Api,
    connection_id: str,
    reconfigure: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    value: str,
) -> None:
    # Given an operator's mistake in the deployment's settings (issue 15.3: it used to be a 400 naming them)
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(observability.logger, "error", lambda message, extra: logged.append((message, extra)))
    reconfigure(**{setting: value})

    answer = api.invoke("api", http_event("GET", "/connections", tenant_id=str(api.tenant.tenant_id)))

    # the caller learns nothing about the deployment
    assert answer.status == 500, answer.body
    assert answer.json()["error"] == {"code": "internal_error", "message": "an unexpected error occurred"}
    # and the operator finds the setting at fault in the log, never its value
    assert [(message, extra["setting"]) for message, extra in logged] == [("deployment misconfigured", setting)]
    assert "hunter2" not in str(logged)


@pytest.mark.parametrize(("job", "path"), [("token_fetch", "/connections/{id}/token"), ("api", "/connections")])
def test_when_the_database_is_unreachable_the_authorizer_names_no_tenant_and_the_function_answers_503(
    api: Api, connection_id: str, reconfigure: Callable[..., None], job: str, path: str
) -> None:
    reconfigure(database_url="postgresql+pg8000://postgres@/postgres?unix_sock=/nonexistent/.s.PGSQL.5432")

    # A Lambda authorizer cannot answer 503 itself (deny is a 403, a failure a 500 without Retry-After): it
    # lets the request through marked unchecked, with no tenant
    decision = api.authorize(f"Bearer {api.tenant.api_key.reveal()}")
    assert decision == {"isAuthorized": True, "context": {"unchecked": "database_unavailable"}}

    # and the function answers 503 before any route runs
    event = http_event("GET", path.format(id=connection_id), authorizer=decision["context"])
    answer = api.invoke(job, event)
    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_route_never_serves_a_request_that_names_no_tenant(api: Api, connection_id: str) -> None:
    # Defence in depth: a context without a tenant (whatever else it says) is a 401, never another tenant's data
    event = http_event("GET", f"/connections/{connection_id}/token", authorizer={"tenant": "x"})
    answer = api.invoke("token_fetch", event)
    assert answer.status == 401, answer.body


# -- KMS throttles -------------------------------------------------------------------------------------------


def throttle_kms(operation: str) -> None:
    """Every ``operation`` call of the process's KMS client is refused as throttled from now on."""

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)

    wiring.get_kms_client().meta.events.register(f"before-call.kms.{operation}", refuse)


def test_kms_throttling_on_a_cold_token_fetch_is_a_503_and_writes_nothing(
    api: Api, connection_id: str, reconfigure: Callable[..., None], snapshot: Callable[..., Snapshot]
) -> None:
    # Given a fresh process (no data key in memory) whose KMS throttles
    reconfigure(http_timeout_seconds=TIMEOUT)
    throttle_kms("Decrypt")
    before = snapshot(ignore=("last_used_at",))

    answer = fetch(api, connection_id, force=False)

    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "key_service_unavailable"
    assert int(answer.headers["Retry-After"]) >= 1
    # (last_used_at records the attempt: the read that found the connection runs before the data key is needed)
    assert snapshot(ignore=("last_used_at",)) == before


def test_kms_throttling_during_a_scheduler_run_pushes_the_connection_back_with_its_lease_released(
    db: TestDatabase, connection_id: str, reconfigure: Callable[..., None], oauth: OAuthClient
) -> None:
    make_due(db, connection_id)
    reconfigure(http_timeout_seconds=TIMEOUT)
    throttle_kms("Decrypt")
    before = row(db, connection_id)

    report = run_scheduler(oauth)

    assert report.errors == 1
    after = row(db, connection_id)
    assert (after.status, after.fault_code) == ("active", "key_service_unavailable")
    assert (after.last_error_code, after.refresh_failures) == (None, 0)  # the provider's record is untouched
    assert after.next_refresh_at is not None and after.next_refresh_at > datetime.now(UTC)
    assert not after.leased
    assert after.credentials == before.credentials


def test_our_own_faults_never_spend_the_providers_failure_budget(
    provider: DemoProvider, db: TestDatabase, connection_id: str, reconfigure: Callable[..., None], oauth: OAuthClient
) -> None:
    # Given nine scheduled runs of a fresh process during a KMS outage
    make_due(db, connection_id)
    reconfigure(http_timeout_seconds=TIMEOUT)
    throttle_kms("Decrypt")
    throttle_kms("GenerateDataKey")
    for _ in range(9):
        assert run_scheduler(oauth).errors == 1
        with owner(db) as sql:  # the next run comes after the backoff
            sql.run("UPDATE connections SET next_refresh_at = NULL WHERE id = CAST(:i AS uuid)", i=connection_id)
    during = row(db, connection_id)

    # When KMS is back and the provider then fails once
    reconfigure(http_timeout_seconds=TIMEOUT)
    provider.inject(Fault.server_error())
    before = datetime.now(UTC)
    report = run_scheduler(oauth)

    # Then the outage was counted as ours, and the provider's single failure costs one failure's backoff
    assert (during.status, during.refresh_failures, during.fault_count) == ("active", 0, 9)
    assert report.transient_failures == 1
    after = row(db, connection_id)
    assert (after.status, after.refresh_failures, after.last_error_code) == ("active", 1, "server_error")
    assert after.next_refresh_at is not None
    assert (after.next_refresh_at - before).total_seconds() <= POLICY.backoff_base_seconds + 5
    assert after.fault_count == 0


def test_a_row_failing_the_same_way_on_our_side_is_parked_visibly_and_no_longer_claimed_or_enqueued(
    api: Api, db: TestDatabase, connection_id: str, oauth: OAuthClient
) -> None:
    # Given a due connection whose envelope no longer opens
    make_due(db, connection_id)
    with owner(db) as sql:
        sql.run("UPDATE connections SET credentials = 'junk'::bytea WHERE id = CAST(:i AS uuid)", i=connection_id)

    # When scheduled runs keep meeting it, each after the backoff
    reports = []
    for _ in range(4):
        reports.append(run_scheduler(oauth))
        with owner(db) as sql:
            sql.run("UPDATE connections SET next_refresh_at = NULL WHERE id = CAST(:i AS uuid)", i=connection_id)

    # Then the third fault parks it, with its reason, in the API and the run's count, and no run claims it again
    assert [(r.claimed, r.errors, r.parked) for r in reports] == [(1, 1, 0), (1, 1, 0), (1, 0, 1), (0, 0, 0)]
    after = row(db, connection_id)
    assert (after.status, after.last_error_code, after.refresh_failures) == ("parked", "decryption_failed", 0)
    assert not after.leased
    for shown in (api.call("GET", f"/connections/{connection_id}"), api.call("GET", "/connections")):
        assert shown.status == 200, shown.body
        (listed,) = shown.json()["items"] if "items" in shown.json() else [shown.json()]
        assert (listed["status"], listed["last_error_code"]) == ("parked", "decryption_failed")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"parked-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    scan = enqueue_due(queue_url=url, remaining_ms=lambda: 600_000, config=RUN, sqs=sqs)
    assert (scan.claimed, scan.enqueued) == (0, 0)
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_a_connection_deleted_while_its_refresh_is_in_flight_leaves_no_live_grant_at_the_provider(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a connection deleted between the provider's answer and the write of the new tokens
    def deleted_meanwhile(self: RefreshStatements, lease: Any, *_: Any, **__: Any) -> Any:
        raise NotFound(f"connection {lease.connection.id} not found")

    monkeypatch.setattr(RefreshStatements, "store", deleted_meanwhile)
    live_before = set(provider.stats().live_refresh_tokens)

    # When the refresh completes at the provider
    answer = fetch(api, connection_id)

    # Then the grant it produced is revoked rather than left live and unowned
    assert answer.status == 404, answer.body
    assert set(provider.stats().live_refresh_tokens) <= live_before


def test_a_refresh_stored_while_a_delete_revokes_is_revoked_too_before_the_row_goes(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a refresh that rotates and stores new tokens while DELETE is revoking the ones it read
    original = OAuthClient.revoke
    refreshed: list[str] = []

    def refresh_first(self: OAuthClient, *args: Any, **kwargs: Any) -> bool:
        if not refreshed:
            refreshed.append(fetch(api, connection_id).json()["access_token"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OAuthClient, "revoke", refresh_first)
    granted = stored_refresh_token(db, connection_id)

    # When the delete completes
    answer = api.call("DELETE", f"/connections/{connection_id}")

    # Then the grant the row held when it went was revoked, not only the one the delete first read
    assert answer.status == 200, answer.body
    assert refreshed
    assert provider.stats().live_refresh_tokens == frozenset()
    assert granted in provider.stats().revoked


def test_a_delete_completed_while_a_refresh_is_at_the_provider_leaves_no_live_grant(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a DELETE that completes between the provider's refresh answer and the write of the new tokens
    original = OAuthClient.refresh

    def delete_meanwhile(self: OAuthClient, *args: Any, **kwargs: Any) -> Any:
        tokens = original(self, *args, **kwargs)
        deleted = api.call("DELETE", f"/connections/{connection_id}")
        assert deleted.status == 200, deleted.body
        return tokens

    monkeypatch.setattr(OAuthClient, "refresh", delete_meanwhile)

    # When the refresh tries to store them
    answer = fetch(api, connection_id)

    # Then it finds the row gone and revokes what it was given: neither grant stays live
    assert answer.status == 404, answer.body
    assert provider.stats().live_refresh_tokens == frozenset()


# -- the end user connects again while a refresh is in flight ------------------------------------------------


def reconnect_before_the_store(api: Api, connection_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end user connects again between the provider's refresh answer and its write (once)."""
    original = RefreshStatements.store

    def reconnect_first(self: RefreshStatements, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(RefreshStatements, "store", original)
        assert connect_account(api) == connection_id
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RefreshStatements, "store", reconnect_first)


def test_a_reconnect_during_a_refresh_keeps_the_new_grant_and_revokes_the_refreshed_one(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an end user who connects again between the provider's refresh answer and its write
    reconnect_before_the_store(api, connection_id, monkeypatch)
    live_before = set(provider.stats().live_refresh_tokens)

    # When the refresh completes
    answer = fetch(api, connection_id)

    # Then the new grant stands, and the tokens refreshed from the replaced grant are not left live
    assert answer.status == 200, answer.body
    stored = stored_refresh_token(db, connection_id)
    assert set(provider.stats().live_refresh_tokens) - live_before == {stored}
    assert provider.access_token_is_active(answer.json()["access_token"])
    assert row(db, connection_id).status == "active"


def test_a_reconnect_during_a_refresh_at_a_whole_authorization_provider_revokes_nothing(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where revoking one token ends every grant of the client for the user (issue 13.6), neither the reconnect nor
    the superseded refresh may revoke: the new grant would end with what they revoke."""
    # Given a Google-like provider, and an end user who connects again between a refresh's answer and its write
    provider.configure(revoke_whole_authorization=True)
    install_demo_provider(db.owner_target, provider, revocation_scope="authorization")
    reconnect_before_the_store(api, connection_id, monkeypatch)

    # When the refresh completes
    answer = fetch(api, connection_id)

    # Then nothing was revoked, and the new grant works
    assert answer.status == 200, answer.body
    assert provider.stats().revoked == frozenset()
    assert provider.access_token_is_active(answer.json()["access_token"])


def test_a_refresh_failing_after_a_reconnect_does_not_mark_the_new_grant(
    api: Api, provider: DemoProvider, db: TestDatabase, connection_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an end user who connects again while the refresh of the old grant is at the provider, which refuses it
    original = OAuthClient.refresh

    def reconnect_first(self: OAuthClient, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(OAuthClient, "refresh", original)
        assert connect_account(api) == connection_id
        provider.inject(Fault.error(400, "invalid_grant"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OAuthClient, "refresh", reconnect_first)

    # When the refresh fails
    answer = fetch(api, connection_id)

    # Then the caller gets the new grant's token and the connection stays active
    assert answer.status == 200, answer.body
    after = row(db, connection_id)
    assert (after.status, after.last_error_code) == ("active", None)
    assert provider.access_token_is_active(answer.json()["access_token"])
