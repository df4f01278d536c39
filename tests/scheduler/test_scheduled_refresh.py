"""The scheduled run against real Postgres and a real local provider: what it picks, what it stores, and
that no connection ever costs two provider calls, whoever else is refreshing at the same time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from connvault.db.uow import UnitOfWork
from connvault.models import ConnectionStatus, OAuth2Credentials
from connvault.oauth.client import OAuthClient
from connvault.services.claims import due_backlog
from connvault.services.runner import RunReport
from connvault.services.scheduler import refresh_due
from connvault.services.tokens import get_token
from tests.scheduler.conftest import FAST, POLICY, Site, forever, held_leases, load, set_columns

if TYPE_CHECKING:
    from tests.support.database import TestDatabase


def run(oauth: OAuthClient, **overrides: object) -> RunReport:
    return refresh_due(remaining_ms=forever, config=replace(FAST, **overrides), policy=POLICY, oauth=oauth)


def test_only_due_connections_are_refreshed(site: Site, db: TestDatabase, oauth: OAuthClient) -> None:
    # Given one connection of each kind the claim must tell apart
    [due] = site.connect(expires_in=timedelta(minutes=5))
    [later] = site.connect(expires_in=timedelta(hours=2))
    [backing_off] = site.connect(expires_in=timedelta(minutes=5))
    set_columns(db, backing_off, next_refresh_at=datetime.now(UTC) + timedelta(minutes=1))
    [needs_reauth] = site.connect(expires_in=timedelta(minutes=5))
    set_columns(db, needs_reauth, status="needs_reauth")
    [leased] = site.connect(expires_in=timedelta(minutes=5))
    set_columns(db, leased, refresh_lease_until=datetime.now(UTC) + timedelta(minutes=1))
    before = {cid: load(site.tenant_id, cid) for cid in (later, backing_off, needs_reauth, leased)}

    # When a run goes through
    report = run(oauth)

    # Then exactly the due one was refreshed, with one provider call
    assert (report.claimed, report.refreshed) == (1, 1)
    assert site.refresh_calls() == 1
    assert load(site.tenant_id, due).last_refresh_at is not None
    for connection_id, connection in before.items():
        assert load(site.tenant_id, connection_id).updated_at == connection.updated_at
    assert report.due_backlog == 0


def test_connections_with_non_expiring_tokens_are_never_scanned(
    make_site: Callable[..., Site], oauth: OAuthClient
) -> None:
    # Given a provider that issues tokens without expires_in (GitHub OAuth apps), and one with no refresh token
    site = make_site(expires_in=None)
    site.connect(3, expires_in=None)
    [no_refresh] = site.connect(expires_in=timedelta(minutes=5))
    with UnitOfWork(site.tenant_id) as uow:
        connection = uow.connections.get(no_refresh)
        assert isinstance(connection.credentials, OAuth2Credentials)
        grant_without_refresh = replace(connection.credentials, refresh_token=None)
        uow.connections.save_grant(
            site.tenant_id,
            site.provider.id,
            end_user_id=connection.end_user_id,
            alias="",
            grant=_grant(grant_without_refresh, connection.expires_at),
            granted_at=datetime.now(UTC),
            metadata={},
        )
        uow.commit()

    # When a run goes through, Then nothing is claimed or counted as due
    assert due_backlog(FAST) == 0
    report = run(oauth)
    assert report.claimed == 0
    assert site.refresh_calls() == 0


def test_refresh_stores_the_rotated_refresh_token_and_resets_failures(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a due connection that failed twice before
    [connection_id] = site.connect(expires_in=timedelta(minutes=5))
    set_columns(db, connection_id, refresh_failures=2, last_error_code="server_error")
    old = load(site.tenant_id, connection_id)
    assert old.refresh_token is not None

    # When a run refreshes it
    assert run(oauth).refreshed == 1

    # Then the new refresh token is the provider's only live one, and the failure count is gone
    new = load(site.tenant_id, connection_id)
    live = site.demo.stats().live_refresh_tokens
    assert new.refresh_token is not None
    assert new.refresh_token.reveal() in live
    assert old.refresh_token.reveal() not in live
    assert isinstance(new.credentials, OAuth2Credentials)
    assert site.demo.access_token_is_active(new.credentials.access_token.reveal())
    assert new.expires_at is not None and new.expires_at > datetime.now(UTC) + timedelta(minutes=55)
    assert (new.status, new.refresh_failures, new.last_error_code, new.next_refresh_at) == (
        ConnectionStatus.ACTIVE,
        0,
        None,
        None,
    )
    assert held_leases(db) == 0


def test_two_runs_at_once_never_refresh_a_connection_twice(site: Site, db: TestDatabase, oauth: OAuthClient) -> None:
    # Given 40 due connections and a provider that takes 50 ms per refresh
    site.connect(40)
    site.demo.configure(latency_seconds=0.05)

    # When two runs start together
    reports: list[RunReport] = []
    barrier = threading.Barrier(2)

    def one_run() -> None:
        barrier.wait()
        reports.append(run(oauth, batch_size=5))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each connection was refreshed once, by one of them, and both did some of the work
    stats = site.demo.stats()
    assert stats.token_calls.get("refresh_token") == 40
    assert stats.refresh_token_reuse == 0
    assert sum(report.refreshed for report in reports) == 40
    assert all(report.refreshed > 0 for report in reports)
    assert held_leases(db) == 0


def test_token_fetch_racing_the_scheduler_costs_one_provider_call(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a connection inside both the scheduler's horizon and token fetch's refresh margin,
    # and a slow provider so the two overlap
    [connection_id] = site.connect(expires_in=timedelta(seconds=60))
    site.demo.configure(latency_seconds=0.4)

    # When a run and five token fetches go at once
    tokens: list[str] = []
    start = threading.Barrier(6)

    def fetch() -> None:
        start.wait()
        issued = get_token(site.tenant_id, connection_id, oauth=oauth, policy=POLICY)
        assert isinstance(issued.credentials, OAuth2Credentials)
        tokens.append(issued.credentials.access_token.reveal())

    def schedule() -> None:
        start.wait()
        run(oauth)

    threads = [threading.Thread(target=fetch) for _ in range(5)] + [threading.Thread(target=schedule)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the provider saw one refresh, and every caller got the token it issued
    stats = site.demo.stats()
    assert stats.token_calls.get("refresh_token") == 1
    assert stats.refresh_token_reuse == 0
    stored = load(site.tenant_id, connection_id)
    assert isinstance(stored.credentials, OAuth2Credentials)
    assert tokens == [stored.credentials.access_token.reveal()] * 5
    assert held_leases(db) == 0


def test_per_provider_cap_is_never_exceeded(make_site: Callable[..., Site], oauth: OAuthClient) -> None:
    # Given one provider capped at 2 in the catalog and one left to the setting (3), in a pool of 8
    capped = make_site(max_concurrent_refreshes=2)
    default = make_site()
    for site in (capped, default):
        site.connect(12, mint_threads=1)
        site.demo.configure(latency_seconds=0.08)

    # When a run goes through
    report = run(oauth, concurrency=8, per_provider_concurrency=3)

    # Then both providers were held to their cap, and reached it
    assert report.refreshed == 24
    assert capped.demo.stats().max_in_flight == 2
    assert default.demo.stats().max_in_flight == 3


def test_run_stops_before_the_deadline_and_releases_unstarted_leases(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given more due connections than a short Lambda can refresh with two threads at 200 ms each
    ids = site.connect(30)
    site.demo.configure(latency_seconds=0.2)
    ends = time.monotonic() + 1.6

    def remaining_ms() -> int:
        return int((ends - time.monotonic()) * 1000)

    # When the run's deadline (1 s margin) comes after about 0.6 s
    started = time.monotonic()
    report = refresh_due(
        remaining_ms=remaining_ms, config=replace(FAST, concurrency=2, batch_size=10), policy=POLICY, oauth=oauth
    )
    elapsed = time.monotonic() - started

    # Then it stopped in time, claimed only what it could start soon, and left no lease behind
    assert report.stopped_by_deadline
    assert elapsed < 1.6
    assert 0 < report.refreshed < 30
    assert report.claimed < 30
    assert report.refreshed + report.unstarted == report.claimed
    assert site.refresh_calls() == report.refreshed
    assert held_leases(db) == 0
    assert report.due_backlog == 30 - report.refreshed

    # And the next run finishes the rest
    site.demo.configure(latency_seconds=0.0)
    assert run(oauth).refreshed == 30 - report.refreshed
    assert all(load(site.tenant_id, cid).last_refresh_at is not None for cid in ids)
    assert site.demo.stats().refresh_token_reuse == 0


def _grant(credentials: OAuth2Credentials, expires_at: datetime | None) -> object:
    from connvault.db.connections import NewCredentials

    return NewCredentials(credentials=credentials, token_type="Bearer", scopes=("read",), expires_at=expires_at)
