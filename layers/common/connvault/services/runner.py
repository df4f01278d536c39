"""The parallel refresh engine: one pool of threads running refresh jobs under per-provider caps and a deadline.

Two run modes drive it: the scheduled run (``services/scheduler.py``), whose jobs come from fair claims, and the
fan-out worker (``services/fanout.py``), whose jobs take their lease themselves. Inside a run:

* a pool of ``refresh_concurrency`` threads, with the HTTP pool sized to match;
* one gate per provider admits at most its cap (catalog ``max_concurrent_refreshes``, else the setting), and
  while several providers have work, at most its share of the threads; jobs over the limit queue in the gate
  and are run by a thread leaving a gate, so no thread sits blocked while other providers have work, and a slow
  provider cannot hold every thread;
* each thread waits a random moment before its first job (jitter), so thousands of tokens issued together do
  not reach a provider in lockstep;
* new work is asked for while a pool's worth of runnable jobs still waits, so no thread idles through a claim,
  and at most one more pool's worth, so a lease is not taken long before it is used; jobs held back by their
  provider's cap are not runnable, and that provider is named as saturated so the next claim leaves it out;
* past the deadline (``refresh_deadline_margin_ms`` before the Lambda's end) nothing is asked for or started,
  unstarted leases are released, and the run returns after the refreshes in flight have finished.

Every lease transition goes through ``services/leases.py``; what a job's outcome means is in
``docs/refresh.md``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from connvault.config import DEFAULTS, Settings, get_settings
from connvault.db.uow import UnitOfWork
from connvault.errors import (
    ConnvaultError,
    DatabaseUnavailable,
    IntegrationCredentialsInvalid,
    KeyServiceUnavailable,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from connvault.models import ConnectionStatus, IntegrationStatus
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.observability import MetricName, logger, metrics
from connvault.services import leases
from connvault.services.leases import ProviderApp
from connvault.services.refresh import RefreshPolicy, backoff_seconds, refresh_with_lease

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from connvault.clock import Clock
    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import Claim, Lease
    from connvault.models import Connection, Provider

FRUITLESS_MEMORY_SECONDS = 5.0
"""How long a claim that found nothing outside the saturated providers is believed (see ``Runner.drive``)."""

OUTAGES = (KeyServiceUnavailable, DatabaseUnavailable, OSError)
"""Faults of ours that are outages, not the row's: they push a connection back but never park it."""


class Outcome(StrEnum):
    """What became of one job."""

    REFRESHED = "refreshed"
    PERMANENT = "permanent_failure"
    """The provider refused the grant: the connection is ``needs_reauth`` and not retried."""
    TRANSIENT = "transient_failure"
    """The provider failed, or refused the request without saying the grant is dead (a 403, a 404,
    ``invalid_request``, a code it alone knows): backoff recorded in ``next_refresh_at``."""
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

    horizon_seconds: int = DEFAULTS.refresh_horizon_seconds
    batch_size: int = DEFAULTS.refresh_batch_size
    concurrency: int = DEFAULTS.refresh_concurrency
    per_provider_concurrency: int = DEFAULTS.refresh_per_provider_concurrency
    tenant_share: int = DEFAULTS.refresh_tenant_share
    """At most this many of one tenant's connections per claim; tenants take turns."""
    lease_seconds: int = DEFAULTS.refresh_lease_seconds
    deadline_margin_ms: int = DEFAULTS.refresh_deadline_margin_ms
    jitter_seconds: float = DEFAULTS.refresh_jitter_seconds
    park_after_faults: int = DEFAULTS.refresh_park_after_faults
    http_timeout_seconds: float = DEFAULTS.provider_deadline_seconds
    store_seconds: float = DEFAULTS.store_deadline_seconds
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
    the lease itself (``leases.acquire``) and drops out unless the connection is still due.
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
def refresh_oauth_client(timeout_seconds: float) -> OAuthClient:
    """The refresh runs' OAuth client, kept between warm runs. It makes token calls only, each on a connection of
    its own (``HttpTransport.post_form``), so no pool is sized for its threads. Tests pass their own client."""
    return OAuthClient(HttpTransport(timeout_seconds))


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
    app: ProviderApp

    @property
    def provider_id(self) -> UUID:
        return self.lease.connection.provider_id


@dataclass(slots=True)
class _Gate:
    cap: int
    in_flight: int = 0
    waiting: deque[_Ticket] = field(default_factory=deque)


class _Gates:
    """The run's provider gates. Each provider has at most its cap of refreshes in flight, and while several
    providers have work none holds more than its share of the threads (``threads // providers with work``): a
    slow provider cannot take every thread from a fast one. What waits, waits here without holding a thread."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._lock = threading.Lock()
        self._gates: dict[UUID, _Gate] = {}

    def open(self, provider_id: UUID, cap: int) -> None:
        with self._lock:
            self._gates.setdefault(provider_id, _Gate(cap))

    def cap(self, provider_id: UUID) -> int | None:
        with self._lock:
            gate = self._gates.get(provider_id)
            return gate.cap if gate is not None else None

    def enter(self, ticket: _Ticket) -> bool:
        """True: run it now. False: queued; a thread leaving a gate will run it."""
        with self._lock:
            gate = self._gates[ticket.provider_id]
            if gate.in_flight < self._limit(gate, entering=True):
                gate.in_flight += 1
                return True
            gate.waiting.append(ticket)
            return False

    def leave(self, ticket: _Ticket) -> _Ticket | None:
        """What the thread that ran ``ticket`` runs next: a queued ticket of a provider within its limit (its own
        first, else the one with the fewest in flight), or None to give the thread back."""
        with self._lock:
            self._gates[ticket.provider_id].in_flight -= 1
            own = self._gates[ticket.provider_id]
            ready = [gate for gate in self._gates.values() if gate.waiting and gate.in_flight < self._limit(gate)]
            if not ready:
                return None
            gate = own if own in ready else min(ready, key=lambda candidate: candidate.in_flight)
            gate.in_flight += 1
            return gate.waiting.popleft()

    def _limit(self, gate: _Gate, *, entering: bool = False) -> int:
        busy = sum(1 for other in self._gates.values() if other.in_flight or other.waiting)
        if entering and not (gate.in_flight or gate.waiting):
            busy += 1
        return min(gate.cap, max(1, self._threads // max(busy, 1)))


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
        self._resolved = 0
        self._counts: Counter[Outcome] = Counter()
        self._by_ref: dict[str, Outcome] = {}
        self._gates = _Gates(config.concurrency)
        self._by_provider: Counter[UUID] = Counter()
        """Claimed jobs not yet resolved, by provider."""
        self._apps: dict[tuple[UUID, UUID], ProviderApp] = {}
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
            # The saturated providers a claim left out when it found nothing, and when: no other provider had due
            # connections then, so while those are all saturated again, a claim would walk every due row of theirs
            # to find nothing (most of a run's database time at 100,000 due). The run waits for one of their queues
            # to drain instead, re-asking only after FRUITLESS_MEMORY_SECONDS (others' rows may have come due).
            fruitless: tuple[set[UUID], float] | None = None
            while True:
                room = self._wait_for_room()
                if self._deadline.passed():
                    self._stopped_by_deadline = True
                    break
                resolved_before = self._resolved_so_far()
                saturated = self._saturated()
                remembered = (
                    fruitless is not None
                    and fruitless[0] <= set(saturated)
                    and time.monotonic() - fruitless[1] < FRUITLESS_MEMORY_SECONDS
                )
                jobs = [] if remembered else next_jobs(room, saturated)
                if not jobs:
                    if saturated and self._wait_for_a_resolution(since=resolved_before):
                        if not remembered:
                            fruitless = (set(saturated), time.monotonic())
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
        cap = self._gates.cap(provider_id)
        return cap if cap is not None else self._config.per_provider_concurrency

    def _wait_for_a_resolution(self, *, since: int) -> bool:
        """Wait until a job has resolved since ``since`` (or the deadline passes); whether one has. Counted from
        before the saturated providers were read, so jobs that all finish while the claim runs still count: the
        run then claims again instead of ending with connections due (it used to see nothing outstanding and
        stop)."""
        with self._changed:
            while self._resolved == since and self._outstanding > 0 and not self._deadline.passed():
                self._changed.wait(0.1)
            return self._resolved != since

    def _resolved_so_far(self) -> int:
        with self._changed:
            return self._resolved

    def _start(self, job: Job) -> None:
        if self._deadline.passed():
            if job.claim is not None:
                self._release(job.tenant_id, job.connection_id, job.claim.owner)
            self._resolve(job, Outcome.UNSTARTED)
            return
        try:
            ticket = self._prepare(job)
        except Exception as exc:
            self._resolve(job, self._fault(job.tenant_id, job.connection_id, job.owner, exc))
            return
        if ticket is None or not self._gates.enter(ticket):
            return
        current: _Ticket | None = ticket
        while current is not None:
            self._resolve(current.job, self._run(current))
            current = self._gates.leave(current)

    def _prepare(self, job: Job) -> _Ticket | None:
        """The job's lease, provider app and gate; None when the job is resolved already (nothing to do)."""
        uow = UnitOfWork(job.tenant_id, sealer=self._sealer)
        try:
            lease = self._lease(uow, job)
        except NotFound:
            lease = None  # deleted since it was claimed or enqueued: its lease went with the row
        if lease is None:
            self._resolve(job, Outcome.SKIPPED)
            return None
        app = self._app(uow, lease.connection.tenant_id, lease.connection.provider_id)
        self._gates.open(
            app.provider.id, app.provider.max_concurrent_refreshes or self._config.per_provider_concurrency
        )
        return _Ticket(job, lease, app)

    def _lease(self, uow: UnitOfWork, job: Job) -> Lease | None:
        if job.claim is not None:
            return leases.claimed(uow, job.claim)
        moment = self._now()
        taken = leases.acquire(uow, job.connection_id, now=moment, seconds=self._config.lease_seconds)
        if taken is None:
            return None  # busy elsewhere
        lease, app = taken
        with self._changed:
            self._apps.setdefault((lease.connection.tenant_id, lease.connection.provider_id), app)
        if not lease.connection.is_due(moment, self._config.horizon_seconds):
            leases.release(uow, [(lease.connection.id, lease.owner)])  # refreshed since it was enqueued
            return None
        return replace(lease, stale=lease.stale or job.stale)

    def _app(self, uow: UnitOfWork, tenant_id: UUID, provider_id: UUID) -> ProviderApp:
        """The provider and the tenant's app there, read once per run: thousands of due connections share a
        handful of integrations, and a run lasts minutes at most."""
        key = (tenant_id, provider_id)
        with self._changed:
            app = self._apps.get(key)
        if app is None:
            with uow:
                app = ProviderApp.load(uow, provider_id)
            with self._changed:
                app = self._apps.setdefault(key, app)
        return app

    def _cap_of(self, provider: Provider) -> int:
        return provider.max_concurrent_refreshes or self._config.per_provider_concurrency

    def _run(self, ticket: _Ticket) -> Outcome:
        lease = ticket.lease
        if self._deadline.passed() or lease.until - self._now() < self._config.min_lease_left:
            self._release(lease.connection.tenant_id, lease.connection.id, lease.owner)
            return Outcome.UNSTARTED
        # The run's current view of the integration: one refused while this job waited is skipped, not called.
        with self._changed:
            app = self._apps.get((lease.connection.tenant_id, lease.connection.provider_id), ticket.app)
        return self._refresh(lease, app)

    def _refresh(self, lease: Lease, app: ProviderApp) -> Outcome:
        connection = lease.connection
        uow = UnitOfWork(connection.tenant_id, sealer=self._sealer)
        ids = {"connection_id": str(connection.id), "tenant_id": str(connection.tenant_id)}
        try:
            refresh_with_lease(uow, lease, app, oauth=self._oauth, policy=self._policy, now=self._now)
        except IntegrationCredentialsInvalid as exc:
            if app.integration is not None:  # the rest of this run's jobs for it skip the provider too
                refused = replace(app.integration, status=IntegrationStatus.INVALID_CREDENTIALS)
                with self._changed:
                    self._apps[(connection.tenant_id, connection.provider_id)] = replace(app, integration=refused)
            logger.info("integration refused or missing; refresh waits for it", extra={**ids, "reason": exc.code})
            return Outcome.INTEGRATION_REFUSED
        except ReauthRequired as exc:
            logger.info("refresh refused; connection needs reauth", extra={**ids, "reason": exc.reason})
            return Outcome.PERMANENT
        except (ProviderUnavailable, ProviderRejected) as exc:
            expired = self._expire(uow, connection)
            logger.info(
                "refresh failed; retrying later",
                extra={**ids, "error_code": exc.code, "reason": exc.reason or exc.code, "expired": expired},
            )
            return Outcome.TRANSIENT
        except NotFound:
            logger.info("connection deleted during its refresh", extra=ids)
            return Outcome.SKIPPED
        except Exception as exc:
            return self._fault(connection.tenant_id, connection.id, lease.owner, exc)
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
            self._resolved += 1
            self._changed.notify_all()

    def _release(self, tenant_id: UUID, connection_id: UUID, owner: UUID) -> None:
        try:
            leases.release(UnitOfWork(tenant_id, sealer=self._sealer), [(connection_id, owner)])
        except Exception as exc:
            logger.error(
                "could not release a refresh lease; it runs out by itself",
                extra={"connection_id": str(connection_id), "error_type": type(exc).__name__},
            )

    def _expire(self, uow: UnitOfWork, connection: Connection) -> bool:
        """After a transient failure, mark a connection whose token has run out ``expired`` (keeping the last
        error code), unless someone refreshed or took its lease in the meantime. Token fetch can still revive
        it; the scheduler no longer scans it."""
        moment = self._now()
        if not connection.may_expire(moment):
            return False
        try:
            return leases.expire(uow, connection.id, now=moment)
        except Exception as exc:
            logger.error(
                "could not mark a lapsed connection expired",
                extra={"connection_id": str(connection.id), "error_type": type(exc).__name__},
            )
            return False

    def _fault(self, tenant_id: UUID, connection_id: UUID, owner: UUID | None, exc: Exception) -> Outcome:
        """A fault of ours: log its type (never its text: driver messages can quote values), and record it apart
        from the provider's failures, with the base backoff so this run does not claim the connection again.

        An outage (KMS, the database) is only pushed back. Any other fault is the row's own (an envelope that
        does not open, a bug it triggers): after ``park_after_faults`` of them in a row with the same code the
        connection is parked, so no run claims it again in a loop. ``refresh_with_lease`` gives the lease back on
        a fault; ``leases.fault`` then takes a fresh one to record it.
        """
        code = exc.code if isinstance(exc, ConnvaultError) else "internal_error"
        ids = {"connection_id": str(connection_id), "tenant_id": str(tenant_id)}
        logger.error("refresh failed on our side", extra={**ids, "error_code": code, "error_type": type(exc).__name__})
        status = None
        moment = self._now()
        try:
            status = leases.fault(
                UnitOfWork(tenant_id, sealer=self._sealer),
                connection_id,
                owner,
                code=code,
                now=moment,
                retry_at=moment + timedelta(seconds=backoff_seconds(1, self._policy)),
                park_after=None if isinstance(exc, OUTAGES) else self._config.park_after_faults,
                seconds=self._config.lease_seconds,
            )
        except Exception as second:
            logger.error(
                "could not record a refresh fault; its lease runs out by itself",
                extra={"connection_id": str(connection_id), "error_type": type(second).__name__},
            )
        if status is ConnectionStatus.PARKED:
            logger.warning("connection parked after repeated faults on our side", extra={**ids, "reason": code})
            return Outcome.PARKED
        return Outcome.ERROR
