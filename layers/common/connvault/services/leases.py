"""Every transition of a connection's refresh lease, one function each.

The lease (``refresh_lease_until``, ``refresh_lease_owner``) is what makes a refresh single flight; why a lease
and not a row lock is in ``docs/refresh.md``. Each function here is one short transaction of the tenant's unit
of work, and each is guarded the same way wherever it is called: its write is a compare-and-set in the database,
on the lease being free (to take it) or still ours (to end it), never on what the caller remembers. A caller
that lost its lease therefore cannot overwrite what the next holder did::

    acquire ─┬─► store       the provider answered: tokens stored (whatever the lease), lease cleared if ours
             ├─► fail        the provider refused or failed: status and backoff recorded, lease cleared
             ├─► fault       our side failed: counted apart from the provider, maybe parked, lease cleared
             ├─► refuse_app  the provider refused the integration's credentials: integration marked
             └─► release     nothing happened: lease cleared
    expire                   a free lease on a token that ran out: status expired
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from connvault import connection_config
from connvault.db.refresh_statements import get_refresh_statements
from connvault.db.uow import UnitOfWork
from connvault.errors import DatabaseUnavailable, InvalidInput, KeyServiceUnavailable, ReauthRequired
from connvault.retry import doubling, retry

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import Claim, Lease, NewCredentials
    from connvault.models import ClientCredentials, Connection, ConnectionStatus, Integration, Provider

STORE_ATTEMPTS = 5
"""Tries to store a refresh's answer: with a rotating provider it holds the only live refresh token."""
STORE_RETRY_WAIT = doubling(0.2, 2.0)


@dataclass(frozen=True, slots=True)
class ProviderApp:
    """The provider a connection refreshes at, and the tenant's app there (None once the integration is gone)."""

    provider: Provider
    integration: Integration | None

    @property
    def credentials(self) -> ClientCredentials | None:
        return self.integration.client if self.integration is not None else None

    @classmethod
    def load(cls, uow: UnitOfWork, provider_id: UUID) -> ProviderApp:
        """Read inside the caller's transaction, so a refresh costs no transaction of its own for this."""
        provider = uow.providers.get(provider_id)
        return cls(provider, uow.integrations.find(provider.id))

    def endpoints(self, connection: Connection) -> Provider:
        """The provider with its URLs filled for this connection (a shop's own host). A configuration that no
        longer fits the provider (it gained a placeholder since) needs the end user to connect again."""
        try:
            return connection_config.configured(self.provider, connection.connection_config)
        except (InvalidInput, connection_config.TemplateError):
            raise ReauthRequired(
                "the connection's configuration no longer fits its provider", reason="invalid_connection_config"
            ) from None


def acquire(uow: UnitOfWork, connection_id: UUID, *, now: datetime, seconds: int) -> tuple[Lease, ProviderApp] | None:
    """Take the lease unless someone holds a live one (None), with the connection and its provider app as they
    are now. Committed before any provider call."""
    with uow:
        lease = uow.connections.acquire_lease(connection_id, now, now + timedelta(seconds=seconds))
        if lease is None:
            return None
        app = ProviderApp.load(uow, lease.connection.provider_id)
        uow.commit()
    return lease, app


def claimed(uow: UnitOfWork, claim: Claim) -> Lease:
    """The lease a scheduler claim took, with the connection as it is now (one prepared statement: it reads the
    row only while the claim's lease is on it, ``NotFound`` otherwise)."""
    return get_refresh_statements().leased(claim, uow.sealer)


def store(
    uow: UnitOfWork, lease: Lease, grant: NewCredentials, *, now: datetime, attempts: int = STORE_ATTEMPTS
) -> Connection:
    """Store a refresh's answer and end the lease, retrying a failed write before anything else happens.

    Not conditional on the lease (the provider has answered; with rotation these are the only good tokens), only
    on the grant: ``GrantSuperseded`` if the end user connected again meanwhile, ``NotFound`` if deleted. One
    prepared statement (``db/refresh_statements.py``)."""
    account: dict[str, bytes] = {}
    if grant.provider_account_id is not None:  # sealed with a blind index, which may need the tenant's index key
        with uow:
            account = uow.connections.refreshed_account_id(lease.connection, grant.provider_account_id)
            uow.commit()
    return retry(
        lambda: get_refresh_statements().store(lease, grant, now, uow.sealer, account=account),
        attempts=attempts,
        on=(DatabaseUnavailable, KeyServiceUnavailable),
        wait=STORE_RETRY_WAIT,
    )


def fail(
    uow: UnitOfWork, lease: Lease, *, status: ConnectionStatus, reason: str, retry_at: datetime | None
) -> Connection | None:
    """Record the provider's failure while the lease is still ours. If it is not because the end user connected
    again meanwhile, the failure belongs to the replaced grant: the connection as the new grant left it."""
    with uow:
        recorded = uow.connections.record_refresh_failure(
            lease.connection.id, lease.owner, status=status, error_code=reason, next_refresh_at=retry_at
        )
        uow.commit()
        if recorded:
            return None
        current = uow.connections.get(lease.connection.id)
    return current if current.granted_at != lease.connection.granted_at else None


def fault(
    uow: UnitOfWork,
    connection_id: UUID,
    owner: UUID | None,
    *,
    code: str,
    now: datetime,
    retry_at: datetime,
    park_after: int | None,
    seconds: int,
) -> ConnectionStatus | None:
    """Record a fault of ours, apart from the provider's failures; the status it left (None: not recorded).

    Recorded under ``owner``'s lease while it is still on the row; otherwise (``owner`` None, or a lease the caller
    gave back on the way out, as ``refresh_with_lease`` does for a fault) under one taken here, unless someone else
    holds a live one. Without that, a fault met inside a refresh was never recorded: the connection was neither
    pushed back nor parked, and every run claimed it again. Taking the lease reads nothing sealed, so an envelope
    that does not open is still recorded."""
    with uow:
        status = None
        if owner is not None:
            status = uow.connections.record_own_fault(
                connection_id, owner, code=code, next_refresh_at=retry_at, park_after=park_after
            )
        if status is None:
            taken = uow.connections.take_lease(connection_id, now, now + timedelta(seconds=seconds))
            if taken is not None:
                status = uow.connections.record_own_fault(
                    connection_id, taken[0], code=code, next_refresh_at=retry_at, park_after=park_after
                )
        uow.commit()
    return status


def refuse_app(uow: UnitOfWork, lease: Lease, app: ProviderApp | None, *, reason: str) -> None:
    """Mark the integration ``invalid_credentials`` and give the connection's lease back, the connection as it
    was: the provider refused the tenant's app, not this end user's grant."""
    with uow:
        if app is not None and app.integration is not None:
            uow.integrations.mark_credentials_invalid(
                app.provider.id, seen_updated_at=app.integration.updated_at, reason=reason
            )
        uow.connections.release_lease(lease.connection.id, lease.owner)
        uow.commit()


def release(uow: UnitOfWork, held: Iterable[tuple[UUID, UUID]]) -> None:
    """Give back leases still ours, ``(connection id, owner)`` each, in one transaction of ``uow``'s tenant."""
    with uow:
        for connection_id, owner in held:
            uow.connections.release_lease(connection_id, owner)
        uow.commit()


def release_claims(claims: Iterable[Claim], *, sealer: Sealer | None = None) -> None:
    """``release`` for claims of many tenants: one transaction per tenant (row-level security binds each)."""
    by_tenant: dict[UUID, list[tuple[UUID, UUID]]] = defaultdict(list)
    for claim in claims:
        by_tenant[claim.tenant_id].append((claim.connection_id, claim.owner))
    for tenant_id, held in by_tenant.items():
        release(UnitOfWork(tenant_id, sealer=sealer), held)


def expire(uow: UnitOfWork, connection_id: UUID, *, now: datetime, error_code: str | None = None) -> bool:
    """Mark a connection ``expired`` if its token has run out, nobody holds a live lease on it and it is
    ``active`` or ``error``; whether it did. ``error_code`` None keeps the last one."""
    with uow:
        expired = uow.connections.expire_if_lapsed(connection_id, now, error_code=error_code)
        uow.commit()
    return expired
