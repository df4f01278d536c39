"""Concurrency soak: a few hundred connections on a rotating provider, and for a bounded time, all at once, end
users connecting, token fetches (some forced), scheduled runs that find every connection due, and deletions.

Afterwards every remaining connection must be consistent: active, unleased, holding the refresh token the provider
would accept now and an access token it considers live; and the provider must never have been shown a refresh
token it had already rotated (a lost single-flight race shows up there first).

Threads call the services directly, each with its own unit of work, as separate Lambda instances would; the
handlers' resolver keeps the current event on a shared object and is one-request-at-a-time by design.
``CONNVAULT_SOAK_SECONDS`` sets the duration (``make test-long`` raises it).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs
from uuid import UUID

import pytest

from connvault.db.uow import UnitOfWork
from connvault.errors import NotFound, ProviderUnavailable, ReauthRequired
from connvault.models import ConnectionStatus, OAuth2Credentials
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.redacted import Redacted
from connvault.services import connect, connections, tokens
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import SchedulerConfig
from connvault.services.scheduler import refresh_due
from demo_provider import DemoProvider
from devserver.demo_setup import DEMO_RETURN_URL
from tests.api.conftest import Api, follow_authorize
from tests.scheduler import support as grants
from tests.support.database import TestDatabase
from tests.support.factories import owner
from tests.support.secrets import SecretRegistry

SECONDS = float(os.environ.get("CONNVAULT_SOAK_SECONDS", "15"))
CONNECTIONS = 250
CALLBACK_URL = "http://127.0.0.1:3000/oauth/callback"
TOKEN_SECONDS = 600
RUN = SchedulerConfig(
    # A fresh token (600 s) is not due; the ones the test ages into the horizon are, a few more each second.
    horizon_seconds=TOKEN_SECONDS - 10,
    batch_size=50,
    concurrency=8,
    per_provider_concurrency=8,
    lease_seconds=30,
    deadline_margin_ms=500,
    jitter_seconds=0.0,
    http_timeout_seconds=5.0,
)
POLICY = RefreshPolicy(wait_seconds=10.0)


def stacks() -> str:
    """Where every thread is, for the report of a stuck soak."""
    frames = sys._current_frames()
    return "\n".join(
        f"--- {thread.name}\n" + "".join(traceback.format_stack(frames[thread.ident], limit=12))
        for thread in threading.enumerate()
        if thread.ident in frames
    )


class Pool:
    """The ids of the connections that exist, shared by the threads."""

    def __init__(self, ids: list[UUID]) -> None:
        self._ids = list(ids)
        self._lock = threading.Lock()

    def pick(self) -> UUID | None:
        with self._lock:
            return random.choice(self._ids) if self._ids else None

    def add(self, ident: UUID) -> None:
        with self._lock:
            self._ids.append(ident)

    def take(self) -> UUID | None:
        with self._lock:
            return self._ids.pop(random.randrange(len(self._ids))) if self._ids else None


class Soak:
    """Runs workers until the deadline; counts outcomes and keeps any exception nobody expected.

    On a loaded host the deadline is pushed back (up to ``max_seconds``) until ``enough()`` says the soak did
    the amount of work its checks need, rather than the checks being weakened."""

    def __init__(self, seconds: float, *, enough: Callable[[], bool], max_seconds: float) -> None:
        started = time.monotonic()
        self.deadline = started + seconds
        self.hard_deadline = started + max_seconds
        self._enough = enough
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    def running(self) -> bool:
        now = time.monotonic()
        if now >= self.deadline and now < self.hard_deadline and not self._enough():
            self.deadline = min(now + 1.0, self.hard_deadline)
        return now < self.deadline

    def worker(self, name: str, step: Callable[[], str], pause: float = 0.0) -> threading.Thread:
        def loop() -> None:
            while self.running():
                try:
                    outcome = step()
                except Exception as exc:  # the soak's verdict: collected, then asserted empty
                    with self._lock:
                        self.unexpected.append(f"{name}: {type(exc).__name__}")
                    outcome = "unexpected"
                with self._lock:
                    self.outcomes[f"{name}:{outcome}"] += 1
                time.sleep(pause)

        return threading.Thread(target=loop, name=f"soak-{name}", daemon=True)


@pytest.mark.slow
@pytest.mark.xdist_group("cpu_heavy")  # never beside the browser tests: the soak counts refreshes in 15 s
def test_parallel_connect_fetch_refresh_and_delete_leave_every_connection_consistent(
    api: Api, provider: DemoProvider, db: TestDatabase, secrets: SecretRegistry
) -> None:
    # Given a few hundred connections holding tokens the rotating provider really issued
    provider.configure(expires_in=TOKEN_SECONDS, latency_seconds=0.01)
    tenant_id = api.tenant.tenant_id
    with UnitOfWork(tenant_id) as uow:
        demo = uow.providers.get_by_slug("demo")
    minted = grants.mint_grants(provider, demo, CONNECTIONS, register=secrets.add)
    ids = grants.add_connections(
        tenant_id, demo, minted, expires_at=datetime.now(UTC) + timedelta(seconds=TOKEN_SECONDS), end_user_prefix="soak"
    )
    with owner(db) as sql:  # about half due at once, the rest coming due during the soak
        sql.run(
            "UPDATE connections SET expires_at = now() + make_interval(secs => :low + random() * 40)"
            " WHERE tenant_id = :t",
            low=RUN.horizon_seconds - 20,
            t=tenant_id,
        )
    pool = Pool(ids)
    soak = Soak(
        SECONDS,
        enough=lambda: provider.stats().token_calls.get("refresh_token", 0) > CONNECTIONS // 2,
        max_seconds=4 * SECONDS,
    )
    transport = HttpTransport(RUN.http_timeout_seconds, maxsize=RUN.concurrency)
    oauth = OAuthClient(transport)
    connected = [0]

    def fetch() -> str:
        ident = pool.pick()
        if ident is None:
            return "empty"
        try:
            tokens.get_token(tenant_id, ident, force_refresh=random.random() < 0.2, policy=POLICY)
        except NotFound:
            return "gone"  # deleted meanwhile
        except (ReauthRequired, ProviderUnavailable) as refused:
            # Only a connection being deleted (its refresh token revoked first) should get here: every one that
            # remains is checked at the end, and one left needs_reauth or unrefreshed fails the test there.
            return refused.code
        return "served"

    def schedule() -> str:
        def remaining_ms() -> int:  # each run ends with the soak
            return (int((soak.deadline - time.monotonic()) * 1000) if soak.running() else 0) + RUN.deadline_margin_ms

        report = refresh_due(remaining_ms=remaining_ms, config=RUN, policy=POLICY, oauth=oauth)
        # Failures can only be refreshes of connections being deleted; the end checks every one that remains.
        return "clean" if report.permanent_failures == report.transient_failures == 0 else "failures"

    def connect_one() -> str:
        connected[0] += 1
        session = connect.create_connect_session(
            UnitOfWork(tenant_id),
            connect.ConnectRequest(provider="demo", end_user_id=f"new-{connected[0]}", return_url=DEMO_RETURN_URL),
            callback_url=CALLBACK_URL,
        )
        query = parse_qs(follow_authorize(session.authorize_url.reveal(), secrets))
        result = connect.complete_connect(
            connect.CallbackParams(
                state=Redacted(query["state"][0]), code=Redacted(query["code"][0]), iss=query.get("iss", [None])[0]
            ),
            callback_url=CALLBACK_URL,
        )
        if result.connection_id is None:
            return f"failed:{result.error}"
        pool.add(result.connection_id)
        return "connected"

    def delete_one() -> str:
        ident = pool.take()
        if ident is None:
            return "empty"
        connections.delete_connection(UnitOfWork(tenant_id), ident)
        return "deleted"

    # When they all run at once for a while
    workers = [
        *(soak.worker(f"fetch{n}", fetch) for n in range(3)),
        soak.worker("schedule", schedule, pause=0.1),
        soak.worker("connect", connect_one, pause=0.05),
        soak.worker("delete", delete_one, pause=0.1),
    ]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=max(0.0, soak.hard_deadline + 60 - time.monotonic()))
    finally:
        transport.close()
    stuck = [worker.name for worker in workers if worker.is_alive()]
    assert not stuck, f"soak workers stuck: {stuck}\n{stacks()}"

    # Then nothing unexpected happened, and the provider never saw a rotated refresh token again
    stats = provider.stats()
    print(f"soak: {dict(soak.outcomes)}; provider calls {stats.token_calls}, max in flight {stats.max_in_flight}")
    assert soak.unexpected == []
    assert soak.outcomes["connect:connected"] > 0 and soak.outcomes["delete:deleted"] > 0
    assert stats.token_calls.get("refresh_token", 0) > CONNECTIONS // 2
    assert stats.refresh_token_reuse == 0

    # And every remaining connection is consistent: active, unleased, with tokens the provider accepts now
    with owner(db) as sql:
        leases = sql.run("SELECT count(*) FROM connections WHERE refresh_lease_owner IS NOT NULL")[0][0]
        remaining = [
            UUID(str(ident)) for (ident,) in sql.run("SELECT id FROM connections WHERE tenant_id = :t", t=tenant_id)
        ]
    assert leases == 0
    assert remaining
    broken = []
    kept = []
    with UnitOfWork(tenant_id) as uow:
        for ident in remaining:
            connection = uow.connections.get(ident)
            kept.append(connection)
            credentials = connection.credentials
            assert isinstance(credentials, OAuth2Credentials) and credentials.refresh_token is not None
            if (
                connection.status is not ConnectionStatus.ACTIVE
                or credentials.refresh_token.reveal() not in stats.live_refresh_tokens
                or not provider.access_token_is_active(credentials.access_token.reveal())
            ):
                broken.append((str(ident), connection.status.value, connection.last_error_code))
    assert broken == []
    held = {c.refresh_token.reveal() for c in kept if c.refresh_token is not None}
    print(f"soak: {len(stats.live_refresh_tokens - held)} live refresh tokens belong to no connection")
