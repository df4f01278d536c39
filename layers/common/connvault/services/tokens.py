"""Token fetch: hand the tenant's backend a usable credential for a connection. The hot path.

A token that is good for longer than ``max(min_ttl, provider margin)`` costs one round trip (a prepared
statement through ``FastReads``) and one AES-GCM open with a cached data key: no KMS call, no write beyond a
``last_used_at`` coalesced to once a minute. Anything else goes through the single-flight refresh.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from connvault import wiring
from connvault.access_log import record_issued
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.credentials import Credentials, OAuth2Credentials, needs_refresh, refresh_ttl
from connvault.db.fast_reads import get_fast_reads
from connvault.db.sealing import get_opened_credentials
from connvault.errors import (
    CredentialsExpired,
    IntegrationCredentialsInvalid,
    NotFound,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.fast_reads import ConnectionSnapshot, FastReads
    from connvault.oauth.client import OAuthClient
    from connvault.services.rate_limits import PendingCount
    from connvault.services.refresh import RefreshPolicy


class IssuedCredential(NamedTuple):
    """What token fetch answers; exactly one of the credential shapes is set."""

    connection_id: UUID
    credentials: Credentials
    token_type: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...]
    refreshed: bool = False
    """Whether this fetch refreshed the token (itself, or by waiting for another caller's refresh)."""
    min_ttl_met: bool = True
    """False when the provider's tokens live shorter than the ``min_ttl`` asked for: this is then the freshest
    token the provider gives, not one refreshed for each fetch."""


def get_token(
    tenant_id: UUID,
    connection_id: UUID,
    *,
    min_ttl: int = 0,
    force_refresh: bool = False,
    reads: FastReads | None = None,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    policy: RefreshPolicy | None = None,
    now: Clock = utcnow,
    snapshot: ConnectionSnapshot | None = None,
    count: PendingCount | None = None,
) -> IssuedCredential:
    """A usable credential. Raises NotFound, ReauthRequired, ConnectionRevoked, CredentialsExpired,
    IntegrationCredentialsInvalid, ProviderMisconfigured (the provider's definition cannot be used to refresh),
    ProviderRejected (the provider refused a refresh this fetch needed, without saying the grant is dead),
    ProviderUnavailable (with ``retry_after``). A token still valid is served rather than any of the last four,
    unless the fetch was forced. Only a fetch that hands out a credential counts as a
    use.

    ``snapshot``: the connection as a caller just read it (the proxy reads it with its provider's API in the
    same round trip), so it is not read again. ``count``: the tenant's rate-limit count, added by the read
    (``RateLimiter.admit(carry=True)``; its caller settles it)."""
    reads = reads or get_fast_reads()
    issued = _issue(
        tenant_id, connection_id, min_ttl, force_refresh, reads, oauth, sealer, policy, now, snapshot, count
    )
    reads.record_use(tenant_id, connection_id, get_settings().last_used_coalesce_seconds)
    record_issued(tenant_id, connection_id, issued.credentials.type.value, refreshed=issued.refreshed)
    return issued


def _issue(
    tenant_id: UUID,
    connection_id: UUID,
    min_ttl: int,
    force_refresh: bool,
    reads: FastReads,
    oauth: OAuthClient | None,
    sealer: Sealer | None,
    policy: RefreshPolicy | None,
    now: Clock,
    snapshot: ConnectionSnapshot | None,
    count: PendingCount | None,
) -> IssuedCredential:
    settings = get_settings()
    asked = now()
    sealer = sealer or wiring.get_sealer()
    if count is not None and snapshot is None:
        snapshot, count.window = reads.read_connection_counting(
            tenant_id, connection_id, count.requests, count.window_seconds
        )
    elif snapshot is None:
        snapshot = reads.read_connection(tenant_id, connection_id)
    if snapshot is None:
        raise NotFound(f"connection {connection_id} not found")
    snapshot.ensure_servable()
    if snapshot.credentials is None:
        raise CredentialsExpired(f"connection {connection_id} holds no credentials")
    credentials = get_opened_credentials().open(sealer, tenant_id, connection_id, snapshot.credentials)
    moment = asked
    current = _issued(
        connection_id, credentials, snapshot.token_type, snapshot.expires_at, snapshot.scopes, min_ttl, moment
    )
    if not isinstance(credentials, OAuth2Credentials):
        return current
    ttl = refresh_ttl(min_ttl, snapshot.refresh_margin_seconds, snapshot.issued_at, snapshot.expires_at)
    still_valid = snapshot.status.serves_unexpired_token and not needs_refresh(snapshot.expires_at, moment, 0)
    if not force_refresh and still_valid and not needs_refresh(snapshot.expires_at, moment, ttl):
        return current
    # The refresh path (SQLAlchemy's unit of work, the lease engine, the OAuth client) is imported when a fetch
    # first needs it, not by the token function's cold start: a warm fetch of a valid token never does.
    from connvault.db.uow import UnitOfWork
    from connvault.services import leases
    from connvault.services.refresh import RefreshPolicy, refresh_single_flight

    if not snapshot.has_refresh_token:
        if still_valid:
            return current
        leases.expire(UnitOfWork(tenant_id, sealer=sealer), connection_id, now=moment, error_code="token_expired")
        raise CredentialsExpired(f"connection {connection_id} expired and has no refresh token")
    try:
        refreshed = refresh_single_flight(
            UnitOfWork(tenant_id, sealer=sealer),
            connection_id,
            min_ttl=min_ttl,
            margin=snapshot.refresh_margin_seconds,
            force=force_refresh,
            asked=asked,
            oauth=oauth or wiring.get_oauth_client(),
            policy=policy or RefreshPolicy.from_settings(settings),
            now=now,
        )
    except (ProviderUnavailable, ProviderRejected, IntegrationCredentialsInvalid, ProviderMisconfigured):
        if still_valid and not force_refresh:
            return current
        raise
    if refreshed.credentials is None:
        raise CredentialsExpired(f"connection {connection_id} holds no credentials")
    return _issued(
        connection_id,
        refreshed.credentials,
        refreshed.token_type,
        refreshed.expires_at,
        refreshed.scopes,
        min_ttl,
        now(),
        refreshed=True,
    )


def _issued(
    connection_id: UUID,
    credentials: Credentials,
    token_type: str | None,
    expires_at: datetime | None,
    scopes: tuple[str, ...],
    min_ttl: int,
    moment: datetime,
    *,
    refreshed: bool = False,
) -> IssuedCredential:
    met = expires_at is None or (expires_at - moment).total_seconds() >= min_ttl
    return IssuedCredential(
        connection_id, credentials, token_type, expires_at, scopes, refreshed=refreshed, min_ttl_met=met
    )
