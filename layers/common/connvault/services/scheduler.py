"""The scheduled refresh: renew due OAuth connections ahead of expiry, so token fetch almost never waits.

A run (``refresh_due``) claims due connections in batches and refreshes each under its own tenant on the
parallel engine (``services/runner.py``), through ``refresh_with_lease``, the single-flight path token fetch
also uses. Claims are fair (``Claimer``): tenants take turns, at most ``refresh_tenant_share`` of each per
claim, and providers whose queue in the run is full are left out until it drains. An overlapping run skips
what another holds (``FOR UPDATE SKIP LOCKED`` plus a lease), and a token fetch that finds the lease taken waits
for the result, so one connection never costs two provider calls. The design is in ``docs/refresh.md``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.observability import logger
from connvault.services import fanout
from connvault.services.claims import Claimer, due_backlog
from connvault.services.housekeeping import purge_expired_connect_sessions
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import (
    Deadline,
    Job,
    Runner,
    RunReport,
    SchedulerConfig,
    publish,
    refresh_oauth_client,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from connvault.crypto.sealer import Sealer
    from connvault.oauth.client import OAuthClient


def refresh_due(
    *,
    remaining_ms: Callable[[], int],
    config: SchedulerConfig | None = None,
    policy: RefreshPolicy | None = None,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> RunReport:
    """One scheduled run: refresh due connections until none is left or the deadline nears.

    ``remaining_ms`` is the Lambda context's ``get_remaining_time_in_millis``. Every lease the run takes is
    resolved (stored, failed, or released) before it returns.
    """
    started = time.monotonic()
    config = config or SchedulerConfig.from_settings()
    policy = policy or RefreshPolicy.from_settings()
    oauth = oauth or refresh_oauth_client(config.http_timeout_seconds)
    runner = Runner(
        config, policy, oauth, sealer=sealer, now=now, deadline=Deadline(remaining_ms, config.deadline_margin_ms)
    )

    claimer = Claimer(config, now=now)
    runner.drive(lambda room, saturated: [Job.of_claim(claim) for claim in claimer.claim(room, saturated)])
    report = runner.report(due_backlog=due_backlog(config, sealer=sealer, now=now), started=started)
    publish(report)
    logger.info("refresh run finished", extra=report.as_dict())
    return report


def run_scheduled(remaining_ms: Callable[[], int]) -> RunReport:
    """The scheduled function's one call: purge expired connect sessions of every tenant, then refresh in this
    invocation, or enqueue for ``refresh_worker`` when ``CONNVAULT_REFRESH_QUEUE_URL`` is set (fan-out mode)."""
    purge_expired_connect_sessions()
    queue_url = get_settings().refresh_queue_url
    if queue_url:
        return fanout.enqueue_due(queue_url=queue_url, remaining_ms=remaining_ms)
    return refresh_due(remaining_ms=remaining_ms)
