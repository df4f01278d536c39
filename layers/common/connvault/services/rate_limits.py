"""Per-tenant request rate limits: one tenant cannot use up the capacity (function concurrency, database
connections, provider calls) that a deployment shares with the others. Quotas bound what a tenant holds
(``services/quotas.py``); this bounds how fast it asks.

Two layers, neither of which adds a database round trip to an ordinary request (see docs/design.md):

* a token bucket per tenant in each process, ``rate_limit_per_second`` refilling it up to ``rate_limit_burst``:
  what one warm process admits, decided in memory (a single process can serve a few thousand token fetches a
  second, so this is the layer that stops one hot process);
* a shared count per tenant and window (``tenant_request_counts``): every ``rate_limit_share_every`` admitted
  requests of a tenant, a process adds them to the tenant's count in one prepared statement that answers the
  window's total. Past the window's allowance (rate times window, plus burst) that process refuses the tenant until the
  window ends; the others learn it at their own next report. The count is coarse by design: a tenant may overshoot
  by fewer than ``rate_limit_share_every`` requests per process per window. The token route carries that addition in
  its read's own statement (``admit(carry=True)``, then ``settle``): no round trip of its own on the hottest path;
  the request that carries it is served, and a refusal starts with the tenant's next request.

A request that fans out into work of its own (a verified bulk import: one provider call per item) is counted for
that work too (``admit_up_to``): as many as the tenant has room for are admitted, the rest are answered as not
done, so one request cannot multiply a tenant's rate.

A refusal is ``RateLimited`` with the seconds until a request would be admitted (429 and ``Retry-After``). When
the shared count cannot be written (the database is down) the process goes on with its own bucket: the request
itself will meet the database soon enough, and rate limiting must not turn a blip into refusals.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from connvault.config import get_settings
from connvault.db.fast_reads import get_fast_reads
from connvault.errors import DatabaseUnavailable, RateLimited
from connvault.observability import MetricName, logger, metrics
from connvault.once import once

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from connvault.db.fast_reads import RequestWindow

WINDOW_SECONDS = 10
"""The shared count's window: long enough that a process reporting every N requests reports within it."""
MAX_TENANTS = 10_000
"""Tenants whose buckets a process remembers; the least recently seen is forgotten (it starts full again)."""


@dataclass(slots=True)
class PendingCount:
    """A tenant's admitted requests due to be added to its shared count, carried by a statement the request makes
    anyway (the token read) instead of a round trip of their own. That statement sets ``window`` to what the count
    answered; it stays None when the statement did not run or failed."""

    tenant_id: UUID
    requests: int
    window_seconds: int
    window: RequestWindow | None = None


class Admitted(NamedTuple):
    """What ``admit_up_to`` admitted of what was asked, and the seconds until one more would be (as Retry-After
    says them: whole seconds, at least one)."""

    requests: int
    retry_after: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    refilled: float
    unshared: int = 0
    """Admitted here and not yet added to the shared count."""
    blocked_until: float = 0.0
    """Set when the shared count was over the allowance: refuse until then (monotonic clock)."""


class RateLimiter:
    def __init__(
        self,
        *,
        per_second: float,
        burst: int,
        share_every: int,
        share: Callable[[UUID, int, int], RequestWindow],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_second = per_second
        self._burst = burst
        self._share_every = share_every
        self._share = share
        self._clock = clock
        self._allowance = math.ceil(per_second * WINDOW_SECONDS) + burst
        self._buckets: OrderedDict[UUID, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, tenant: UUID, *, carry: bool = False) -> PendingCount | None:
        """Count one request of ``tenant``; ``RateLimited`` when it is over its rate. When the tenant's admitted
        requests are due to be added to the shared count they are added now, or, with ``carry``, handed back for a
        statement the request makes anyway to add: the caller passes them to that statement and then to
        ``settle``, whatever happened (None: nothing due)."""
        if self._per_second <= 0:
            return None
        granted, wait, count = self._take(tenant, 1)
        if not granted:
            raise _refused(wait)
        if count is None or carry:
            return count
        over = self.settle(count)
        if over is not None:
            raise _refused(over)
        return None

    def admit_up_to(self, tenant: UUID, wanted: int) -> Admitted:
        """Count up to ``wanted`` requests of ``tenant`` at once, as many as its rate has room for now: the work
        one request fans out into (a verified import's provider calls), which must cost what it does. The shared
        count is added to before the answer, so that what other processes admitted in the window is known before
        anything is sent: past the allowance only what fits under it is admitted."""
        if self._per_second <= 0 or wanted <= 0:
            return Admitted(max(0, wanted), 1)
        granted, wait, count = self._take(tenant, wanted)
        if count is not None:
            over = self.settle(count)
            if over is not None and count.window is not None:
                granted = max(0, granted - (count.window.requests - self._allowance))
                wait = over
        if granted < wanted:
            _count_refused(wanted - granted)
        return Admitted(granted, _retry_after(wait))

    def _take(self, tenant: UUID, wanted: int) -> tuple[int, float, PendingCount | None]:
        """Up to ``wanted`` of the tenant's bucket: how many it gave, the seconds until it gives one more, and the
        shared count that fell due (taken from the bucket: the caller adds it)."""
        now = self._clock()
        with self._lock:
            bucket = self._bucket(tenant, now)
            if now < bucket.blocked_until:
                return 0, bucket.blocked_until - now, None
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.refilled) * self._per_second)
            bucket.refilled = now
            granted = min(wanted, int(bucket.tokens))
            bucket.tokens -= granted
            wait = max(0.0, (1 - bucket.tokens) / self._per_second)
            bucket.unshared += granted
            if bucket.unshared < self._share_every:
                return granted, wait, None
            count = PendingCount(tenant, bucket.unshared, WINDOW_SECONDS)
            bucket.unshared = 0
        return granted, wait, count

    def settle(self, count: PendingCount) -> float | None:
        """Take what adding ``count`` answered: past the allowance, the tenant is refused until its window ends (the
        seconds, returned). A count whose statement did not answer (it failed, or never ran) is added now, outside
        the lock so that other tenants' requests in this process do not wait for the database; when that fails too
        (the database is down) it is kept for the next report, and the process goes on with its own bucket."""
        if count.window is None:
            try:
                count.window = self._share(count.tenant_id, count.requests, count.window_seconds)
            except DatabaseUnavailable:
                logger.warning(
                    "request count not shared: the database is unavailable", extra={"tenant_id": str(count.tenant_id)}
                )
                with self._lock:
                    self._bucket(count.tenant_id, self._clock()).unshared += count.requests
                return None
        if count.window.requests <= self._allowance:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._bucket(count.tenant_id, now)
            bucket.blocked_until = max(bucket.blocked_until, now + count.window.seconds_left)
        return count.window.seconds_left

    def _bucket(self, tenant: UUID, now: float) -> _Bucket:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(float(self._burst), now)
            while len(self._buckets) > MAX_TENANTS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
        return bucket


def _refused(wait_seconds: float) -> RateLimited:
    _count_refused(1)
    return RateLimited(
        "the tenant is over its request rate; retry after Retry-After seconds",
        retry_after=_retry_after(wait_seconds),
    )


def _retry_after(wait_seconds: float) -> int:
    return max(1, math.ceil(wait_seconds))


def _count_refused(requests: int) -> None:
    metrics.add_metric(name=MetricName.RATE_LIMITED, unit="Count", value=requests)


@once
def get_rate_limiter() -> RateLimiter:
    """The process's limiter, from the settings; its shared count goes through the process's prepared statements."""
    settings = get_settings()
    return RateLimiter(
        per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        share_every=settings.rate_limit_share_every,
        share=lambda tenant, added, window: get_fast_reads().count_requests(tenant, added, window),
    )


def reset_rate_limiter() -> None:
    get_rate_limiter.cache_clear()
