"""Bulk import of OAuth grants made elsewhere, for migrations: up to ``MAX_ITEMS`` per call, each item answered
with its own status, idempotent per (provider, end user, alias).

An account that has a connection already is answered ``exists`` with its id and left alone, whatever the item
holds: the stored refresh token may have been rotated since, and overwriting it with the one being migrated
would lose the grant. Sending the same items again (a resumed migration) therefore changes nothing and costs
no provider call.

Per call: every item is checked (``services/grants.prepare``); the providers and integrations are read once;
existing accounts are found in one query; the rest are verified at their providers concurrently (a refresh
each, as a single import does, unless ``verify`` is off), with no transaction open; and what was verified is
inserted in one transaction (``ConnectionRepository.add_many``), retried on a database error because a
rotated refresh token may exist nowhere else. Items not attempted before the deadline are ``deferred``: send
them again.

A provider call per item is work the tenant's one request fans out into, and the provider is often a host the
tenant chose: each item sent to its provider is one admission against the tenant's rate limit
(``RateLimiter.admit_up_to``), on top of the request's own. Items past the tenant's room are ``deferred`` with
code ``rate_limited`` and ``retry_after``, not sent; items that need no provider call (``exists``, ``invalid``,
``quota_exceeded``, or ``verify`` off) cost nothing more.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from connvault import wiring
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.db.tenants import Resource
from connvault.errors import CredentialsRefused, InvalidInput, ProviderUnavailable, QuotaExceeded, RateLimited
from connvault.observability import MetricName, logger, metrics
from connvault.services.grants import (
    ImportedGrantInput,
    Prepared,
    abandon,
    configure,
    new_row,
    prepare,
    resolve,
    store,
    try_at_provider,
)
from connvault.services.rate_limits import get_rate_limiter

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from connvault.db.uow import UnitOfWork
    from connvault.oauth.client import OAuthClient
    from connvault.services.leases import ProviderApp
    from connvault.services.rate_limits import RateLimiter
    from connvault.services.renewal import Renewal

MAX_ITEMS = 1000
DEFAULT_CONCURRENCY = 8
"""Provider calls in flight per import call; well under the HTTP pool's connections per host."""


class ItemStatus(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    """The account has a connection already (``connection_id``); nothing was changed."""
    INVALID = "invalid"
    """The item is malformed; ``field`` names what to fix."""
    REFUSED = "refused"
    """The provider refused the refresh token (``reason``); nothing was stored."""
    UNAVAILABLE = "unavailable"
    """The provider failed in a retryable way; send the item again later."""
    DEFERRED = "deferred"
    """Not attempted: the call's deadline came, or the tenant's rate had no room for it (``rate_limited``, with
    ``retry_after``); send the item again."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """The tenant would hold more connections than its quota; nothing was stored, no provider called."""


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """An item that could not even be read as a grant (the API layer's verdict), with the field at fault; ``code``
    says why when a rule other than the item's shape refused it (a grant file's line too long to read)."""

    field: str | None
    message: str
    code: str = InvalidInput.code


@dataclass(frozen=True, slots=True)
class ItemResult:
    index: int
    status: ItemStatus
    connection_id: UUID | None = None
    code: str | None = None
    field: str | None = None
    message: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class _Pending:
    index: int
    prepared: Prepared
    app: ProviderApp


def import_grants(
    uow: UnitOfWork,
    items: Sequence[ImportedGrantInput | InvalidItem],
    *,
    verify: bool = True,
    oauth: OAuthClient | None = None,
    stop: Callable[[], bool] = lambda: False,
    concurrency: int = DEFAULT_CONCURRENCY,
    now: Clock = utcnow,
    limiter: RateLimiter | None = None,
) -> list[ItemResult]:
    """Import ``items``; one result per item, in order. ``stop()`` turning true defers the items not yet
    sent to their provider, as does the tenant's rate (``limiter``, the process's by default) running out.
    Raises InvalidInput only for a call of more than ``MAX_ITEMS`` items."""
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"at most {MAX_ITEMS} items per call", field="items")
    results: dict[int, ItemResult] = {}
    prepared: dict[int, Prepared] = {}
    for index, item in enumerate(items):
        if isinstance(item, InvalidItem):
            results[index] = ItemResult(
                index, ItemStatus.INVALID, code=item.code, field=item.field, message=item.message
            )
            continue
        try:
            prepared[index] = prepare(replace(item, verify=verify), now())
        except InvalidInput as exc:
            results[index] = _invalid(index, exc)
    pending = _against_existing(uow, prepared, results, now)
    pending = _admitted(uow, pending, limiter or get_rate_limiter(), results)
    client = oauth or wiring.get_oauth_client()
    verified = _verify(pending, client, stop, concurrency, now, results)
    _store(uow, verified, client, now, results)
    answered = [results[index] for index in range(len(items))]
    _count(answered)
    return answered


def _against_existing(
    uow: UnitOfWork, prepared: dict[int, Prepared], results: dict[int, ItemResult], now: Clock
) -> list[_Pending]:
    """Resolve each item's provider (once per slug), answer the accounts that exist or repeat, and the new ones
    past the tenant's quota of connections (counted once per call, as ``services/quotas.py`` counts); keep the
    rest."""
    pending: list[_Pending] = []
    with uow:
        apps: dict[str, ProviderApp | InvalidInput] = {}
        for index, item in prepared.items():
            slug = item.target.provider
            if slug not in apps:
                try:
                    apps[slug] = resolve(uow, item)
                except InvalidInput as exc:
                    apps[slug] = exc
            found = apps[slug]
            if isinstance(found, InvalidInput):
                results[index] = _invalid(index, found)
                continue
            try:
                pending.append(_Pending(index, *configure(item, found)))
            except InvalidInput as exc:
                results[index] = _invalid(index, exc)
        keys = [_key(item) for item in pending]
        existing = uow.connections.find_ids(keys)
        room = get_settings().quota_connections - uow.tenants.usage(Resource.CONNECTIONS, now())
    kept: list[_Pending] = []
    seen: set[tuple[UUID, str, str]] = set()
    for candidate in pending:
        key = _key(candidate)
        if key in existing:
            results[candidate.index] = ItemResult(candidate.index, ItemStatus.EXISTS, connection_id=existing[key])
        elif key in seen:
            message = "another item of this call has the same provider, end_user_id and alias"
            results[candidate.index] = ItemResult(
                candidate.index, ItemStatus.INVALID, code=InvalidInput.code, field="alias", message=message
            )
        elif len(kept) >= room:
            message = "the tenant holds its quota of connections"
            results[candidate.index] = ItemResult(
                candidate.index, ItemStatus.QUOTA_EXCEEDED, code=QuotaExceeded.code, message=message
            )
        else:
            seen.add(key)
            kept.append(candidate)
    return kept


def _admitted(
    uow: UnitOfWork, pending: list[_Pending], limiter: RateLimiter, results: dict[int, ItemResult]
) -> list[_Pending]:
    """Admit each item bound for its provider against the tenant's rate; defer those it has no room for."""
    calls = [item for item in pending if item.prepared.verify]
    if not calls or uow.tenant_id is None:
        return pending
    admitted = limiter.admit_up_to(uow.tenant_id, len(calls))
    if admitted.requests == len(calls):
        return pending
    message = "the tenant is over its request rate; send the item again after retry_after seconds"
    for item in calls[admitted.requests :]:
        results[item.index] = ItemResult(
            item.index, ItemStatus.DEFERRED, code=RateLimited.code, message=message, retry_after=admitted.retry_after
        )
    return [item for item in pending if item.index not in results]


def _verify(
    pending: list[_Pending],
    oauth: OAuthClient,
    stop: Callable[[], bool],
    concurrency: int,
    now: Clock,
    results: dict[int, ItemResult],
) -> list[tuple[_Pending, Renewal | None]]:
    """Try each grant at its provider, ``concurrency`` at a time; what passed, with the provider's answer."""

    def attempt(item: _Pending) -> tuple[_Pending, Renewal | None] | None:
        if stop():
            results[item.index] = ItemResult(item.index, ItemStatus.DEFERRED, message="not attempted in time")
            return None
        try:
            return item, try_at_provider(item.prepared, item.app, oauth, now())
        except CredentialsRefused as exc:
            results[item.index] = ItemResult(
                item.index, ItemStatus.REFUSED, code=exc.code, field=exc.field, message=exc.message
            )
        except ProviderUnavailable as exc:
            results[item.index] = ItemResult(
                item.index,
                ItemStatus.UNAVAILABLE,
                code=exc.code,
                message=exc.message,
                retry_after=exc.retry_after,
            )
        return None

    needs_provider = [item for item in pending if item.prepared.verify]
    passed: list[tuple[_Pending, Renewal | None]] = [(item, None) for item in pending if not item.prepared.verify]
    if needs_provider:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(needs_provider)))) as pool:
            passed.extend(answer for answer in pool.map(attempt, needs_provider) if answer is not None)
    return passed


def _store(
    uow: UnitOfWork,
    verified: list[tuple[_Pending, Renewal | None]],
    oauth: OAuthClient,
    now: Clock,
    results: dict[int, ItemResult],
) -> None:
    if not verified:
        return
    moment = now()
    rows = [new_row(item.prepared, item.app, renewal, moment) for item, renewal in verified]
    store(uow, rows)
    with uow:
        stored = uow.connections.find_ids([_key(item) for item, _ in verified])
    for (item, renewal), row in zip(verified, rows, strict=True):
        owner = stored.get(_key(item))
        if owner == row.id:
            results[item.index] = ItemResult(item.index, ItemStatus.CREATED, connection_id=row.id)
            continue
        # Another request stored the account between our check and our insert.
        results[item.index] = ItemResult(item.index, ItemStatus.EXISTS, connection_id=owner)
        if renewal is not None:
            abandon(renewal, item.prepared, item.app, oauth)


def _key(item: _Pending) -> tuple[UUID, str, str]:
    return item.app.provider.id, item.prepared.target.end_user_id, item.prepared.target.alias


def _invalid(index: int, exc: InvalidInput) -> ItemResult:
    return ItemResult(index, ItemStatus.INVALID, code=exc.code, field=exc.field, message=exc.message)


def _count(answered: list[ItemResult]) -> None:
    created = sum(1 for result in answered if result.status is ItemStatus.CREATED)
    metrics.add_metric(name=MetricName.CONNECTIONS_IMPORTED, unit="Count", value=created)
    logger.info(
        "grants imported",
        extra={f"items_{status.value}": sum(1 for r in answered if r.status is status) for status in ItemStatus},
    )


def deadline_from(remaining_ms: Callable[[], int], margin_ms: int) -> Callable[[], bool]:
    """``stop`` for a Lambda: true once less than ``margin_ms`` is left (room for the calls in flight)."""
    return lambda: remaining_ms() <= margin_ms
