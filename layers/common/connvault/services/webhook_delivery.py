"""Sending the outbox: claim due deliveries across tenants, sign them (Standard Webhooks), POST them, record.

Guarantees, and what gives them:

* **No gap.** An event row exists exactly when its state change committed (the trigger of migration 0070). A
  delivery stays ``pending`` until a receiver answered 2xx, or its retry window (at least
  ``CONNVAULT_WEBHOOK_RETRY_WINDOW_SECONDS``, 24 h) is over; then it is ``failed``, listed, and can be
  redelivered. One never sent that long (behind a disabled endpoint, an open circuit, an earlier delivery of its
  connection) is ``expired`` after ``CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS`` (3 days), listed with the reason, and
  can be redelivered too: a parked backlog is bounded, not kept for good.
* **Duplicates, by design.** A sender that dies after the POST and before recording it leaves its lease; when
  the lease runs out the delivery is sent again with the same ``webhook-id``, which receivers deduplicate on.
* **In order per connection.** The claim skips a delivery while an earlier one of its subject is pending for the
  same endpoint, so a receiver never sees ``recovered`` before the ``refresh_failed`` it follows.
* **Isolation.** Every attempt has a short total deadline (``CONNVAULT_WEBHOOK_DEADLINE_SECONDS``); at most
  ``CONNVAULT_WEBHOOK_PER_ENDPOINT_CONCURRENCY`` deliveries per endpoint are in flight across all senders; after
  ``CONNVAULT_WEBHOOK_CIRCUIT_THRESHOLD`` failures in a row the endpoint's circuit opens (nothing is claimed for
  it) for a cooldown that doubles per failed probe. A slow or dead receiver costs its own throughput only, and
  nothing here runs on a request or refresh path.
* **Fairness per slot.** The sender claims only as many deliveries as it has free threads, and each goes to the
  tenant with the fewest in flight (migration 0088): a tenant whose receivers are all slow holds the slots it
  has, and another tenant's delivery takes the next one that frees, about one attempt later, not after the
  backlog.
* **Egress.** Calls go through the same HTTP transport as provider calls, and so through its egress guard.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from connvault import wiring
from connvault.clock import Clock, utcnow
from connvault.config import DEFAULTS, Settings, get_settings
from connvault.db.uow import UnitOfWork
from connvault.db.webhooks import AttemptOutcome
from connvault.errors import NotFound, ProviderUnavailable
from connvault.observability import MetricName, logger, metrics
from connvault.services.connect_confirmation import revoke_unconfirmed
from connvault.webhooks.signing import signature_headers

if TYPE_CHECKING:
    from collections.abc import Callable

    from connvault.crypto.sealer import Sealer
    from connvault.db.webhooks import DeliveryClaim
    from connvault.oauth.http import HttpTransport
    from connvault.webhooks.model import Delivery, WebhookEndpoint

_POLL_SECONDS = 0.2
_IDLE_POLL_SECONDS = 0.5
_USER_AGENT = "connvault-webhooks/1"
_SECONDS = re.compile(r"[0-9]+")
"""Retry-After's delay form: ASCII digits (``str.isdigit`` also takes ``²``, which ``float`` refuses)."""


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    deadline_seconds: float = DEFAULTS.webhook_deadline_seconds
    retry_window: timedelta = timedelta(seconds=DEFAULTS.webhook_retry_window_seconds)
    backoff_base_seconds: float = DEFAULTS.webhook_backoff_base_seconds
    backoff_cap_seconds: float = DEFAULTS.webhook_backoff_cap_seconds
    per_endpoint: int = DEFAULTS.webhook_per_endpoint_concurrency
    concurrency: int = DEFAULTS.webhook_concurrency
    claim_endpoints: int = DEFAULTS.webhook_claim_endpoints
    circuit_threshold: int = DEFAULTS.webhook_circuit_threshold
    circuit_cooldown: timedelta = timedelta(seconds=DEFAULTS.webhook_circuit_cooldown_seconds)
    circuit_cooldown_cap: timedelta = timedelta(seconds=DEFAULTS.webhook_circuit_cooldown_cap_seconds)
    drain_seconds: float = DEFAULTS.webhook_drain_seconds

    @property
    def lease(self) -> timedelta:
        """Well past one attempt's whole deadline and the record of its outcome. Since migration 0088 a claimed
        delivery starts at once (nothing leased waits behind a full pool, which this was first sized for); the
        margin stays for a process paused mid-attempt, since a lease that ran out sends the delivery twice."""
        return timedelta(seconds=4 * self.deadline_seconds + 10)

    @property
    def stop_margin_ms(self) -> float:
        """Stop claiming when less than one attempt's deadline (plus recording it) is left."""
        return self.deadline_seconds * 1000 + 2000

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DeliveryConfig:
        s = settings or get_settings()
        return cls(
            deadline_seconds=s.webhook_deadline_seconds,
            retry_window=timedelta(seconds=s.webhook_retry_window_seconds),
            backoff_base_seconds=s.webhook_backoff_base_seconds,
            backoff_cap_seconds=s.webhook_backoff_cap_seconds,
            per_endpoint=s.webhook_per_endpoint_concurrency,
            concurrency=s.webhook_concurrency,
            claim_endpoints=s.webhook_claim_endpoints,
            circuit_threshold=s.webhook_circuit_threshold,
            circuit_cooldown=timedelta(seconds=s.webhook_circuit_cooldown_seconds),
            circuit_cooldown_cap=timedelta(seconds=s.webhook_circuit_cooldown_cap_seconds),
            drain_seconds=s.webhook_drain_seconds,
        )


@dataclass(slots=True)
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}


def backoff_seconds(attempt: int, base: float, cap: float, *, floor: float = 0.0) -> float:
    """Exponential backoff with jitter on the upper half, capped; a receiver's Retry-After is a floor."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return max(ceiling / 2 + random.uniform(0, ceiling / 2), floor)  # noqa: S311 - jitter, not a secret


def deliver_due(
    remaining_ms: Callable[[], float],
    *,
    config: DeliveryConfig | None = None,
    transport: HttpTransport | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> DeliveryReport:
    """Send what is due until nothing is (then keep polling for ``drain_seconds``) or the deadline nears."""
    sender = _Sender(
        config or DeliveryConfig.from_settings(),
        transport or wiring.get_webhook_transport(),
        sealer=sealer,
        now=now,
    )
    report = sender.run(remaining_ms)
    publish(report)
    return report


def run_scheduled(remaining_ms: Callable[[], float]) -> dict[str, float]:
    """The scheduled events run: revoke the grants of connect sessions that expired unconfirmed, expire deliveries
    pending too long, drop history past its retention, then send."""
    swept = revoke_unconfirmed()
    expired = expire_backlog()
    purged = purge_history()
    report = deliver_due(remaining_ms)
    return {
        **report.as_dict(),
        "unconfirmed_revoked": swept.revoked,
        "unconfirmed_dropped": swept.dropped,
        "backlog_expired": expired,
        "history_purged": purged,
    }


EXPIRE_BATCH = 1000
EXPIRE_BATCHES = 10


def expire_backlog(*, now: Clock = utcnow, batch: int = EXPIRE_BATCH, batches: int = EXPIRE_BATCHES) -> int:
    """End as ``expired`` the deliveries still pending ``CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS`` after their event,
    oldest first, in batches of their own transactions (short row locks; a run cut short keeps what it did), at most
    ``batches`` a run so that sending keeps its time: 10,000 a minute, more than any tenant's events arrive."""
    moment = now()
    since = moment - timedelta(seconds=get_settings().webhook_max_pending_seconds)
    expired = 0
    for _ in range(batches):
        with UnitOfWork(None) as uow:
            done = uow.webhooks.expire_pending(moment, since, batch)
            uow.commit()
        expired += done
        if done < batch:
            break
    if expired:
        metrics.add_metric(name=MetricName.WEBHOOK_EXPIRED, unit="Count", value=expired)
        logger.info("webhook deliveries expired", extra={"expired": expired})
    return expired


def purge_history(*, now: Clock = utcnow, batch: int = 5000) -> int:
    """Finished deliveries and their events older than ``CONNVAULT_WEBHOOK_RETENTION_DAYS``, a batch per run."""
    with UnitOfWork(None) as uow:
        purged = uow.webhooks.purge_history(now() - timedelta(days=get_settings().webhook_retention_days), batch)
        uow.commit()
    return purged


def publish(report: DeliveryReport) -> None:
    for name, value in (
        (MetricName.WEBHOOK_DELIVERED, report.delivered),
        (MetricName.WEBHOOK_RETRYING, report.retrying),
        (MetricName.WEBHOOK_FAILED, report.failed),
        (MetricName.WEBHOOK_ERROR, report.errors),
    ):
        metrics.add_metric(name=name, unit="Count", value=value)


@dataclass
class _Sender:
    config: DeliveryConfig
    transport: HttpTransport
    sealer: Sealer | None
    now: Clock
    report: DeliveryReport = field(default_factory=DeliveryReport)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, outcome: str) -> None:
        with self._lock:
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)

    def run(self, remaining_ms: Callable[[], float]) -> DeliveryReport:
        started = time.monotonic()
        config = self.config
        idle_until: float | None = None
        in_flight: set[Future[None]] = set()
        with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="webhook") as pool:
            while remaining_ms() > config.stop_margin_ms:
                room = config.concurrency - len(in_flight)
                claims = self._claim(room) if room > 0 else []
                for claim in claims:
                    in_flight.add(pool.submit(self._attempt, claim, remaining_ms))
                if not claims and not in_flight:
                    idle_until = idle_until or time.monotonic() + config.drain_seconds
                    if time.monotonic() >= idle_until:
                        break
                    time.sleep(_IDLE_POLL_SECONDS)
                    continue
                idle_until = None
                if in_flight and (not claims or len(in_flight) >= config.concurrency):
                    _done, in_flight = wait(in_flight, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                    in_flight = set(in_flight)
            wait(in_flight)
        self.report.duration_seconds = time.monotonic() - started
        return self.report

    def _claim(self, room: int) -> list[DeliveryClaim]:
        """Lease at most ``room`` deliveries, the threads free now: one leased beyond them would wait in the pool
        holding its tenant's turn, and the sender would not claim again until it had gone."""
        config = self.config
        moment = self.now()
        with UnitOfWork(None, sealer=self.sealer) as uow:
            claims = uow.webhooks.claim(
                moment,
                endpoints=max(1, min(config.claim_endpoints, room)),
                per_endpoint=config.per_endpoint,
                circuit_threshold=config.circuit_threshold,
                until=moment + config.lease,
            )
            uow.commit()
        with self._lock:
            self.report.claimed += len(claims)
        return claims

    def _attempt(self, claim: DeliveryClaim, remaining_ms: Callable[[], float]) -> None:
        ids = {
            "delivery_id": str(claim.delivery_id),
            "endpoint_id": str(claim.endpoint_id),
            "tenant_id": str(claim.tenant_id),
        }
        try:
            if remaining_ms() <= self.config.deadline_seconds * 1000:
                self._release(claim)
                self._count("skipped")
                return
            self._send(claim, ids)
        except Exception as exc:
            # Ours (database, KMS): the lease runs out and the delivery is sent again; never the exception text.
            self._count("errors")
            logger.error("webhook delivery failed on our side", extra={**ids, "error_type": type(exc).__name__})

    def _send(self, claim: DeliveryClaim, ids: dict[str, str]) -> None:
        with UnitOfWork(claim.tenant_id, sealer=self.sealer) as uow:
            try:
                endpoint = uow.webhooks.get(claim.endpoint_id)
                delivery = uow.webhooks.get_delivery(claim.delivery_id)
            except NotFound:  # deleted meanwhile, with its deliveries
                self._count("skipped")
                return
            if not endpoint.enabled:
                uow.webhooks.release(claim)
                uow.commit()
                self._count("skipped")
                return
            secrets = uow.webhooks.signing_secrets(endpoint.id, self.now())
        body = message_body(delivery)
        keys = [secrets.current] + ([secrets.previous] if secrets.previous is not None else [])
        headers = {
            **signature_headers(delivery.message_id, int(time.time()), body, keys),
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
        }
        status: int | None = None
        retry_after: float = 0.0
        try:
            answer = self.transport.request("POST", endpoint.url, body=body, headers=headers, body_matters=False)
            status = answer.status
            error = None if 200 <= status < 300 else "http_status"
            retry_after = _retry_after(answer.retry_after, self.config.backoff_cap_seconds)
        except ProviderUnavailable as exc:
            error = exc.reason or "unreachable"
        self._record(claim, endpoint, delivery, status, error, retry_after, ids)

    def _record(
        self,
        claim: DeliveryClaim,
        endpoint: WebhookEndpoint,
        delivery: Delivery,
        status: int | None,
        error: str | None,
        retry_after: float,
        ids: dict[str, str],
    ) -> None:
        config = self.config
        moment = self.now()
        with UnitOfWork(claim.tenant_id, sealer=self.sealer) as uow:
            webhooks = uow.webhooks
            if error is None and status is not None:
                webhooks.record_delivered(claim, moment, status)
                if endpoint.needs_success_stamp(moment):
                    webhooks.record_success(claim.endpoint_id, moment)
                uow.commit()
                self._count("delivered")
                return
            attempt = delivery.attempts + 1
            give_up = moment - delivery.retry_from >= config.retry_window
            retry_at = (
                None
                if give_up
                else moment
                + timedelta(
                    seconds=backoff_seconds(
                        attempt, config.backoff_base_seconds, config.backoff_cap_seconds, floor=retry_after
                    )
                )
            )
            webhooks.record_failed_attempt(claim, moment, AttemptOutcome(status, error, retry_at))
            failures = webhooks.record_failure(
                claim.endpoint_id,
                moment,
                threshold=config.circuit_threshold,
                cooldown=config.circuit_cooldown,
                cooldown_cap=config.circuit_cooldown_cap,
            )
            if failures >= config.circuit_threshold:
                webhooks.fail_overdue(claim.endpoint_id, moment - config.retry_window)
            uow.commit()
        if give_up:
            self._count("failed")
        else:
            self._count("retrying")
        logger.info(
            "webhook attempt failed",
            extra={**ids, "status_code": status, "error_code": error, "attempt": attempt, "gave_up": give_up},
        )

    def _release(self, claim: DeliveryClaim) -> None:
        with UnitOfWork(claim.tenant_id, sealer=self.sealer) as uow:
            uow.webhooks.release(claim)
            uow.commit()


def message_body(delivery: Delivery) -> bytes:
    """The payload, as Standard Webhooks suggests: ``type``, ``timestamp`` (of the event) and ``data``."""
    document = {"type": delivery.event_type, "timestamp": _iso(delivery.occurred_at), "data": dict(delivery.data)}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _retry_after(value: str | None, cap: float) -> float:
    """A receiver's Retry-After in seconds (the date form is ignored), capped: a hostile receiver cannot park
    its deliveries past the retry window with one header."""
    if not value or not _SECONDS.fullmatch(value.strip()):
        return 0.0
    return min(float(value.strip()), cap)
