"""Device connect sessions (RFC 8628): connecting an account from a device without a browser (a CLI, a TV, an
agent), the end user approving on their phone or laptop.

``start_device_session`` asks the provider's device authorization endpoint for a device code and a user code
and stores the session (codes sealed). The session is then advanced by polling the token endpoint with the
device code, by whoever comes first: the tenant asking (``get_device_session``), or the scheduled poller
(``advance_device_sessions``), so a session completes even if nobody asks. Each poll takes the session's poll
lease and moves its next poll one interval ahead in the same statement (``db/device_sessions.py``), so the
provider is never asked faster than the interval, however many callers there are.

What a poll answers (RFC 8628 §3.5): ``authorization_pending`` waits an interval; ``slow_down`` adds five seconds
to the interval for good; tokens complete the session with a ``device_code`` connection (a reconnect replaces
the account's tokens, as the redirect flow does); ``access_denied`` and ``expired_token`` end it as ``denied`` and
``expired``; any other refusal ends it ``failed`` with the provider's code; a provider failing in a retryable way
(5xx, 429, unreachable) is polled again later, the wait doubling with each failure.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from connvault import wiring
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.db.connections import NewCredentials
from connvault.db.tenants import Resource
from connvault.db.uow import UnitOfWork
from connvault.errors import (
    ConnvaultError,
    CredentialsRefused,
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExceeded,
    ReauthRequired,
)
from connvault.models import (
    AuthType,
    ConnectionKind,
    DeviceCodes,
    DeviceSession,
    DeviceSessionStatus,
    OAuth2Credentials,
)
from connvault.oauth.device import SLOW_DOWN_SECONDS, PollOutcome, poll_outcome
from connvault.observability import MetricName, logger, metrics
from connvault.retry import retry
from connvault.services import custom_providers, quotas
from connvault.services.connect import revoke_orphaned_grant, store_grant
from connvault.services.revocation import retire_replaced_grant
from connvault.validation import require_scopes, require_text

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import SavedGrant
    from connvault.db.device_sessions import DueSession, PollLease
    from connvault.models import Integration, OAuth2Tokens, Provider
    from connvault.oauth.client import OAuthClient

ENDED_SESSION_RETENTION = timedelta(days=1)
"""How long an ended session still answers ``GET /connect-sessions/{id}`` before it is purged."""
MAX_RETRY_WAIT_SECONDS = 300
POLL_CONCURRENCY = 2
"""Polls in flight in one poller run, each claimed as a thread frees; its database pool is sized for these
threads and the claim (template)."""
IDLE_WAIT_SECONDS = 1.0
STORE_ATTEMPTS = 3
LAPSED: Literal["lapsed"] = "lapsed"
"""What the poller's thread did with a claimed session whose lease ran out first: nothing."""
FAILED_HERE: Literal["failed_here"] = "failed_here"
"""... and with one whose poll failed on our side (logged; its lease runs out by itself)."""
type PollResult = DeviceSessionStatus | Literal["lapsed", "failed_here"]


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    provider: str
    end_user_id: str
    alias: str = ""
    scopes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PollerReport:
    """What one run of the scheduled poller did; counts only (ids go to the logs)."""

    polled: int = 0
    completed: int = 0
    ended: int = 0
    """Denied, expired or failed."""
    errors: int = 0
    lapsed: int = 0
    """Claimed but not polled: the lease ran out before a thread reached the session (``poll``)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def start_device_session(
    uow: UnitOfWork, request: DeviceRequest, *, oauth: OAuthClient | None = None, now: Clock = utcnow
) -> DeviceSession:
    """Start connecting an end user's account with the device flow; the session carries the codes to show.

    Raises InvalidInput (the provider has no device flow, no integration...), CredentialsRefused (the provider
    refused the integration's client), QuotaExceeded (the tenant holds its quota of live connect sessions),
    ProviderUnavailable.
    """
    end_user_id = require_text(request.end_user_id, "end_user_id", max_length=255)
    alias = require_text(request.alias, "alias", max_length=100, min_length=0)
    requested = None if request.scopes is None else require_scopes(request.scopes)
    custom_providers.refresh_stale_metadata(uow, request.provider, now=now)
    with uow:
        provider = _device_provider(uow, request.provider)
        integration = uow.integrations.find(provider.id)
        if integration is None:
            raise InvalidInput("configure the provider's integration first", field="provider")
        quotas.require_room(uow, Resource.CONNECT_SESSIONS, now=now)
    scopes = requested if requested is not None else (integration.scopes or provider.default_scopes)
    started = now()
    try:
        authorization = (oauth or wiring.get_oauth_client()).device_authorization(
            provider, integration.client, scopes, started
        )
    except (ReauthRequired, ProviderRejected) as exc:
        reason = exc.reason or exc.code
        raise CredentialsRefused(
            f"the provider refused the integration's client for the device flow ({reason})",
            field="provider",
            reason=reason,
        ) from None
    # A provider may ask for polls every second; we never poll faster than the floor (RFC 8628's default), so a
    # tenant's sessions cost the shared poller at most one poll per floor each.
    interval = max(authorization.interval, get_settings().device_min_interval_seconds)
    codes = DeviceCodes(authorization.device_code, authorization.user_code, authorization.verification_uri_complete)
    session = DeviceSession(
        id=uuid.uuid4(),
        tenant_id=uow.tenant,
        provider_id=provider.id,
        provider_slug=provider.slug,
        end_user_id=end_user_id,
        alias=alias,
        scopes=tuple(scopes),
        verification_uri=authorization.verification_uri,
        status=DeviceSessionStatus.PENDING,
        interval_seconds=interval,
        next_poll_at=started + timedelta(seconds=interval),
        poll_failures=0,
        expires_at=started + timedelta(seconds=authorization.expires_in),
        created_at=started,
        codes=codes,
    )
    with uow:
        uow.device_sessions.purge_ended(started - ENDED_SESSION_RETENTION)
        uow.device_sessions.add(session, codes)
        uow.commit()
    metrics.add_metric(name=MetricName.DEVICE_SESSION_STARTED, unit="Count", value=1)
    logger.info("device session started", extra={"connect_session_id": str(session.id), "provider": provider.slug})
    return session


def get_device_session(
    uow: UnitOfWork,
    session_id: UUID,
    *,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> DeviceSession:
    """The session as it stands, advanced first by one poll when one is due and nobody else is polling."""
    with uow:
        session = uow.device_sessions.get(session_id)
        lease = None
        if session.status is DeviceSessionStatus.PENDING:
            moment = now()
            lease = uow.device_sessions.claim_poll(session_id, moment, moment + _lease_length())
            uow.commit()
    if lease is not None:
        poll(lease, oauth=oauth or wiring.get_oauth_client(), sealer=sealer, now=now)
        with uow:
            session = uow.device_sessions.get(session_id)
    return session


def advance_device_sessions(
    *,
    remaining_ms: Callable[[], int],
    margin_ms: int | None = None,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> PollerReport:
    """The scheduled poller: poll every pending session when it is due, until none is pending or the time left
    is down to ``margin_ms`` (default: one provider call and a few seconds). An idle run costs one query.

    Sessions are claimed one free thread at a time, never in batches: a claimed session starts its poll at once,
    so its lease cannot run out while it waits behind others, and each thread that frees goes to the tenant with
    the fewest polls in flight (``connvault_claim_device_polls``, migration 0094). One tenant's many or slow
    sessions then delay another tenant's by one poll at most, not by their whole backlog."""
    margin = margin_ms if margin_ms is not None else int(get_settings().http_timeout_seconds * 1000) + 5000
    client = oauth or wiring.get_oauth_client()
    results: list[PollResult] = []
    running: set[Future[PollResult]] = set()
    with ThreadPoolExecutor(max_workers=POLL_CONCURRENCY, thread_name_prefix="device-poll") as pool:
        while True:
            free = POLL_CONCURRENCY - len(running)
            wake: float | None = None  # seconds until a session may be due; None: only a running poll wakes us
            if free and remaining_ms() > margin:
                moment = now()
                with UnitOfWork(None, sealer=sealer) as uow:
                    due = uow.device_sessions.claim_due(moment, free, moment + _lease_length())
                    uow.commit()
                    upcoming = uow.device_sessions.next_poll_at() if len(due) < free else None
                running |= {pool.submit(_poll_due, job, client, sealer, now) for job in due}
                if upcoming is not None:
                    wake = min(max((upcoming - now()).total_seconds(), 0.05), IDLE_WAIT_SECONDS * 5)
            if not running:
                if wake is None:
                    break  # nothing pending, or no time left for another poll
                sleep(wake)
                continue
            done, running = wait(running, timeout=wake, return_when=FIRST_COMPLETED)
            results += [future.result() for future in done]
    ends = (DeviceSessionStatus.DENIED, DeviceSessionStatus.EXPIRED, DeviceSessionStatus.FAILED)
    report = PollerReport(
        polled=sum(result != LAPSED for result in results),
        completed=sum(result is DeviceSessionStatus.COMPLETED for result in results),
        ended=sum(result in ends for result in results),
        errors=sum(result == FAILED_HERE for result in results),
        lapsed=sum(result == LAPSED for result in results),
    )
    metrics.add_metric(name=MetricName.DEVICE_POLLS, unit="Count", value=report.polled)
    logger.info(
        "device sessions advanced",
        extra={"polled": report.polled, "completed": report.completed, "ended": report.ended},
    )
    return report


def poll(lease: PollLease, *, oauth: OAuthClient, sealer: Sealer | None, now: Clock) -> DeviceSessionStatus | None:
    """One poll of the token endpoint for a leased session, and its outcome recorded; the session's status.

    None: the lease had run out before the poll started, so it did nothing. Whoever polls the session next
    (the tenant's GET, another poller run) moved its next poll an interval ahead, and polling too would ask the
    provider twice within one interval; the lease is renewed in the same statement that checks it, so it also
    covers the whole provider call."""
    session = lease.session
    tenant_id = session.tenant_id
    if session.expires_at <= now() or session.codes is None:
        return _end(lease, DeviceSessionStatus.EXPIRED, "expired_token", sealer=sealer)
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        moment = now()
        if not uow.device_sessions.renew_lease(session.id, lease.owner, moment, moment + _lease_length()):
            logger.info("device poll skipped: its lease ran out", extra={"connect_session_id": str(session.id)})
            return None
        provider = uow.providers.get(session.provider_id)
        integration = uow.integrations.find(provider.id)
        uow.commit()
    if integration is None:
        return _end(lease, DeviceSessionStatus.FAILED, "integration_missing", sealer=sealer)
    try:
        tokens = oauth.poll_device(provider, integration.client, session.codes.device_code.reveal(), now())
    except (ReauthRequired, ProviderRejected, ProviderUnavailable) as exc:
        return _after_refusal(lease, poll_outcome(exc), exc, sealer=sealer, now=now)
    return _complete(lease, provider, integration, tokens, oauth=oauth, sealer=sealer, now=now)


def _poll_due(due: DueSession, oauth: OAuthClient, sealer: Sealer | None, now: Clock) -> PollResult:
    ids = {"connect_session_id": str(due.session_id), "tenant_id": str(due.tenant_id)}
    try:
        with UnitOfWork(due.tenant_id, sealer=sealer) as uow:
            lease = uow.device_sessions.lease_from_claim(due)
        status = poll(lease, oauth=oauth, sealer=sealer, now=now)
    except NotFound:
        return DeviceSessionStatus.FAILED  # deleted with its tenant or provider meanwhile
    except Exception as exc:  # one session's fault must not stop the others; its lease runs out by itself
        code = exc.code if isinstance(exc, ConnvaultError) else "internal_error"
        logger.error(
            "device poll failed on our side", extra={**ids, "error_code": code, "error_type": type(exc).__name__}
        )
        return FAILED_HERE
    return LAPSED if status is None else status


def _after_refusal(
    lease: PollLease,
    outcome: PollOutcome,
    failure: ReauthRequired | ProviderRejected | ProviderUnavailable,
    *,
    sealer: Sealer | None,
    now: Clock,
) -> DeviceSessionStatus:
    session = lease.session
    ends = {
        PollOutcome.DENIED: DeviceSessionStatus.DENIED,
        PollOutcome.EXPIRED: DeviceSessionStatus.EXPIRED,
        PollOutcome.FAILED: DeviceSessionStatus.FAILED,
    }
    if outcome in ends:
        return _end(lease, ends[outcome], failure.reason or failure.code, sealer=sealer)
    moment = now()
    interval, failures = session.interval_seconds, 0
    wait = float(interval)
    if outcome is PollOutcome.SLOW_DOWN:
        interval += SLOW_DOWN_SECONDS
        wait = interval
    elif outcome is PollOutcome.RETRY:
        failures = session.poll_failures + 1
        retry_after = failure.retry_after if isinstance(failure, ProviderUnavailable) else None
        wait = max(min(interval * 2.0**failures, MAX_RETRY_WAIT_SECONDS), retry_after or 0.0)
    with UnitOfWork(session.tenant_id, sealer=sealer) as uow:
        uow.device_sessions.record_wait(
            session.id,
            lease.owner,
            interval_seconds=min(interval, 3600),
            next_poll_at=moment + timedelta(seconds=wait),
            poll_failures=failures,
        )
        uow.commit()
    return DeviceSessionStatus.PENDING


def _complete(
    lease: PollLease,
    provider: Provider,
    integration: Integration,
    tokens: OAuth2Tokens,
    *,
    oauth: OAuthClient,
    sealer: Sealer | None,
    now: Clock,
) -> DeviceSessionStatus:
    """Store the grant and end the session in one transaction, retried on a database error: the device code
    is spent, so these tokens exist nowhere else. A grant that cannot be stored (the tenant's quota of
    connections is full, the database stays down) is revoked at the provider and the session fails. A reconnect
    retires the grant it replaced, as the redirect flow's does (``services/revocation.py``)."""
    session = lease.session
    credentials = OAuth2Credentials(tokens.access_token, tokens.refresh_token, tokens.id_token)
    grant = NewCredentials.answered(credentials, tokens, session.scopes)
    metadata = {"provider": dict(tokens.extra)} if tokens.extra else {}
    try:
        saved = _store(session, grant, metadata, sealer=sealer, now=now)
    except Exception as exc:  # whatever failed, the provider's grant must not outlive it
        revoke_orphaned_grant(oauth, provider, integration.client, credentials, exc)
        code = exc.code if isinstance(exc, QuotaExceeded) else "server_error"
        return _end(lease, DeviceSessionStatus.FAILED, code, sealer=sealer)
    retire_replaced_grant(oauth, provider, integration, saved)
    connection = saved.connection
    metrics.add_metric(name=MetricName.CONNECT_COMPLETED, unit="Count", value=1)
    logger.info(
        "device session completed",
        extra={"connect_session_id": str(session.id), "connection_id": str(connection.id), "provider": provider.slug},
    )
    return DeviceSessionStatus.COMPLETED


def _store(
    session: DeviceSession, grant: NewCredentials, metadata: dict[str, Any], *, sealer: Sealer | None, now: Clock
) -> SavedGrant:

    def save() -> SavedGrant:
        with UnitOfWork(session.tenant_id, sealer=sealer) as uow:
            saved = store_grant(uow, session, grant, metadata, now(), kind=ConnectionKind.DEVICE_CODE)
            connection_id = saved.connection.id
            uow.device_sessions.finish(session.id, None, DeviceSessionStatus.COMPLETED, connection_id=connection_id)
            uow.commit()
        return saved

    return retry(save, attempts=STORE_ATTEMPTS, on=(DatabaseUnavailable,), wait=lambda attempt: 0.2 * attempt)


def _end(lease: PollLease, status: DeviceSessionStatus, code: str, *, sealer: Sealer | None) -> DeviceSessionStatus:
    session = lease.session
    with UnitOfWork(session.tenant_id, sealer=sealer) as uow:
        uow.device_sessions.finish(session.id, lease.owner, status, error_code=code)
        uow.commit()
    logger.info(
        "device session ended",
        extra={"connect_session_id": str(session.id), "status": status.value, "error_code": code},
    )
    return status


def _device_provider(uow: UnitOfWork, slug: str) -> Provider:
    try:
        provider = uow.providers.get_by_slug(slug)
    except NotFound:
        raise InvalidInput("unknown provider", field="provider") from None
    if provider.auth_type is not AuthType.OAUTH2 or provider.device_authorization_url is None:
        raise InvalidInput("the provider offers no device flow (device_authorization_url)", field="provider")
    return provider


def _lease_length() -> timedelta:
    """Longer than one provider call, so a poll never outlives its lease."""
    return timedelta(seconds=get_settings().http_timeout_seconds + 10)
