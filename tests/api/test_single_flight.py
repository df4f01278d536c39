"""Single flight coalesces callers instead of serializing them (issue 13, item 12).

Measured from outside against a provider issuing 60-second tokens: fifty fetches with a ``min_ttl`` beyond the
token's life each refreshed, one after another, and so did plain fetches, because the provider's margin was
longer than the whole token. Here a caller accepts any refresh newer than what it read, a forced caller any
refresh begun after it asked, and a margin or ``min_ttl`` the provider cannot give is capped by the token's
lifetime, so the answer is the freshest token rather than a refresh per call.

Concurrent callers are threads calling the token service, each a stand-in for a Lambda instance sharing
nothing but the database; fewer threads than requests model instances that serve several requests each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID

from connvault.models import OAuth2Credentials
from connvault.services.tokens import IssuedCredential, get_token
from demo_provider import DemoProvider
from tests.api.conftest import Api, connect_account
from tests.support.factories import owner


def refresh_calls(provider: DemoProvider) -> int:
    return provider.stats().token_calls.get("refresh_token", 0)


def access_token(issued: IssuedCredential) -> str:
    assert isinstance(issued.credentials, OAuth2Credentials)
    return issued.credentials.access_token.reveal()


def expire(db, connection_id: str) -> None:
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET expires_at = now() - interval '1 second' WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_fifty_fetches_with_a_min_ttl_beyond_the_tokens_life_cost_one_refresh(
    api: Api, provider: DemoProvider, db, reconfigure
) -> None:
    # Given a provider issuing 60-second tokens and a connection whose token has run out
    reconfigure(db_max_overflow=20)
    provider.configure(expires_in=60, latency_seconds=0.2)
    connection_id = connect_account(api)
    expire(db, connection_id)

    # When fifty fetches ask for an hour, served by ten instances at once
    def serve(_: int) -> list[IssuedCredential]:
        return [get_token(api.tenant.tenant_id, UUID(connection_id), min_ttl=3600) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=10) as pool:
        issued = [credential for batch in pool.map(serve, range(10)) for credential in batch]

    # Then the provider refreshed once, and every caller got that token, told it falls short of the hour
    assert refresh_calls(provider) == 1
    assert provider.stats().refresh_token_reuse == 0
    assert len({access_token(credential) for credential in issued}) == 1
    assert not any(credential.min_ttl_met for credential in issued)
    answer = api.call("GET", f"/connections/{connection_id}/token", query={"min_ttl": "3600"})
    assert answer.status == 200, answer.body
    assert answer.json()["min_ttl_met"] is False
    assert refresh_calls(provider) == 1


def test_sixty_second_tokens_are_refreshed_once_per_lifetime_not_per_fetch(api: Api, provider: DemoProvider) -> None:
    # Given a provider issuing 60-second tokens (shorter than its 300-second refresh margin)
    provider.configure(expires_in=60)
    connection_id = connect_account(api)
    start = datetime.now(UTC)

    # When the token is fetched every second of its life
    for second in range(60):
        moment = start + timedelta(seconds=second)
        issued = get_token(api.tenant.tenant_id, UUID(connection_id), now=lambda moment=moment: moment)
        assert issued.expires_at is not None and issued.expires_at > moment

    # Then it was refreshed once, past half its life, not on every fetch
    assert refresh_calls(provider) == 1


def test_a_min_ttl_the_provider_can_satisfy_is_met_and_one_it_cannot_is_answered_with_the_freshest_token(
    api: Api, provider: DemoProvider
) -> None:
    connection_id = connect_account(api)  # the demo's tokens live an hour

    within = get_token(api.tenant.tenant_id, UUID(connection_id), min_ttl=1800)
    beyond = get_token(api.tenant.tenant_id, UUID(connection_id), min_ttl=7200)

    assert (within.min_ttl_met, beyond.min_ttl_met) == (True, False)
    assert access_token(within) == access_token(beyond)
    assert refresh_calls(provider) == 0


def test_twenty_concurrent_forced_fetches_cost_at_most_two_provider_calls(
    api: Api, provider: DemoProvider, reconfigure
) -> None:
    reconfigure(db_max_overflow=30, refresh_wait_seconds=30)
    provider.configure(latency_seconds=1.0)
    connection_id = connect_account(api)
    start = threading.Barrier(20)

    def force(_: int) -> IssuedCredential:
        start.wait()
        return get_token(api.tenant.tenant_id, UUID(connection_id), force_refresh=True)

    with ThreadPoolExecutor(max_workers=20) as pool:
        issued = list(pool.map(force, range(20)))

    assert 1 <= refresh_calls(provider) <= 2
    assert provider.stats().refresh_token_reuse == 0
    assert all(provider.access_token_is_active(access_token(credential)) for credential in issued)


def test_forced_fetches_arriving_during_a_refresh_get_a_token_from_a_refresh_begun_after_they_asked(
    api: Api, provider: DemoProvider, reconfigure
) -> None:
    # Given a forced refresh already at the provider (and waiters patient enough for two refreshes on a busy host)
    reconfigure(db_max_overflow=30, refresh_wait_seconds=30)
    provider.configure(latency_seconds=1.0)
    connection_id = connect_account(api)
    tenant, connection = api.tenant.tenant_id, UUID(connection_id)
    with ThreadPoolExecutor(max_workers=21) as pool:
        first = pool.submit(get_token, tenant, connection, force_refresh=True)
        wait_until(lambda: provider.stats().in_flight == 1)

        # When twenty more forced fetches arrive while it is in flight
        late = list(pool.map(lambda _: get_token(tenant, connection, force_refresh=True), range(20)))
        early = first.result()

    # Then none of them takes the token of the refresh that began before it asked; one more refresh serves all
    assert refresh_calls(provider) == 2
    assert provider.stats().refresh_token_reuse == 0
    assert access_token(early) not in {access_token(credential) for credential in late}
    assert len({access_token(credential) for credential in late}) == 1
