"""Refresh fan-out: the scheduled scan enqueues due connection ids on SQS; ``refresh_worker`` refreshes them.

For more due connections than one invocation gets through before its deadline. The single-invocation mode
(``scheduler.refresh_due``) stays the default; this one is on when ``CONNVAULT_REFRESH_QUEUE_URL`` is set.

Leases are not handed over the queue. The scan claims due rows (the same ``FOR UPDATE SKIP LOCKED`` claim,
only to walk the due set in disjoint batches), releases them at once, then sends the ids. The worker takes
each connection's lease itself (``leases.acquire``) under the message's tenant and refreshes only if the
connection is still due. So a message that arrives late, twice (SQS delivers at least once), or after
token fetch already refreshed the connection costs nothing, and no two callers ever hold one lease. The
claim's ``stale`` flag (a previous holder died mid-refresh) travels in the message, since releasing clears
the evidence. See ``docs/refresh.md``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.errors import InvalidInput
from connvault.observability import logger
from connvault.services import leases
from connvault.services.claims import Claimer, due_backlog
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import (
    Deadline,
    Job,
    Outcome,
    Runner,
    RunReport,
    SchedulerConfig,
    publish,
    refresh_oauth_client,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import Claim
    from connvault.oauth.client import OAuthClient

SQS_BATCH = 10
"""Most entries one ``SendMessageBatch`` takes."""

MESSAGE_VERSION = 1

DONE = frozenset(
    {
        Outcome.REFRESHED,
        Outcome.PERMANENT,
        Outcome.TRANSIENT,
        Outcome.SKIPPED,
        Outcome.INTEGRATION_REFUSED,
        Outcome.PARKED,
    }
)
"""Worker outcomes that consume the message. A transient provider failure is done too: its retry is the
backoff in ``next_refresh_at``, which the next scan honours; redelivering the message would not."""


@dataclass(frozen=True, slots=True)
class DueMessage:
    """The body of one queue message: ids only, never anything secret."""

    connection_id: UUID
    tenant_id: UUID
    stale: bool = False

    def to_body(self) -> str:
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "connection_id": str(self.connection_id),
                "tenant_id": str(self.tenant_id),
                "stale": self.stale,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_body(cls, body: str) -> DueMessage:
        """Exactly what ``to_body`` writes, types checked exactly (``{"v": true}`` is not version 1); anything else,
        a body nested past the parser's depth included, is ``InvalidInput`` for this message alone."""
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidInput("refresh message is malformed", field="body") from None
        if (
            type(document) is not dict
            or type(document.get("v")) is not int
            or document["v"] != MESSAGE_VERSION
            or type(document.get("connection_id")) is not str
            or type(document.get("tenant_id")) is not str
            or type(document.get("stale", False)) is not bool
        ):
            raise InvalidInput("refresh message is malformed", field="body")
        try:
            return cls(UUID(document["connection_id"]), UUID(document["tenant_id"]), document.get("stale", False))
        except ValueError:
            raise InvalidInput("refresh message is malformed", field="body") from None


@dataclass(frozen=True, slots=True)
class WorkerResult:
    report: RunReport
    failed_message_ids: tuple[str, ...]
    """Messages to hand back to SQS (``batchItemFailures``): unreadable, not started before the deadline, or
    failed on our side. After ``maxReceiveCount`` tries they land in the dead-letter queue."""


def enqueue_due(
    *,
    queue_url: str,
    remaining_ms: Callable[[], int],
    config: SchedulerConfig | None = None,
    sqs: Any = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> RunReport:
    """The fan-out scan: claim every due connection in batches, release the leases, send the ids.

    Claiming stops at the deadline or after half a lease: leases are held until the claiming ends (so the
    batches stay disjoint) and must not run out meanwhile. What is left, the next scan sends.
    """
    started = time.monotonic()
    config = config or SchedulerConfig.from_settings()
    deadline = Deadline(remaining_ms, config.deadline_margin_ms)
    claims = _claim_all(config, deadline, sealer=sealer, now=now)
    leases.release_claims(claims, sealer=sealer)
    sent = _send(sqs or boto3.client("sqs", region_name=get_settings().region), queue_url, claims, config)
    report = RunReport(
        claimed=len(claims),
        enqueued=sent,
        skipped=len(claims) - sent,
        due_backlog=due_backlog(config, sealer=sealer, now=now),
        duration_seconds=time.monotonic() - started,
        stopped_by_deadline=deadline.passed(),
    )
    publish(report)
    logger.info("refresh scan enqueued due connections", extra=report.as_dict())
    return report


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message of a batch the queue delivered: the queue's id for it (what a partial batch failure names)
    and its body (``DueMessage.to_body``)."""

    message_id: str
    body: str


def refresh_messages(
    messages: Sequence[QueuedMessage],
    *,
    remaining_ms: Callable[[], int],
    config: SchedulerConfig | None = None,
    policy: RefreshPolicy | None = None,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> WorkerResult:
    """The worker: refresh the connections of one SQS batch, in parallel under the provider caps."""
    started = time.monotonic()
    config = config or SchedulerConfig.from_settings()
    policy = policy or RefreshPolicy.from_settings()
    oauth = oauth or refresh_oauth_client(config.http_timeout_seconds)
    jobs: list[Job] = []
    unreadable: list[str] = []
    for queued in messages:
        try:
            message = DueMessage.from_body(queued.body)
        except InvalidInput:
            logger.warning("unreadable refresh message", extra={"message_id": queued.message_id})
            unreadable.append(queued.message_id)
            continue
        jobs.append(Job(message.connection_id, message.tenant_id, stale=message.stale, ref=queued.message_id))
    runner = Runner(
        config, policy, oauth, sealer=sealer, now=now, deadline=Deadline(remaining_ms, config.deadline_margin_ms)
    )
    pending = [jobs]
    runner.drive(lambda _room, _saturated: pending.pop() if pending else [])
    outcomes = runner.outcomes
    failed = unreadable + [job.ref for job in jobs if job.ref is not None and outcomes.get(job.ref) not in DONE]
    report = runner.report(due_backlog=None, started=started)
    report = replace(report, errors=report.errors + len(unreadable))
    publish(report)
    logger.info("refresh batch finished", extra={**report.as_dict(), "failed_messages": len(failed)})
    return WorkerResult(report, tuple(failed))


def _claim_all(config: SchedulerConfig, deadline: Deadline, *, sealer: Sealer | None, now: Clock) -> list[Claim]:
    claims: list[Claim] = []
    stop_claiming = time.monotonic() + config.lease_seconds / 2
    claimer = Claimer(config, now=now)
    while not deadline.passed() and time.monotonic() < stop_claiming:
        batch = claimer.claim(config.batch_size)
        if not batch:
            break
        claims.extend(batch)
    return claims


def _send(sqs: Any, queue_url: str, claims: Sequence[Claim], config: SchedulerConfig) -> int:
    """Send the ids ten to a request, requests in parallel; the number that SQS accepted."""
    chunks = [claims[i : i + SQS_BATCH] for i in range(0, len(claims), SQS_BATCH)]
    if not chunks:
        return 0

    def send(chunk: Sequence[Claim]) -> int:
        entries = [
            {"Id": str(index), "MessageBody": DueMessage(c.connection_id, c.tenant_id, c.stale).to_body()}
            for index, c in enumerate(chunk)
        ]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            logger.error(
                "could not enqueue due connections", extra={"count": len(chunk), "error_type": type(exc).__name__}
            )
            return 0
        failed = answer.get("Failed") or []
        if failed:
            logger.error("SQS refused some due connections", extra={"count": len(failed)})
        return len(answer.get("Successful") or [])

    with ThreadPoolExecutor(max_workers=min(config.concurrency, len(chunks)), thread_name_prefix="enqueue") as pool:
        return sum(pool.map(send, chunks))
