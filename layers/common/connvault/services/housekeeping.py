"""Housekeeping the scheduled function does before refreshing: purging what no request will ever come for.

Expired connect sessions (the end user never came back) hold a sealed PKCE verifier. A tenant's own purge runs
when it starts a connect session; tenants that start none would keep theirs forever, so the scheduled run
purges them across tenants, in bounded statements, for a bounded time.
"""

from __future__ import annotations

import time

from connvault.clock import Clock, utcnow
from connvault.db.uow import UnitOfWork
from connvault.observability import MetricName, logger, metrics

PURGE_BATCH = 5_000
PURGE_SECONDS = 5.0


def purge_expired_connect_sessions(
    *, now: Clock = utcnow, batch: int = PURGE_BATCH, seconds: float = PURGE_SECONDS
) -> int:
    """Delete expired connect sessions of every tenant, ``batch`` per statement, for at most ``seconds``; the
    number deleted. What is left (a huge backlog) goes in the next run."""
    purged = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        with UnitOfWork(None) as uow:
            deleted = uow.oauth_sessions.purge_all_expired(now(), limit=batch)
            uow.commit()
        purged += deleted
        if deleted < batch:
            break
    metrics.add_metric(name=MetricName.CONNECT_SESSIONS_PURGED, unit="Count", value=purged)
    if purged:
        logger.info("expired connect sessions purged", extra={"count": purged})
    return purged
