"""What a run does with each kind of provider answer, and the retry schedule of transient failures."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from connvault.migrations import SCHEMA_DIR, load_migrations, migrate, rollback
from connvault.models import ConnectionStatus
from connvault.oauth.client import OAuthClient
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import RunReport
from connvault.services.scheduler import refresh_due
from demo_provider import Fault
from tests.scheduler.conftest import FAST, POLICY, Site, forever, held_leases, load, set_columns
from tests.support.factories import owner

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.support.database import TestDatabase


def run(oauth: OAuthClient, *, policy: RefreshPolicy = POLICY, now: datetime | None = None) -> RunReport:
    return refresh_due(
        remaining_ms=forever, config=FAST, policy=policy, oauth=oauth, now=(lambda: now) if now else _utcnow
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.error(400, "invalid_grant"), "invalid_grant"),
        (Fault.error(400, "bad_refresh_token"), "bad_refresh_token"),
    ],
    ids=["invalid_grant", "bad_refresh_token"],
)
def test_permanent_failure_needs_reauth_and_is_not_retried(
    site: Site, db: TestDatabase, oauth: OAuthClient, fault: Fault, reason: str
) -> None:
    # Given a due connection whose provider refuses the grant for good
    [connection_id] = site.connect()
    site.demo.inject(fault)

    # When a run tries it
    report = run(oauth)

    # Then it needs reauth, with the provider's code, and the next run leaves it alone
    assert report.permanent_failures == 1
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.last_error_code) == (ConnectionStatus.NEEDS_REAUTH, reason)
    assert run(oauth).claimed == 0
    assert site.refresh_calls() == 1
    assert held_leases(db) == 0


def test_an_answer_for_another_account_needs_reauth_and_is_neither_stored_nor_revoked(
    make_site: Callable[..., Site], db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a due connection of alice's (the provider's id tokens name her)
    site = make_site(id_token_subject="alice")
    [connection_id] = site.connect()
    before = load(site.tenant_id, connection_id)

    # When a run's refresh is answered for mallory (OpenID Connect Core 12.2: the sub must stay the same)
    site.demo.configure(id_token_subject="mallory")
    report = run(oauth)

    # Then the answer is refused: the connection needs reauth with alice's grant as it was, nothing was revoked
    assert report.permanent_failures == 1
    after = load(site.tenant_id, connection_id)
    assert (after.status, after.last_error_code) == (ConnectionStatus.NEEDS_REAUTH, "account_changed")
    assert after.credentials == before.credentials
    assert site.demo.stats().revoked == frozenset()
    assert run(oauth).claimed == 0
    assert held_leases(db) == 0


def test_a_token_refreshed_without_an_expiry_lives_as_long_as_the_last_and_is_claimed_again(
    make_site: Callable[..., Site], oauth: OAuthClient
) -> None:
    """An answer without a usable ``expires_in`` once made the token count as never expiring: never claimed again,
    and served dead by token fetch forever."""
    # Given a due connection (the demo's tokens live an hour), and a provider that stops saying how long
    site = make_site()
    [connection_id] = site.connect(expires_in=timedelta(minutes=5))
    before = load(site.tenant_id, connection_id)
    site.demo.configure(expires_in=None)

    # When a run refreshes it
    refreshed_at = datetime.now(UTC)
    assert run(oauth).refreshed == 1

    # Then the new token is taken to live as long as the one it replaced, and a later run takes it again
    after = load(site.tenant_id, connection_id)
    assert before.expires_at is not None and before.issued_at is not None
    assert after.expires_at is not None and after.last_refresh_at is not None
    lived = before.expires_at - before.issued_at
    assert after.expires_at - after.last_refresh_at == pytest.approx(lived, abs=timedelta(seconds=1))
    assert run(oauth, now=refreshed_at + timedelta(hours=1)).refreshed == 1


@pytest.mark.parametrize(
    ("fault", "reason", "at_least"),
    [
        (Fault.server_error(), "server_error", 15),
        (Fault.error(503, "temporarily_unavailable"), "server_error", 15),
        (Fault.rate_limited("120"), "rate_limited", 120),
        (Fault.slow(3.0), "unreachable", 15),
    ],
    ids=["500", "503", "429_retry_after", "timeout"],
)
def test_transient_failure_backs_off_and_keeps_the_connection_active(
    site: Site, db: TestDatabase, oauth: OAuthClient, fault: Fault, reason: str, at_least: int
) -> None:
    # Given a due connection whose provider fails in a retryable way (the client times out after 2 s)
    [connection_id] = site.connect()
    site.demo.inject(fault)

    # When a run tries it
    before = datetime.now(UTC)
    report = run(oauth)

    # Then the failure is counted and the next try waits for the backoff (or Retry-After, if longer)
    assert report.transient_failures == 1
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.refresh_failures, connection.last_error_code) == (
        ConnectionStatus.ACTIVE,
        1,
        reason,
    )
    assert connection.next_refresh_at is not None
    wait = (connection.next_refresh_at - before).total_seconds()
    assert at_least <= wait <= max(at_least, 30) + 5
    assert run(oauth).claimed == 0
    assert held_leases(db) == 0


REFUSED_REQUESTS = {
    "403_html_page": (Fault(status=403, body=b"<html>Request blocked</html>", content_type="text/html"), "http_403"),
    "404": (Fault(status=404, body=b"not found", content_type="text/plain"), "http_404"),
    "410": (Fault(status=410, body=b""), "http_410"),
    "invalid_request": (Fault.error(400, "invalid_request"), "invalid_request"),
    "unsupported_grant_type": (Fault.error(400, "unsupported_grant_type"), "unsupported_grant_type"),
    "invalid_scope": (Fault.error(400, "invalid_scope"), "invalid_scope"),
    "unknown_code": (Fault.error(400, "something_odd"), "something_odd"),
    "200_with_an_error": (Fault(status=200, body=b'{"error": "something_odd"}'), "something_odd"),
}
"""Answers that refuse the request without saying the grant is dead (``ProviderRejected``)."""


@pytest.mark.parametrize("case", sorted(REFUSED_REQUESTS))
def test_a_refused_request_is_a_counted_failure_with_backoff_not_needs_reauth(
    site: Site, db: TestDatabase, oauth: OAuthClient, case: str
) -> None:
    """An outside probe: every 4xx without a dead-grant code sent the connection to needs_reauth for good."""
    # Given a due connection whose provider refuses the request, not the grant
    [connection_id] = site.connect()
    fault, reason = REFUSED_REQUESTS[case]
    site.demo.inject(fault)

    # When a run tries it
    before = datetime.now(UTC)
    report = run(oauth)

    # Then the failure is counted with the provider's code, and the next try waits for the backoff
    assert (report.transient_failures, report.permanent_failures) == (1, 0)
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.refresh_failures, connection.last_error_code) == (
        ConnectionStatus.ACTIVE,
        1,
        reason,
    )
    assert connection.next_refresh_at is not None
    assert POLICY.backoff_base_seconds / 2 - 1 <= (connection.next_refresh_at - before).total_seconds()
    assert run(oauth).claimed == 0
    assert held_leases(db) == 0

    # And once the backoff has passed, the next run refreshes it
    assert run(oauth, now=connection.next_refresh_at + timedelta(seconds=1)).refreshed == 1
    refreshed = load(site.tenant_id, connection_id)
    assert (refreshed.status, refreshed.refresh_failures, refreshed.last_error_code) == (
        ConnectionStatus.ACTIVE,
        0,
        None,
    )


def test_a_provider_refusing_every_refresh_for_a_while_sends_no_connection_to_reconnect(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    """An outside probe: a provider-wide 403 (a firewall's bad hour) during one run left every connection of the
    provider needs_reauth, and token fetch refused their still-valid tokens with 409."""
    # Given a provider's due connections and a firewall refusing every refresh during one run
    ids = site.connect(6)
    site.demo.inject(*[Fault(status=403, body=b"<html>blocked</html>", content_type="text/html")] * 6)
    report = run(oauth)

    # When the provider is back and the backoff has passed
    later = max(load(site.tenant_id, ident).next_refresh_at for ident in ids)  # type: ignore[type-var]
    after = run(oauth, now=later + timedelta(seconds=1))

    # Then none needed a reconnect: each was retried and refreshed
    assert (report.transient_failures, report.permanent_failures) == (6, 0)
    assert after.refreshed == 6
    assert {load(site.tenant_id, ident).status for ident in ids} == {ConnectionStatus.ACTIVE}
    assert site.refresh_calls() == 12


def test_backoff_doubles_up_to_the_cap_then_gives_up_with_error(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a connection that expires in 14 minutes and a provider that keeps failing
    policy = replace(POLICY, backoff_base_seconds=10, backoff_cap_seconds=40, max_failures=6)
    start = datetime.now(UTC)
    [connection_id] = site.connect(expires_in=timedelta(minutes=14))
    site.demo.inject(*[Fault.server_error()] * 6)

    # When runs come each time the backoff has passed
    moment = start
    waits: list[float] = []
    for _ in range(6):
        report = run(oauth, policy=policy, now=moment)
        assert report.transient_failures == 1
        connection = load(site.tenant_id, connection_id)
        assert connection.next_refresh_at is not None
        waits.append((connection.next_refresh_at - moment).total_seconds())
        moment = connection.next_refresh_at

    # Then each wait lies in the upper half of 10, 20, 40, 40, 40 (capped) seconds...
    for wait, ceiling in zip(waits, [10, 20, 40, 40, 40], strict=False):
        assert ceiling / 2 <= wait <= ceiling
    # ...and the sixth failure leaves the connection in error, with the last error kept, no longer scanned
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.refresh_failures, connection.last_error_code) == (
        ConnectionStatus.ERROR,
        6,
        "server_error",
    )
    assert run(oauth, policy=policy, now=moment + timedelta(hours=1)).claimed == 0
    assert site.refresh_calls() == 6


def test_transient_failure_after_the_token_expired_marks_it_expired(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a connection whose token ran out a minute ago (the scheduler was behind) and a failing provider
    [connection_id] = site.connect(expires_in=timedelta(minutes=-1))
    site.demo.inject(Fault.rate_limited("5"))

    # When a run tries it
    assert run(oauth).transient_failures == 1

    # Then it is expired, with the provider's error kept, and the scheduler stops scanning it
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.last_error_code) == (ConnectionStatus.EXPIRED, "rate_limited")
    assert run(oauth, now=datetime.now(UTC) + timedelta(minutes=5)).claimed == 0
    assert held_leases(db) == 0


@pytest.mark.parametrize("column", ["credentials", "client_secret"])
def test_a_fault_on_our_side_is_pushed_back_not_retried_in_a_loop(
    site: Site, db: TestDatabase, oauth: OAuthClient, column: str
) -> None:
    # Given a due connection whose sealed credentials, or whose integration's client secret, cannot be opened
    [connection_id] = site.connect()
    table = "connections" if column == "credentials" else "integrations"
    with owner(db) as connection:  # the tag's last byte flipped: set to 0, it was left as it was 1 time in 256
        connection.run(
            f"UPDATE {table} SET {column} = set_byte({column}, length({column}) - 1,"
            f" get_byte({column}, length({column}) - 1) # 255) WHERE tenant_id = :t",
            t=site.tenant_id,
        )

    # When a run tries it
    before = datetime.now(UTC)
    report = run(oauth)

    # Then it is counted once as our error (apart from the provider's), put off by the base backoff, and no
    # provider was called
    assert (report.claimed, report.errors) == (1, 1)
    assert site.refresh_calls() == 0
    assert held_leases(db) == 0
    with owner(db) as connection:
        [[status, code, next_refresh_at]] = connection.run(
            "SELECT status, fault_code, next_refresh_at FROM connections WHERE id = :id", id=connection_id
        )
    assert (status, code) == ("active", "decryption_failed")
    assert next_refresh_at > before + timedelta(seconds=POLICY.backoff_base_seconds / 2 - 1)


def test_a_fault_met_inside_a_refresh_is_recorded_pushed_back_and_parked_not_claimed_run_after_run(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    """An outside probe: a token_url holding ``{x}`` made every refresh fail before any provider call, and since the
    refresh gave its lease back on the way out, the fault was recorded under a lease no longer on the row: nothing
    was written, and every run claimed the connection again."""
    # Given a due connection whose provider's token_url holds a placeholder nothing fills
    [connection_id] = site.connect()
    with owner(db) as sql:
        sql.run("UPDATE providers SET token_url = token_url || '{x}' WHERE id = :p", p=site.provider.id)

    # When a run meets it, and another comes at once
    first, at_once = run(oauth), run(oauth)
    pushed_back = load(site.tenant_id, connection_id)

    # And more runs come, each after the backoff
    later = []
    for _ in range(3):
        set_columns(db, connection_id, next_refresh_at=None)
        later.append(run(oauth))

    # Then the fault was recorded and pushed back (the run at once claims nothing), and the third in a row parks it,
    # visibly, with no provider call at any time and no lease left behind
    assert (first.claimed, first.errors, at_once.claimed) == (1, 1, 0)
    assert pushed_back.next_refresh_at is not None and pushed_back.next_refresh_at > datetime.now(UTC)
    assert [(r.claimed, r.errors, r.parked) for r in later] == [(1, 1, 0), (1, 0, 1), (0, 0, 0)]
    parked = load(site.tenant_id, connection_id)
    assert (parked.status, parked.last_error_code, parked.refresh_failures) == (
        ConnectionStatus.PARKED,
        "provider_misconfigured",
        0,
    )
    assert site.refresh_calls() == 0
    assert held_leases(db) == 0


def test_a_connection_whose_integration_was_deleted_waits_for_it_and_refreshes_once_it_is_back(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    """Migration 0089: deleting the tenant's app is not the end user's doing, and the grant is still good at the
    provider; the connection waits (it is not even claimed) and keeps its grant, as for refused credentials."""
    # Given a due connection whose tenant deleted the integration (kept aside to define it again)
    [connection_id] = site.connect()
    with owner(db) as keeper:
        keeper.run("CREATE TEMP TABLE kept AS SELECT * FROM integrations WHERE tenant_id = :t", t=site.tenant_id)
        keeper.run("DELETE FROM integrations WHERE tenant_id = :t", t=site.tenant_id)

        # When runs come, Then they leave it alone: not claimed, no provider call, not counted as due
        report = run(oauth)
        [[backlog]] = keeper.run("SELECT connvault_due_backlog(now(), 3600)")
        waiting = load(site.tenant_id, connection_id)

        # And once the integration is defined again, the next run refreshes it
        keeper.run("INSERT INTO integrations SELECT * FROM kept")
        after = run(oauth)

    assert (report.claimed, report.permanent_failures, backlog) == (0, 0, 0)
    assert (waiting.status, waiting.last_error_code) == (ConnectionStatus.ACTIVE, None)
    assert after.refreshed == 1
    assert site.refresh_calls() == 1


def test_connections_the_old_rule_sent_to_needs_reauth_for_a_deleted_integration_are_active_again(
    site: Site, db: TestDatabase
) -> None:
    """Migration 0089 gives back what the old rule took: no provider had refused those grants. (This process's own
    database is taken below 0089 and up again; its rows stay.)"""
    [connection_id] = site.connect()
    below = max(m.version for m in load_migrations(SCHEMA_DIR) if m.version < "0089")
    rollback(db.owner_target, to=below, allow_data_loss=True)  # newer files may drop data of their own
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET status = 'needs_reauth', last_error_code = 'integration_missing' WHERE id = :c",
            c=connection_id,
        )
    migrate(db.owner_target)

    restored = load(site.tenant_id, connection_id)
    assert (restored.status, restored.last_error_code) == (ConnectionStatus.ACTIVE, None)


def test_connections_the_old_rule_sent_to_needs_reauth_for_a_refused_request_are_active_again(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    """Migration 0092 gives back what the old rule took: a refused request said nothing of the grant. A dead-grant
    code, or a reason of connvault's own, keeps its connection needs_reauth. (This process's own database is taken
    below 0092 and up again; its rows stay.)"""
    codes = ["http_403", "unsupported_grant_type", "something_odd", "invalid_grant", "refresh_interrupted"]
    ids = dict(zip(codes, site.connect(len(codes)), strict=True))
    below = max(m.version for m in load_migrations(SCHEMA_DIR) if m.version < "0092")
    rollback(db.owner_target, to=below, allow_data_loss=True)  # newer files may drop data of their own
    with owner(db) as sql:
        for code, ident in ids.items():
            sql.run(
                "UPDATE connections SET status = 'needs_reauth', last_error_code = :e, refresh_failures = 1"
                " WHERE id = :c",
                e=code,
                c=ident,
            )
    migrate(db.owner_target)

    after = {code: load(site.tenant_id, ident) for code, ident in ids.items()}
    assert {code: (c.status.value, c.last_error_code, c.refresh_failures) for code, c in after.items()} == {
        "http_403": ("active", "http_403", 1),
        "unsupported_grant_type": ("active", "unsupported_grant_type", 1),
        "something_odd": ("active", "something_odd", 1),
        "invalid_grant": ("needs_reauth", "invalid_grant", 1),
        "refresh_interrupted": ("needs_reauth", "refresh_interrupted", 1),
    }
    # And the next run refreshes the ones made active again
    assert run(oauth).refreshed == 3
