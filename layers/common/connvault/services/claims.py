"""Fair claims of due connections, for the scheduled run and the fan-out scan.

A claim leases a batch of due connections across tenants in one statement (``connvault_claim_due_refreshes``:
``FOR UPDATE SKIP LOCKED`` plus a lease, ids only), so overlapping runs take disjoint sets. It is fair: the
tenants take turns (round robin from the one after the previous claim's last), each giving at most
``refresh_tenant_share`` connections, and providers whose queue in the run is full give none, so one tenant's
thousands of due connections, or one slow provider, never fill every claim.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.db.refresh_statements import get_refresh_statements
from connvault.db.uow import UnitOfWork

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import Claim
    from connvault.services.runner import SchedulerConfig


class Claimer:
    """A run's claims: batches of due connections, fair across tenants (round robin, at most ``tenant_share``
    each per claim) and leaving out the providers whose queue in the run is full."""

    def __init__(self, config: SchedulerConfig, *, now: Clock) -> None:
        self._config = config
        self._now = now
        self._run_started = now()
        self._after_tenant: UUID | None = None

    def claim(self, room: int, skip_providers: Sequence[UUID] = ()) -> list[Claim]:
        config, moment = self._config, self._now()
        claims = get_refresh_statements().claim(
            moment,
            config.horizon_seconds,
            min(room, config.batch_size),
            moment + timedelta(seconds=config.lease_seconds),
            run_started=self._run_started,
            per_tenant=config.tenant_share,
            after_tenant=self._after_tenant,
            skip_providers=skip_providers,
        )
        if claims:
            self._after_tenant = _last_in_turn({claim.tenant_id for claim in claims}, self._after_tenant)
        return claims


def _last_in_turn(tenants: set[UUID], after: UUID | None) -> UUID:
    """The tenant a round-robin claim that started after ``after`` ended with: the next claim starts past it."""
    later = [tenant for tenant in tenants if after is None or tenant > after]
    return max(later) if later else max(tenants)


def due_backlog(config: SchedulerConfig, *, sealer: Sealer | None = None, now: Clock = utcnow) -> int:
    with UnitOfWork(None, sealer=sealer) as uow:
        return uow.connections.due_backlog(now(), config.horizon_seconds)
