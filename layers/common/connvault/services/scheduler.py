"""The scheduled refresh: renew due OAuth connections ahead of expiry, so token fetch almost never waits.

A run (``refresh_due``) claims due connections in batches (``claim_due``: ``FOR UPDATE SKIP LOCKED`` plus a
lease, across tenants, ids only) and refreshes each under its own tenant through ``refresh_with_lease``, the
single-flight path token fetch also uses. An overlapping run skips what another holds, and a token fetch that
finds the lease taken waits for the result, so one connection never costs two provider calls. The design,
and why a lease rather than a row lock, is in ``docs/refresh.md``.

Inside a run:

* a pool of ``refresh_concurrency`` threads, with the HTTP pool sized to match;
* one gate per provider admits at most its cap (catalog ``max_concurrent_refreshes``, else the setting).
  Jobs over the cap queue in the gate and are run by the thread that leaves it, so no thread sits blocked
  while other providers have work;
* each thread waits a random moment before its first job (jitter), so thousands of tokens issued together
  do not reach a provider in lockstep;
* claiming is back-pressured: a claim is made while a pool's worth of jobs still waits, so no thread idles
  through the claim, and tops the queue up by at most one more pool's worth, so a lease is not taken long
  before it is used;
* past the deadline (``refresh_deadline_margin_ms`` before the Lambda's end) nothing is claimed or started,
  unstarted leases are released, and the run returns after the refreshes in flight have finished.

The same engine serves the fan-out worker (``services/fanout.py``), whose jobs take their lease themselves.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError

from connvault.clock import Clock, utcnow
from connvault.config import Settings, get_settings
from connvault.db.uow import UnitOfWork
from connvault.errors import (
    ConnvaultError,
    DatabaseUnavailable,
    IntegrationCredentialsInvalid,
    KeyServiceUnavailable,
    NotFound,
    ProviderUnavailable,
    ReauthRequired,
)
from connvault.models import ConnectionStatus, IntegrationStatus, needs_refresh
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.observability import MetricName, logger, metrics
from connvault.services.housekeeping import purge_expired_connect_sessions
from connvault.services.refresh import RefreshClient, RefreshPolicy, backoff_seconds, refresh_with_lease

OUTAGES = (KeyServiceUnavailable, DatabaseUnavailable, DBAPIError, OSError)
"""Faults of ours that are outages, not the row's: they push a connection back but never park it."""

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import Claim, Lease
    from connvault.models import Connection, Provider


class Outcome(StrEnum):
    """What became of one job."""

    REFRESHED = "refreshed"
    PERMANENT = "permanent_failure"
    """The provider refused the grant: the connection is ``needs_reauth`` and not retried."""
    TRANSIENT = "transient_failure"
    """The provider failed in a retryable way: backoff recorded in ``next_refresh_at``."""
    SKIPPED = "skipped"
    """Nothing to do: the connection is gone, someone else holds its lease, or it is no longer due."""
    UNSTARTED = "unstarted"
    """Not attempted before the deadline (or its lease ran short while queued); the lease was released."""
    ERROR = "error"
    """A fault on our side (database, KMS, a bug); the connection is pushed back by the base backoff."""
    PARKED = "parked"
    """A fault on our side that this connection met too often in a row: it is ``parked`` and no longer claimed."""
    INTEGRATION_REFUSED = "integration_refused"
    """The provider refused the integration's client credentials (now, or earlier in the run): the integration
    is ``invalid_credentials``, the connection was left as it was."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The knobs of a run, read from ``Settings`` once."""

    horizon_seconds: int = 900
    batch_size: int = 100
    concurrency: int = 16
    per_provider_concurrency: int = 8
    tenant_share: int = 8
    """At most this many of one tenant's connections per claim; tenants take turns."""
    lease_seconds: int = 30
    deadline_margin_ms: int = 15_000
    jitter_seconds: float = 0.25
    park_after_faults: int = 3
    http_timeout_seconds: float = 10.0
    store_seconds: float = 10.0
    """The longest storing a refresh's answer may take (the database's statement timeout)."""

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SchedulerConfig:
        settings = settings or get_settings()
        return cls(
            horizon_seconds=settings.refresh_horizon_seconds,
            batch_size=settings.refresh_batch_size,
            concurrency=max(1, settings.refresh_concurrency),
            per_provider_concurrency=max(1, settings.refresh_per_provider_concurrency),
            tenant_share=max(1, settings.refresh_tenant_share),
            lease_seconds=settings.refresh_lease_seconds,
            deadline_margin_ms=settings.refresh_deadline_margin_ms,
            jitter_seconds=settings.refresh_jitter_seconds,
            park_after_faults=settings.refresh_park_after_faults,
            http_timeout_seconds=settings.provider_deadline_seconds,
            store_seconds=settings.store_deadline_seconds,
        )

    @property
    def min_lease_left(self) -> timedelta:
        """A queued job starts only if its lease outlasts one provider call and the store of its answer;
        otherwise another caller could take the lease over while this one is still talking to the provider."""
        return timedelta(seconds=self.http_timeout_seconds + self.store_seconds)


@dataclass(frozen=True, slots=True)
class RunReport:
    """Counts of one run (scheduled, fan-out scan or worker batch); ids only ever go to the logs."""

    claimed: int = 0
    refreshed: int = 0
    permanent_failures: int = 0
    integration_refused: int = 0
    parked: int = 0
    transient_failures: int = 0
    skipped: int = 0
    unstarted: int = 0
    errors: int = 0
    enqueued: int = 0
    due_backlog: int | None = None
    """Connections due and unleased when the run ended (above zero run after run: the scheduler lags);
    None where not measured (the fan-out worker)."""
    duration_seconds: float = 0.0
    stopped_by_deadline: bool = False

    def as_dict(self) -> dict[str, int | float | bool]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Job:
    """One connection to refresh.

    With ``claim`` set the lease was claimed already (scheduled run). Without it (fan-out worker) the job takes
    the lease itself with ``acquire_lease`` and drops out unless the connection is still due.
    """

    connection_id: UUID
    tenant_id: UUID
    claim: Claim | None = None
    stale: bool = False
    ref: str | None = None
    """The caller's handle for per-job results (an SQS message id)."""

    @classmethod
    def of_claim(cls, claim: Claim) -> Job:
        return cls(claim.connection_id, claim.tenant_id, claim, claim.stale)

    @property
    def owner(self) -> UUID | None:
        """The claimed lease's owner, if the lease was claimed for this job."""
        return self.claim.owner if self.claim is not None else None

    @property
    def provider_id(self) -> UUID | None:
        """The connection's provider, known from the claim (a fan-out job learns it only from its lease)."""
        return self.claim.provider_id if self.claim is not None else None


class Deadline:
    """When to stop starting work: ``margin_ms`` before the Lambda ends, room for the refreshes in flight."""

    def __init__(self, remaining_ms: Callable[[], int], margin_ms: int) -> None:
        self._remaining_ms = remaining_ms
        self._margin_ms = margin_ms

    def passed(self) -> bool:
        return self._remaining_ms() <= self._margin_ms


@lru_cache(maxsize=4)
def scheduler_oauth_client(concurrency: int, timeout_seconds: float) -> OAuthClient:
    """An OAuth client whose pool keeps one connection per thread and host; warm runs reuse the sockets.
    Tests pass their own client instead."""
    return OAuthClient(HttpTransport(timeout_seconds, maxsize=concurrency))


def is_due(connection: Connection, now: datetime, horizon_seconds: int) -> bool:
    """The claim's condition (``connvault_claim_due_refreshes``) for one connection already in hand."""
    return (
        connection.status is ConnectionStatus.ACTIVE
        and connection.refresh_token is not None
        and needs_refresh(connection.expires_at, now, horizon_seconds)
        and (connection.next_refresh_at is None or connection.next_refresh_at <= now)
    )


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
    oauth = oauth or scheduler_oauth_client(config.concurrency, config.http_timeout_seconds)
    runner = Runner(
        config, policy, oauth, sealer=sealer, now=now, deadline=Deadline(remaining_ms, config.deadline_margin_ms)
    )

    claimer = Claimer(config, sealer=sealer, now=now)
    runner.drive(lambda room, saturated: [Job.of_claim(claim) for claim in claimer.claim(room, saturated)])
    report = runner.report(due_backlog=due_backlog(config, sealer=sealer, now=now), started=started)
    publish(report)
    logger.info("refresh run finished", extra=report.as_dict())
    return report


class Claimer:
    """A run's claims: batches of due connections, fair across tenants (round robin, at most ``tenant_share``
    each per claim) and leaving out the providers whose queue in the run is full."""

    def __init__(self, config: SchedulerConfig, *, sealer: Sealer | None, now: Clock) -> None:
        self._config = config
        self._sealer = sealer
        self._now = now
        self._run_started = now()
        self._after_tenant: UUID | None = None

    def claim(self, room: int, skip_providers: Sequence[UUID] = ()) -> list[Claim]:
        config, moment = self._config, self._now()
        with UnitOfWork(None, sealer=self._sealer) as uow:
            claims = uow.connections.claim_due(
                moment,
                config.horizon_seconds,
                min(room, config.batch_size),
                moment + timedelta(seconds=config.lease_seconds),
                run_started=self._run_started,
                per_tenant=config.tenant_share,
                after_tenant=self._after_tenant,
                skip_providers=skip_providers,
            )
            uow.commit()
        if claims:
            self._after_tenant = _last_in_turn({claim.tenant_id for claim in claims}, self._after_tenant)
        return claims


def _last_in_turn(tenants: set[UUID], after: UUID | None) -> UUID:
    """The tenant a round-robin claim that started after ``after`` ended with: the next claim starts past it."""
    later = [tenant for tenant in tenants if after is None or tenant > after]
    return max(later) if later else max(tenants)


def run_scheduled(remaining_ms: Callable[[], int]) -> RunReport:
    """The scheduled function's one call: purge expired connect sessions of every tenant, then refresh in this
    invocation, or enqueue for ``refresh_worker`` when ``CONNVAULT_REFRESH_QUEUE_URL`` is set (fan-out mode)."""
    purge_expired_connect_sessions()
    queue_url = get_settings().refresh_queue_url
    if queue_url:
        # Imported here: the fan-out module builds on this one.
        from connvault.services import fanout

        return fanout.enqueue_due(queue_url=queue_url, remaining_ms=remaining_ms)
    return refresh_due(remaining_ms=remaining_ms)


def due_backlog(config: SchedulerConfig, *, sealer: Sealer | None = None, now: Clock = utcnow) -> int:
    with UnitOfWork(None, sealer=sealer) as uow:
        return uow.connections.due_backlog(now(), config.horizon_seconds)


def publish(report: RunReport) -> None:
    """One EMF metric per outcome; the handler's ``log_metrics`` flushes them."""
    counts = [
        (MetricName.REFRESHED, report.refreshed),
        (MetricName.REFRESH_PERMANENT_FAILURE, report.permanent_failures),
        (MetricName.REFRESH_INTEGRATION_REFUSED, report.integration_refused),
        (MetricName.REFRESH_TRANSIENT_FAILURE, report.transient_failures),
        (MetricName.REFRESH_ERROR, report.errors),
        (MetricName.REFRESH_PARKED, report.parked),
        (MetricName.REFRESH_SKIPPED, report.skipped + report.unstarted),
        (MetricName.REFRESH_ENQUEUED, report.enqueued),
    ]
    if report.due_backlog is not None:
        counts.append((MetricName.REFRESH_DUE_BACKLOG, report.due_backlog))
    for name, value in counts:
        metrics.add_metric(name=name, unit="Count", value=value)
    metrics.add_metric(name=MetricName.REFRESH_RUN_DURATION, unit="Milliseconds", value=report.duration_seconds * 1000)


# -- the engine ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Ticket:
    """A job whose lease is held, waiting for or holding a place in its provider's gate."""

    job: Job
    lease: Lease
    gate: _Gate
    client: RefreshClient


class _Gate:
    """At most ``cap`` refreshes in flight against one provider; the rest wait here without holding a thread."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiting: deque[_Ticket] = deque()

    def enter(self, ticket: _Ticket) -> bool:
        """True: run it now. False: queued; a thread leaving the gate will run it."""
        with self._lock:
            if self._in_flight < self.cap:
                self._in_flight += 1
                return True
            self._waiting.append(ticket)
            return False

    def leave(self) -> _Ticket | None:
        """The next queued ticket, which keeps the caller's place, or None once the queue is empty."""
        with self._lock:
            if self._waiting:
                return self._waiting.popleft()
            self._in_flight -= 1
            return None


def _stagger(jitter_seconds: float) -> None:
    """Thread start-up jitter: spreads a run's first wave of provider calls over ``jitter_seconds``."""
    time.sleep(random.uniform(0, jitter_seconds))  # noqa: S311 - jitter, not a secret


class Runner:
    """Runs jobs on a thread pool under per-provider caps and a deadline, and counts what became of them."""

    def __init__(
        self,
        config: SchedulerConfig,
        policy: RefreshPolicy,
        oauth: OAuthClient,
        *,
        sealer: Sealer | None,
        now: Clock,
        deadline: Deadline,
    ) -> None:
        self._config = config
        self._policy = policy
        self._oauth = oauth
        self._sealer = sealer
        self._now = now
        self._deadline = deadline
        self._changed = threading.Condition()
        self._outstanding = 0
        self._submitted = 0
        self._counts: Counter[Outcome] = Counter()
        self._by_ref: dict[str, Outcome] = {}
        self._gates: dict[UUID, _Gate] = {}
        self._by_provider: Counter[UUID] = Counter()
        """Claimed jobs not yet resolved, by provider."""
        # Provider and client per (tenant, provider), read once per run: thousands of due connections share a
        # handful of integrations, and a run lasts minutes at most.
        self._clients: dict[tuple[UUID, UUID], RefreshClient] = {}
        self._stopped_by_deadline = False

    @property
    def outcomes(self) -> dict[str, Outcome]:
        """Outcome per ``Job.ref``; a job that was never submitted is absent."""
        with self._changed:
            return dict(self._by_ref)

    def drive(self, next_jobs: Callable[[int, Sequence[UUID]], Sequence[Job]]) -> None:
        """Ask ``next_jobs(room, saturated_providers)`` for work until it has none or the deadline passes;
        return when every submitted job is resolved.

        Jobs queued behind a provider's cap do not hold back claims for the others: only the jobs that could
        run count against the room, and ``next_jobs`` is told which providers already have a full queue so it
        leaves their connections for later. While only such providers have work, the run waits for their
        queues to drain rather than ending.
        """
        config = self._config
        with ThreadPoolExecutor(
            max_workers=config.concurrency,
            thread_name_prefix="refresh",
            initializer=_stagger,
            initargs=(config.jitter_seconds,),
        ) as pool:
            while True:
                room = self._wait_for_room()
                if self._deadline.passed():
                    self._stopped_by_deadline = True
                    break
                saturated = self._saturated()
                jobs = next_jobs(room, saturated)
                if not jobs:
                    if saturated and self._wait_for_a_resolution():
                        continue
                    break
                with self._changed:
                    self._outstanding += len(jobs)
                    self._submitted += len(jobs)
                    self._by_provider.update(job.provider_id for job in jobs if job.provider_id is not None)
                for job in jobs:
                    pool.submit(self._start, job)

    def report(self, *, due_backlog: int | None, started: float) -> RunReport:
        counts = self._counts
        return RunReport(
            claimed=self._submitted,
            refreshed=counts[Outcome.REFRESHED],
            permanent_failures=counts[Outcome.PERMANENT],
            integration_refused=counts[Outcome.INTEGRATION_REFUSED],
            parked=counts[Outcome.PARKED],
            transient_failures=counts[Outcome.TRANSIENT],
            skipped=counts[Outcome.SKIPPED],
            unstarted=counts[Outcome.UNSTARTED],
            errors=counts[Outcome.ERROR],
            due_backlog=due_backlog,
            duration_seconds=time.monotonic() - started,
            stopped_by_deadline=self._stopped_by_deadline or counts[Outcome.UNSTARTED] > 0,
        )

    # -- flow --------------------------------------------------------------------------------------------

    def _wait_for_room(self) -> int:
        """Block until at most one pool's worth of runnable jobs waits behind the ones running, then say how
        many jobs top the queue up again. Claiming while a pool's worth still waits keeps threads from idling
        through a claim's round trip; claiming no more than that keeps leases from ageing in the queue. Jobs
        held back by their provider's cap are not runnable and do not count."""
        low = 2 * self._config.concurrency
        high = low + min(self._config.batch_size, self._config.concurrency)
        with self._changed:
            while self._runnable() > low and not self._deadline.passed():
                self._changed.wait(0.1)
            return high - self._runnable()

    def _runnable(self) -> int:
        """Outstanding jobs less those beyond their provider's cap (caller holds ``_changed``)."""
        held = sum(max(0, count - self._cap(provider)) for provider, count in self._by_provider.items())
        return self._outstanding - held

    def _saturated(self) -> list[UUID]:
        """Providers with a full queue in this run: a wave in flight and another waiting."""
        with self._changed:
            return [provider for provider, count in self._by_provider.items() if count >= 2 * self._cap(provider)]

    def _cap(self, provider_id: UUID) -> int:
        gate = self._gates.get(provider_id)
        return gate.cap if gate is not None else self._config.per_provider_concurrency

    def _wait_for_a_resolution(self) -> bool:
        """Wait until some job resolves (or the deadline passes); False if nothing is outstanding."""
        with self._changed:
            outstanding = self._outstanding
            if outstanding == 0:
                return False
            while self._outstanding == outstanding and not self._deadline.passed():
                self._changed.wait(0.1)
            return True

    def _start(self, job: Job) -> None:
        if self._deadline.passed():
            if job.owner is not None:
                self._release(job.tenant_id, job.connection_id, job.owner)
            self._resolve(job, Outcome.UNSTARTED)
            return
        try:
            ticket = self._prepare(job)
        except Exception as exc:
            self._resolve(job, self._push_back(job.tenant_id, job.connection_id, job.owner, exc))
            return
        if ticket is None or not ticket.gate.enter(ticket):
            return
        current: _Ticket | None = ticket
        while current is not None:
            self._resolve(current.job, self._run(current))
            current = current.gate.leave()

    def _prepare(self, job: Job) -> _Ticket | None:
        """The job's lease and gate; None when the job is resolved already (nothing to do)."""
        with UnitOfWork(job.tenant_id, sealer=self._sealer) as uow:
            try:
                lease = self._lease(uow, job)
            except NotFound:
                lease = None  # deleted since it was claimed or enqueued: its lease went with the row
            if lease is None:
                self._resolve(job, Outcome.SKIPPED)
                return None
            client = self._client(uow, lease.connection.tenant_id, lease.connection.provider_id)
            gate = self._gate(client.provider)
            if job.claim is None:
                uow.commit()  # the lease this job just took; a claimed job only read its row
        return _Ticket(job, lease, gate, client)

    def _lease(self, uow: UnitOfWork, job: Job) -> Lease | None:
        connections = uow.connections
        if job.claim is not None:
            return connections.lease_from_claim(job.claim)
        moment = self._now()
        lease = connections.acquire_lease(
            job.connection_id, moment, moment + timedelta(seconds=self._config.lease_seconds)
        )
        if lease is None or not is_due(lease.connection, moment, self._config.horizon_seconds):
            return None  # busy elsewhere, or refreshed since it was enqueued; not committed, so no lease taken
        return replace(lease, stale=lease.stale or job.stale)

    def _client(self, uow: UnitOfWork, tenant_id: UUID, provider_id: UUID) -> RefreshClient:
        key = (tenant_id, provider_id)
        with self._changed:
            client = self._clients.get(key)
        if client is None:
            client = RefreshClient.load(uow, provider_id)
            with self._changed:
                self._clients[key] = client
        return client

    def _gate(self, provider: Provider) -> _Gate:
        cap = provider.max_concurrent_refreshes or self._config.per_provider_concurrency
        with self._changed:
            return self._gates.setdefault(provider.id, _Gate(cap))

    def _run(self, ticket: _Ticket) -> Outcome:
        lease = ticket.lease
        if self._deadline.passed() or lease.until - self._now() < self._config.min_lease_left:
            self._release(lease.connection.tenant_id, lease.connection.id, lease.owner)
            return Outcome.UNSTARTED
        # The run's current view of the integration: one refused while this job waited is skipped, not called.
        with self._changed:
            client = self._clients.get((lease.connection.tenant_id, lease.connection.provider_id), ticket.client)
        return self._refresh(lease, client)

    def _refresh(self, lease: Lease, client: RefreshClient) -> Outcome:
        connection = lease.connection
        ids = {"connection_id": str(connection.id), "tenant_id": str(connection.tenant_id)}
        try:
            refresh_with_lease(
                lease, oauth=self._oauth, policy=self._policy, sealer=self._sealer, now=self._now, client=client
            )
        except IntegrationCredentialsInvalid:
            if client.integration is not None:  # the rest of this run's jobs for it skip the provider too
                refused = replace(client.integration, status=IntegrationStatus.INVALID_CREDENTIALS)
                with self._changed:
                    self._clients[(connection.tenant_id, connection.provider_id)] = replace(client, integration=refused)
            logger.info("integration credentials refused; refresh waits for new ones", extra=ids)
            return Outcome.INTEGRATION_REFUSED
        except ReauthRequired as exc:
            logger.info("refresh refused; connection needs reauth", extra={**ids, "reason": exc.reason})
            return Outcome.PERMANENT
        except ProviderUnavailable as exc:
            expired = self._expire_if_lapsed(connection)
            logger.info(
                "refresh failed; retrying later", extra={**ids, "reason": exc.reason or exc.code, "expired": expired}
            )
            return Outcome.TRANSIENT
        except NotFound:
            logger.info("connection deleted during its refresh", extra=ids)
            return Outcome.SKIPPED
        except Exception as exc:
            return self._push_back(connection.tenant_id, connection.id, lease.owner, exc)
        logger.debug("refreshed", extra=ids)
        return Outcome.REFRESHED

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _resolve(self, job: Job, outcome: Outcome) -> None:
        with self._changed:
            self._counts[outcome] += 1
            if job.provider_id is not None:
                self._by_provider[job.provider_id] -= 1
            if job.ref is not None:
                self._by_ref[job.ref] = outcome
            self._outstanding -= 1
            self._changed.notify_all()

    def _release(self, tenant_id: UUID, connection_id: UUID, owner: UUID) -> None:
        try:
            with UnitOfWork(tenant_id, sealer=self._sealer) as uow:
                uow.connections.release_lease(connection_id, owner)
                uow.commit()
        except Exception as exc:
            logger.error(
                "could not release a refresh lease; it runs out by itself",
                extra={"connection_id": str(connection_id), "error_type": type(exc).__name__},
            )

    def _expire_if_lapsed(self, connection: Connection) -> bool:
        """After a transient failure, mark a connection whose token has run out ``expired`` (keeping the last
        error code), unless someone refreshed or took its lease in the meantime. Token fetch can still revive
        it; the scheduler no longer scans it."""
        moment = self._now()
        if connection.expires_at is None or connection.expires_at > moment:
            return False
        try:
            with UnitOfWork(connection.tenant_id, sealer=self._sealer) as uow:
                current = uow.connections.get(connection.id, for_update=True)
                leased = current.refresh_lease_until is not None and current.refresh_lease_until > moment
                lapsed = current.expires_at is not None and current.expires_at <= moment
                if leased or not lapsed or current.status not in (ConnectionStatus.ACTIVE, ConnectionStatus.ERROR):
                    return False
                uow.connections.set_status(connection.id, ConnectionStatus.EXPIRED, error_code=current.last_error_code)
                uow.commit()
        except Exception as exc:
            logger.error(
                "could not mark a lapsed connection expired",
                extra={"connection_id": str(connection.id), "error_type": type(exc).__name__},
            )
            return False
        return True

    def _push_back(self, tenant_id: UUID, connection_id: UUID, owner: UUID | None, exc: Exception) -> Outcome:
        """A fault of ours: log its type (never its text: driver messages can quote values), and record it apart
        from the provider's failures, with the base backoff so this run does not claim the connection again.

        An outage (KMS, the database) is only pushed back. Any other fault is the row's own (an envelope that
        does not open, a bug it triggers): after ``park_after_faults`` of them in a row with the same code the
        connection is parked, so no run claims it again in a loop. ``refresh_with_lease`` may have released the
        lease already; then a fresh one is taken to record the fault.
        """
        code = exc.code if isinstance(exc, ConnvaultError) else "internal_error"
        outage = isinstance(exc, OUTAGES)
        ids = {"connection_id": str(connection_id), "tenant_id": str(tenant_id)}
        logger.error("refresh failed on our side", extra={**ids, "error_code": code, "error_type": type(exc).__name__})
        status = None
        try:
            with UnitOfWork(tenant_id, sealer=self._sealer) as uow:
                moment = self._now()
                connections = uow.connections
                if owner is None:
                    taken = connections.take_lease(
                        connection_id, moment, moment + timedelta(seconds=self._config.lease_seconds)
                    )
                    owner = taken[0] if taken is not None else None
                if owner is not None:
                    status = connections.record_own_fault(
                        connection_id,
                        owner,
                        code=code,
                        next_refresh_at=moment + timedelta(seconds=backoff_seconds(1, self._policy)),
                        park_after=None if outage else self._config.park_after_faults,
                    )
                uow.commit()
        except Exception as second:
            logger.error(
                "could not record a refresh fault; its lease runs out by itself",
                extra={"connection_id": str(connection_id), "error_type": type(second).__name__},
            )
        if status is ConnectionStatus.PARKED:
            logger.warning("connection parked after repeated faults on our side", extra={**ids, "reason": code})
            return Outcome.PARKED
        return Outcome.ERROR
