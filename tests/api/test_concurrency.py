"""Fifty callers want the same expired token at once: the provider sees one refresh, and all get its token.

Each thread calls the token service directly: one Lambda serves one request at a time, so concurrent
callers are separate processes in production, sharing nothing but the database, as the threads here share
nothing but the database and the process's caches.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from connvault.services.tokens import IssuedCredential, get_token
from tests.api.conftest import Api, connect_account
from tests.support.factories import owner

CALLERS = 50


def test_fifty_concurrent_fetches_of_an_expired_token_cause_one_refresh(api: Api, provider, db, reconfigure) -> None:
    reconfigure(db_max_overflow=CALLERS + 10)
    connection_id = connect_account(api)
    with owner(db) as connection:
        connection.run(
            "UPDATE connections SET expires_at = now() - interval '1 minute' WHERE id = CAST(:i AS uuid)",
            i=connection_id,
        )
    provider.configure(latency_seconds=0.3)
    start = threading.Barrier(CALLERS)

    def fetch(_: int) -> IssuedCredential:
        start.wait()
        return get_token(api.tenant.tenant_id, UUID(connection_id))

    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        issued = list(pool.map(fetch, range(CALLERS)))

    stats = provider.stats()
    assert stats.token_calls == {"authorization_code": 1, "refresh_token": 1}
    assert stats.max_in_flight == 1
    assert stats.refresh_token_reuse == 0
    tokens = {credential.credentials.access_token.reveal() for credential in issued}
    assert len(tokens) == 1
    (token,) = tokens
    assert provider.access_token_is_active(token)
    assert {credential.expires_at for credential in issued} == {issued[0].expires_at}
