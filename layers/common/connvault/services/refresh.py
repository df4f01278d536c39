"""Refreshing one OAuth connection, shared by token fetch (on read) and the scheduler (ahead of time).

Single flight: whoever holds the connection's refresh lease is the only caller of the provider; see
``docs/refresh.md`` for why a lease and not a row lock. The order of events is what keeps a rotated refresh
token from ever being lost:

1. take the lease (own short transaction, committed);
2. call the provider with no transaction open;
3. store the new tokens, retrying the write before anything else happens, whatever the lease says;
4. or, on failure, record it only while still holding the lease.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from connvault import connection_config
from connvault.clock import Clock, utcnow
from connvault.config import Settings, get_settings
from connvault.db.connections import Lease, NewCredentials
from connvault.db.uow import UnitOfWork
from connvault.errors import (
    ConnectionRevoked,
    CredentialsExpired,
    DatabaseUnavailable,
    GrantSuperseded,
    InvalidInput,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from connvault.models import Connection, ConnectionStatus, OAuth2Credentials, needs_refresh
from connvault.oauth.http import UNREACHABLE_REASON

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.models import ClientCredentials, Provider
    from connvault.oauth.client import OAuthClient

_ANSWER_MAY_HAVE_BEEN_LOST = frozenset({UNREACHABLE_REASON})
STALE_LEASE_REASON = "refresh_interrupted"
"""Error code when a refresh token was refused right after a refresh that died mid-way: the provider had
probably rotated the token and the process stopped before storing the new one."""


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    lease_seconds: int = 30
    wait_seconds: float = 8.0
    poll_seconds: float = 0.05
    max_failures: int = 8
    backoff_base_seconds: int = 30
    backoff_cap_seconds: int = 3600
    store_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RefreshPolicy:
        settings = settings or get_settings()
        return cls(
            lease_seconds=settings.refresh_lease_seconds,
            wait_seconds=settings.refresh_wait_seconds,
            max_failures=settings.refresh_max_failures,
            backoff_base_seconds=settings.refresh_backoff_base_seconds,
            backoff_cap_seconds=settings.refresh_backoff_cap_seconds,
        )


def backoff_seconds(failures: int, policy: RefreshPolicy, *, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter on the upper half, capped; a provider's Retry-After is a floor."""
    ceiling = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * 2 ** max(failures - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class RefreshClient:
    """Who to ask and as whom: the provider, and the tenant's app there (None once the integration is gone)."""

    provider: Provider
    client: ClientCredentials | None

    @classmethod
    def load(cls, uow: UnitOfWork, provider_id: UUID) -> RefreshClient:
        """Read inside the caller's transaction, so a refresh costs no transaction of its own for this."""
        provider = uow.providers.get(provider_id)
        integration = uow.integrations.find(provider.id)
        return cls(provider, integration.client if integration is not None else None)

    def endpoints(self, connection: Connection) -> Provider:
        """The provider with its URLs filled for this connection (a shop's own host). A configuration that no
        longer fits the provider (it gained a placeholder since) needs the end user to connect again."""
        try:
            return connection_config.configured(self.provider, connection.connection_config)
        except (InvalidInput, connection_config.TemplateError):
            raise ReauthRequired(
                "the connection's configuration no longer fits its provider", reason="invalid_connection_config"
            ) from None


def refresh_with_lease(
    lease: Lease,
    *,
    oauth: OAuthClient,
    policy: RefreshPolicy,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
    client: RefreshClient | None = None,
) -> Connection:
    """Refresh a connection whose lease the caller holds; ends the lease either way.

    ``client`` is read here when the caller did not load it with the lease. Raises ``ReauthRequired``
    (connection now ``needs_reauth``) or ``ProviderUnavailable`` (failure counted, next attempt scheduled
    with backoff).
    """
    connection = lease.connection
    try:
        if client is None:
            with UnitOfWork(connection.tenant_id, sealer=sealer) as uow:
                client = RefreshClient.load(uow, connection.provider_id)
        if client.client is None:
            raise ReauthRequired("the provider's integration was deleted", reason="integration_missing")
        refresh_token = connection.refresh_token
        if refresh_token is None or not isinstance(connection.credentials, OAuth2Credentials):
            raise ReauthRequired("the connection has no refresh token", reason="no_refresh_token")
        tokens = oauth.refresh(client.endpoints(connection), client.client, refresh_token.reveal(), now())
    except (ReauthRequired, ProviderRejected) as exc:
        reason = STALE_LEASE_REASON if _may_have_lost_a_rotation(lease, client) else (exc.reason or exc.code)
        regranted = _record_failure(lease, ConnectionStatus.NEEDS_REAUTH, reason, None, sealer=sealer)
        if regranted is not None:
            return regranted
        raise ReauthRequired("the provider refused the refresh token; connect again", reason=reason) from None
    except ProviderUnavailable as exc:
        failures = connection.refresh_failures + 1
        status = ConnectionStatus.ERROR if failures >= policy.max_failures else ConnectionStatus.ACTIVE
        retry_at = now() + timedelta(seconds=backoff_seconds(failures, policy, retry_after=exc.retry_after))
        regranted = _record_failure(lease, status, exc.reason or exc.code, retry_at, sealer=sealer)
        if regranted is not None:
            return regranted
        raise
    except BaseException:
        # Anything else (a bug, a KMS outage): give the lease back so the next caller need not wait it out.
        _release(lease, sealer=sealer)
        raise
    grant = NewCredentials(
        credentials=connection.credentials.with_refreshed(tokens),
        token_type=tokens.token_type,
        scopes=tokens.scopes if tokens.scopes is not None else connection.scopes,
        expires_at=tokens.expires_at,
        provider_account_id=tokens.provider_account_id,
    )
    try:
        return _store(lease, grant, policy, sealer=sealer, now=now)
    except (NotFound, GrantSuperseded) as exc:
        # Deleted, or connected again, while the provider answered: these tokens would stay live at the
        # provider, owned by nothing.
        oauth.revoke(
            client.endpoints(connection),
            client.client,
            (tokens.refresh_token or tokens.access_token).reveal(),
            "refresh_token" if tokens.refresh_token else "access_token",
        )
        if isinstance(exc, NotFound):
            raise
    with UnitOfWork(connection.tenant_id, sealer=sealer) as uow:
        return uow.connections.get(connection.id)  # as the new grant left it


def _may_have_lost_a_rotation(lease: Lease, client: RefreshClient | None) -> bool:
    """Whether a refused refresh token was probably rotated by an earlier attempt whose answer never got
    stored: the previous holder died with the lease, or our last call timed out after the provider may have
    rotated. Then the connection needs a reconnect for a reason the tenant should hear about."""
    if lease.stale:
        return True
    rotating = client is not None and client.provider.rotates_refresh_tokens
    return rotating and lease.connection.last_error_code in _ANSWER_MAY_HAVE_BEEN_LOST


def _store(
    lease: Lease, grant: NewCredentials, policy: RefreshPolicy, *, sealer: Sealer | None, now: Clock
) -> Connection:
    """Persist a refresh's tokens, retrying a failed write: with rotation these are the only live tokens."""
    for attempt in range(1, policy.store_attempts + 1):
        try:
            with UnitOfWork(lease.connection.tenant_id, sealer=sealer) as uow:
                stored = uow.connections.store_refresh(lease, grant, now())
                uow.commit()
            return stored
        except (DBAPIError, DatabaseUnavailable):  # a timed-out store is DatabaseBusy, and worth the retry too
            if attempt == policy.store_attempts:
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


def _record_failure(
    lease: Lease, status: ConnectionStatus, reason: str, retry_at: datetime | None, *, sealer: Sealer | None
) -> Connection | None:
    """Record the failure while the lease is still ours. If it is not because the end user connected again
    meanwhile, the failure belongs to the replaced grant: return the connection as the new grant left it."""
    with UnitOfWork(lease.connection.tenant_id, sealer=sealer) as uow:
        recorded = uow.connections.record_refresh_failure(
            lease.connection.id, lease.owner, status=status, error_code=reason, next_refresh_at=retry_at
        )
        uow.commit()
        if recorded:
            return None
        current = uow.connections.get(lease.connection.id)
    return current if current.granted_at != lease.connection.granted_at else None


def _release(lease: Lease, *, sealer: Sealer | None) -> None:
    with UnitOfWork(lease.connection.tenant_id, sealer=sealer) as uow:
        uow.connections.release_lease(lease.connection.id, lease.owner)
        uow.commit()


def refresh_single_flight(
    tenant_id: UUID,
    connection_id: UUID,
    *,
    min_ttl: int = 0,
    margin: int = 0,
    force: bool = False,
    asked: datetime | None = None,
    oauth: OAuthClient,
    policy: RefreshPolicy,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    """A connection whose token is good for ``min_ttl`` (and the provider's ``margin``) as far as the provider
    can give, refreshing it unless someone else is.

    Callers coalesce, in any number of processes: the one that takes the lease refreshes, the others poll
    the row until tokens they can accept land. A plain caller accepts any version newer than the one it first
    read (``token_version``). A forced caller, which arrived at ``asked`` (default: now), accepts only tokens
    whose refresh began after that (``refresh_started_at``): a refresh already in flight is not enough, the
    next one is, so a burst of forced calls costs the provider at most two calls. A waiter whose refresh
    failed does not try again itself: it reports that failure, so an outage costs the provider one call, not
    one per caller. A lease given back with no failure recorded (a scheduler that ran out of time) is simply
    taken over.
    """
    asked = asked or now()
    deadline = time.monotonic() + policy.wait_seconds
    read_version: int | None = None
    seen: tuple[int, int] | None = None
    while True:
        with UnitOfWork(tenant_id, sealer=sealer) as uow:
            current = uow.connections.get(connection_id)
            moment = now()
            leased_by_other = current.refresh_lease_until is not None and current.refresh_lease_until > moment
            if read_version is None:
                read_version = current.token_version
            if force:
                done = current.tokens_requested_since(asked)
            else:
                done = current.token_version > read_version or (
                    current.status is ConnectionStatus.ACTIVE
                    and not needs_refresh(current.expires_at, moment, current.refresh_ttl(min_ttl, margin))
                )
            if done:
                return current
            _raise_for_status(current)
            if (
                seen is not None
                and not leased_by_other
                and current.token_version == seen[0]
                and current.refresh_failures != seen[1]
            ):
                raise ProviderUnavailable(
                    "the provider failed to refresh this connection",
                    retry_after=_retry_in(current, moment),
                    reason=current.last_error_code,
                )
            if not force and current.next_refresh_at is not None and current.next_refresh_at > moment:
                raise ProviderUnavailable(
                    "the provider failed recently; retrying later",
                    retry_after=_retry_in(current, moment),
                    reason=current.last_error_code,
                )
            lease = client = None
            if not leased_by_other:
                lease = uow.connections.acquire_lease(
                    connection_id, moment, moment + timedelta(seconds=policy.lease_seconds)
                )
                if lease is not None:
                    client = RefreshClient.load(uow, current.provider_id)
                uow.commit()
        if lease is not None:
            return refresh_with_lease(lease, oauth=oauth, policy=policy, sealer=sealer, now=now, client=client)
        seen = (current.token_version, current.refresh_failures)
        if time.monotonic() >= deadline:
            raise ProviderUnavailable("a refresh of this connection is still in progress", retry_after=1, reason="busy")
        sleep(policy.poll_seconds)


def _retry_in(connection: Connection, moment: datetime) -> float:
    if connection.next_refresh_at is None:
        return 1.0
    return max(1.0, (connection.next_refresh_at - moment).total_seconds())


def _raise_for_status(connection: Connection) -> None:
    """Statuses that no refresh can fix."""
    if connection.status is ConnectionStatus.NEEDS_REAUTH:
        raise ReauthRequired("the connection needs to be connected again", reason=connection.last_error_code)
    if connection.status is ConnectionStatus.REVOKED:
        raise ConnectionRevoked(f"connection {connection.id} was revoked")
    if connection.refresh_token is None:
        raise CredentialsExpired(f"connection {connection.id} has no refresh token")
