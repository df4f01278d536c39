"""Helpers the hardening tests share: a connection's refresh columns as stored, ways to make it due, fetch its
token and run the scheduler, all with the short timeouts these tests use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import SchedulerConfig
from connvault.services.scheduler import refresh_due
from tests.api.conftest import stored_connection
from tests.support.factories import owner

if TYPE_CHECKING:
    from demo_provider import DemoProvider
    from tests.api.conftest import Answer, Api
    from tests.support.database import TestDatabase

TIMEOUT = 0.5
"""The provider timeout in these tests; a slow provider sleeps four times as long."""

RUN = SchedulerConfig(concurrency=2, per_provider_concurrency=2, jitter_seconds=0.0, http_timeout_seconds=TIMEOUT)
POLICY = RefreshPolicy(wait_seconds=3.0)


@dataclass(frozen=True)
class Row:
    """The refresh-relevant columns of a connection, as stored."""

    status: str
    last_error_code: str | None
    refresh_failures: int
    next_refresh_at: datetime | None
    lease_until: datetime | None
    lease_owner: Any
    credentials: bytes
    fault_count: int
    fault_code: str | None

    @property
    def leased(self) -> bool:
        return self.lease_until is not None or self.lease_owner is not None


def row(db: TestDatabase, connection_id: str) -> Row:
    with owner(db) as sql:
        found = sql.run(
            "SELECT status, last_error_code, refresh_failures, next_refresh_at, refresh_lease_until,"
            " refresh_lease_owner, credentials, fault_count, fault_code FROM connections WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )
    return Row(*found[0])


def make_due(db: TestDatabase, connection_id: str) -> None:
    """Inside the scheduler's horizon, still valid: due for a refresh ahead of time."""
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET expires_at = now() + interval '60 seconds' WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )


def end_backoff(db: TestDatabase, connection_id: str) -> None:
    """Let the backoff after a failure pass (``next_refresh_at`` a moment ago): until then no fetch, forced or not,
    calls the provider."""
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET next_refresh_at = now() - interval '1 second' WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )


def stored_refresh_token(db: TestDatabase, connection_id: str) -> str:
    token = stored_connection(db, connection_id).refresh_token
    assert token is not None
    return token.reveal()


def fetch(api: Api, connection_id: str, *, force: bool = True) -> Answer:
    return api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": str(force).lower()})


def run_scheduler(oauth: OAuthClient | None = None) -> Any:
    """One scheduled run with all the time it wants; ``oauth`` defaults to a client with the test timeout."""
    transport = None
    if oauth is None:
        transport = HttpTransport(TIMEOUT)
        oauth = OAuthClient(transport)
    try:
        return refresh_due(remaining_ms=lambda: 600_000, config=RUN, policy=POLICY, oauth=oauth)
    finally:
        if transport is not None:
            transport.close()


def settle(provider: DemoProvider) -> None:
    """Wait for requests the provider is still working on after the client gave up on them."""
    deadline = time.monotonic() + 10
    while provider.stats().in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
