"""Refreshing one OAuth connection, shared by token fetch (on read) and the scheduler (ahead of time).

Single flight: whoever holds the connection's refresh lease is the only caller of the provider; see
``docs/refresh.md`` for why a lease and not a row lock. The order of events is what keeps a rotated refresh
token from ever being lost, each step a transition of ``services/leases.py``:

1. take the lease (own short transaction, committed);
2. call the provider with no transaction open;
3. store the new tokens, retrying the write before anything else happens, whatever the lease says;
4. or, on failure, record it only while still holding the lease.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.config import DEFAULTS, Settings, get_settings
from connvault.db.connections import NewCredentials
from connvault.errors import (
    ClientRejected,
    GrantSuperseded,
    IntegrationCredentialsInvalid,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from connvault.models import ConnectionStatus, OAuth2Credentials, RevocationScope
from connvault.oauth.http import UNREACHABLE_REASON
from connvault.oauth.responses import MAX_EXPIRES_IN_SECONDS, subject
from connvault.observability import logger
from connvault.services import leases
from connvault.services.renewal import renew, renews_with_refresh_token, revoking_client

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from connvault.db.connections import Lease
    from connvault.db.uow import UnitOfWork
    from connvault.models import Connection, OAuth2Tokens
    from connvault.oauth.client import OAuthClient
    from connvault.services.leases import ProviderApp

_ANSWER_MAY_HAVE_BEEN_LOST = frozenset({UNREACHABLE_REASON})
STALE_LEASE_REASON = "refresh_interrupted"
"""Error code when a refresh token was refused right after a refresh that died mid-way: the provider had
probably rotated the token and the process stopped before storing the new one."""
ACCOUNT_CHANGED_REASON = "account_changed"
"""Error code when a refresh's answer named another end user than the grant's (OpenID Connect Core 12.2)."""
ASSUMED_LIFETIME_FLOOR_SECONDS = 60
"""The shortest life assumed for a renewed token whose answer gave none: the previous token's is a guess (an
imported one's may be what was left of it), and a guess must not have every fetch call the provider."""


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    lease_seconds: int = DEFAULTS.refresh_lease_seconds
    wait_seconds: float = DEFAULTS.refresh_wait_seconds
    poll_seconds: float = 0.05
    max_failures: int = DEFAULTS.refresh_max_failures
    backoff_base_seconds: int = DEFAULTS.refresh_backoff_base_seconds
    backoff_cap_seconds: int = DEFAULTS.refresh_backoff_cap_seconds
    store_attempts: int = leases.STORE_ATTEMPTS

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
    ceiling = min(policy.backoff_cap_seconds, policy.backoff_base_seconds * 2.0 ** max(failures - 1, 0))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret
    return max(delay, retry_after or 0.0)


def refresh_with_lease(
    uow: UnitOfWork,
    lease: Lease,
    app: ProviderApp,
    *,
    oauth: OAuthClient,
    policy: RefreshPolicy,
    now: Clock = utcnow,
) -> Connection:
    """Refresh a connection whose lease the caller holds, at ``app``; ends the lease either way.

    Raises ``ReauthRequired`` (connection now ``needs_reauth``; ``account_changed`` when the answer named another
    end user, whose tokens are dropped), ``IntegrationCredentialsInvalid`` (the app was refused: the integration is
    marked, the connection left as it was), or ``ProviderUnavailable`` and ``ProviderRejected`` (failure counted,
    next attempt scheduled with backoff).
    """
    connection = lease.connection
    try:
        uow.sealer.ready_to_seal(connection.tenant_id)
        renewal = renew(connection.credentials, app.endpoints(connection), app.integration, oauth, now())
    except ClientRejected as exc:
        # The tenant's app was refused, not this end user's grant (``renew`` raises ``ClientRejected`` only for
        # the integration's client): the integration carries the failure, the connection keeps its grant and
        # status, and refreshes wait for new client credentials.
        leases.refuse_app(uow, lease, app, reason=exc.reason or exc.code)
        raise IntegrationCredentialsInvalid("the provider refused the integration's client credentials") from None
    except ReauthRequired as exc:
        reason = STALE_LEASE_REASON if _may_have_lost_a_rotation(lease, app) else (exc.reason or exc.code)
        return _needs_reauth(uow, lease, reason, "the provider refused the refresh token; connect again")
    except (ProviderUnavailable, ProviderRejected) as exc:
        # A refused request (a firewall's 403 page, a 404, invalid_request, a code nobody knows) says nothing of the
        # grant: only a dead-grant code does (``ReauthRequired``). Sending the connection to reconnect for good
        # would make one bad hour of a provider, or a mistyped token URL, cost every one of its end users a
        # reconnect; it is counted and retried with backoff instead, and a still-valid token is still served.
        failures = connection.refresh_failures + 1
        status = ConnectionStatus.after_transient_failures(failures, policy.max_failures)
        retry_after = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
        retry_at = now() + timedelta(seconds=backoff_seconds(failures, policy, retry_after=retry_after))
        regranted = leases.fail(uow, lease, status=status, reason=exc.reason or exc.code, retry_at=retry_at)
        if regranted is not None:
            return regranted
        if isinstance(exc, ProviderRejected):
            # Its message quotes the provider's own error code, text the provider chose: the tenant reads it in the
            # connection's last_error_code, not in an answer that could be shown to anyone.
            raise ProviderRejected(
                "the provider refused the refresh request, not the grant; it is retried later", reason=exc.reason
            ) from None
        raise
    except BaseException:
        # Anything else (a bug, a KMS outage): give the lease back so the next caller need not wait it out.
        leases.release(uow, [(connection.id, lease.owner)])
        raise
    tokens = renewal.tokens
    if _names_another_user(connection, tokens):
        # Neither stored nor revoked: they are another account's, perhaps another user's live tokens read off a
        # desynchronised connection, and not ours to end.
        logger.warning("refresh answer names another account; not stored", extra={"connection_id": str(connection.id)})
        message = "the provider answered for another account; connect again"
        return _needs_reauth(uow, lease, ACCOUNT_CHANGED_REASON, message)
    stored_at = now()
    grant = NewCredentials.answered(renewal.credentials, tokens, connection.scopes)
    if grant.expires_at is None:
        grant = replace(grant, expires_at=_assumed_expiry(connection, stored_at))
    try:
        return leases.store(uow, lease, grant, now=stored_at, attempts=policy.store_attempts)
    except (NotFound, GrantSuperseded) as exc:
        # Deleted, or connected again, while the provider answered: these tokens would stay live at the
        # provider, owned by nothing. Unless connected again at a provider whose revocation ends every grant of
        # the client for the user: the new grant would end with them (services/revocation.py).
        revoker = revoking_client(connection.credentials, app.credentials)
        kept = isinstance(exc, GrantSuperseded) and app.provider.revocation_scope is RevocationScope.AUTHORIZATION
        if revoker is not None and not kept:
            oauth.revoke(
                app.endpoints(connection),
                revoker,
                (tokens.refresh_token or tokens.access_token).reveal(),
                "refresh_token" if tokens.refresh_token else "access_token",
            )
        if isinstance(exc, NotFound):
            raise
    with uow:
        return uow.connections.get(connection.id)  # as the new grant left it


def _needs_reauth(uow: UnitOfWork, lease: Lease, reason: str, message: str) -> Connection:
    """End the lease with the connection ``needs_reauth`` for ``reason`` and raise ``ReauthRequired``; unless a new
    grant replaced the row meanwhile, which is returned instead (``leases.fail``)."""
    regranted = leases.fail(uow, lease, status=ConnectionStatus.NEEDS_REAUTH, reason=reason, retry_at=None)
    if regranted is not None:
        return regranted
    raise ReauthRequired(message, reason=reason) from None  # the provider's own failure is no part of it


def _names_another_user(connection: Connection, tokens: OAuth2Tokens) -> bool:
    """Whether the answer's ID token names another end user (``sub``) than the connection's does: OpenID Connect
    Core 12.2 says a refreshed one names the same. Only when both name one: many answers carry none."""
    held = connection.credentials.id_token if isinstance(connection.credentials, OAuth2Credentials) else None
    before, after = subject(held), subject(tokens.id_token)
    return before is not None and after is not None and before != after


def _assumed_expiry(connection: Connection, at: datetime) -> datetime | None:
    """When a token renewed at ``at`` runs out, its answer having given no usable ``expires_in``: as long after
    ``at`` as the token it replaces lived, so that it is renewed again in time rather than served dead forever.
    None when that one had no known expiry, or a lifetime that tells nothing: none at all (an import taken as
    expired when stored) or one past ``MAX_EXPIRES_IN_SECONDS``. ``at`` becomes ``last_refresh_at``, so the
    lifetime assumed carries over unchanged to the next renewal."""
    issued_at, expires_at = connection.issued_at, connection.expires_at
    if issued_at is None or expires_at is None:
        return None
    lived = (expires_at - issued_at).total_seconds()
    if not 0 < lived <= MAX_EXPIRES_IN_SECONDS:
        return None
    return at + timedelta(seconds=max(lived, ASSUMED_LIFETIME_FLOOR_SECONDS))


def _may_have_lost_a_rotation(lease: Lease, app: ProviderApp) -> bool:
    """Whether a refused refresh token was probably rotated by an earlier attempt whose answer never got
    stored: the previous holder died with the lease, or our last call timed out after the provider may have
    rotated. Then the connection needs a reconnect for a reason the tenant should hear about."""
    if not renews_with_refresh_token(lease.connection.credentials):
        return False  # a grant presents the same client or key each time: an interrupted renewal spent nothing
    if lease.stale:
        return True
    return app.provider.rotates_refresh_tokens and lease.connection.last_error_code in _ANSWER_MAY_HAVE_BEEN_LOST


def refresh_single_flight(
    uow: UnitOfWork,
    connection_id: UUID,
    *,
    min_ttl: int = 0,
    margin: int = 0,
    force: bool = False,
    asked: datetime | None = None,
    oauth: OAuthClient,
    policy: RefreshPolicy,
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
    one per caller. Nor does any caller, forced or not, while the connection backs off after a failure
    (``next_refresh_at`` not passed): it gets ``ProviderUnavailable`` with the time left, so forced fetches neither
    overrun a provider's Retry-After nor spend the connection's failure budget in a burst. A lease given back with
    no failure recorded (a scheduler that ran out of time) is simply taken over. Polls read the row with its
    envelope sealed; the credentials are opened once, when returned.
    """
    asked = asked or now()
    deadline = time.monotonic() + policy.wait_seconds
    read_version: int | None = None
    seen: tuple[int, int] | None = None
    while True:
        with uow:
            current = uow.connections.get(connection_id, open_credentials=False)
            moment = now()
            read_version = current.token_version if read_version is None else read_version
            if _accepts(current, force=force, asked=asked, read_version=read_version) or (
                not force and current.has_fresh_token(moment, min_ttl, margin)
            ):
                return uow.connections.get(connection_id)
        current.ensure_servable(refreshing=True)
        leased_by_other = current.leased(moment)
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
        if current.next_refresh_at is not None and current.next_refresh_at > moment:
            raise ProviderUnavailable(
                "the provider failed recently; retrying later",
                retry_after=_retry_in(current, moment),
                reason=current.last_error_code,
            )
        taken = (
            None if leased_by_other else leases.acquire(uow, connection_id, now=moment, seconds=policy.lease_seconds)
        )
        if taken is not None:
            lease, app = taken
            if _accepts(lease.connection, force=force, asked=asked, read_version=read_version):
                leases.release(uow, [(connection_id, lease.owner)])  # refreshed between our read and our lease
                return lease.connection
            return refresh_with_lease(uow, lease, app, oauth=oauth, policy=policy, now=now)
        seen = (current.token_version, current.refresh_failures)
        if time.monotonic() >= deadline:
            raise ProviderUnavailable("a refresh of this connection is still in progress", retry_after=1, reason="busy")
        sleep(policy.poll_seconds)


def _accepts(connection: Connection, *, force: bool, asked: datetime, read_version: int) -> bool:
    """Whether the stored tokens are a refresh this caller can take as its own: for a forced caller, one begun
    after it asked; for a plain one, any version newer than the one it read first."""
    return connection.tokens_requested_since(asked) if force else connection.token_version > read_version


def _retry_in(connection: Connection, moment: datetime) -> float:
    if connection.next_refresh_at is None:
        return 1.0
    return max(1.0, (connection.next_refresh_at - moment).total_seconds())
