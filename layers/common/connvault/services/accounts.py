"""Provider-side accounts under a connection: add, read, list, search by id, change, soft-delete, and the scheduled
purge of soft-deleted ones. Ids arrive as ``Redacted`` and leave the same way: they are sealed like secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput, NotFound
from connvault.observability import MetricName, logger, metrics
from connvault.services.connections import MAX_PAGE_SIZE, check_metadata, require_provider_id
from connvault.validation import require_text

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.models import Account, Page
    from connvault.redacted import Redacted

MAX_DISPLAY_NAME_LENGTH = 200
PURGE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class AccountInput:
    """A new account, or the fields of one to change (``None``: leave as it is)."""

    external_id: Redacted[str] | None = None
    baas_id: Redacted[str] | None = None
    display_name: str | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AccountSearch:
    """Exactly one id to look for, matched exactly."""

    external_id: Redacted[str] | None = None
    baas_id: Redacted[str] | None = None
    cursor: str | None = None
    limit: int = 50


def create_account(uow: UnitOfWork, connection_id: UUID, data: AccountInput) -> Account:
    if data.external_id is None and data.baas_id is None:
        raise InvalidInput("an account needs external_id, baas_id or both", field="external_id")
    _check(data)
    with uow:
        _require_connection(uow, connection_id)
        account = uow.accounts.add(
            uow.tenant,
            connection_id,
            external_id=data.external_id,
            baas_id=data.baas_id,
            display_name=data.display_name or "",
            metadata=data.metadata or {},
        )
        uow.commit()
    return account


def list_accounts(uow: UnitOfWork, connection_id: UUID, *, cursor: str | None = None, limit: int = 50) -> Page[Account]:
    _check_limit(limit)
    with uow:
        _require_connection(uow, connection_id)
        return uow.accounts.list_by_connection(connection_id, cursor=cursor, limit=limit)


def get_account(uow: UnitOfWork, connection_id: UUID, account_id: UUID) -> Account:
    with uow:
        return uow.accounts.get(connection_id, account_id)


def update_account(uow: UnitOfWork, connection_id: UUID, account_id: UUID, changes: AccountInput) -> Account:
    _check(changes)
    with uow:
        account = uow.accounts.update(
            connection_id,
            account_id,
            external_id=changes.external_id,
            baas_id=changes.baas_id,
            display_name=changes.display_name,
            metadata=changes.metadata,
        )
        uow.commit()
    return account


def delete_account(uow: UnitOfWork, connection_id: UUID, account_id: UUID, *, now: Clock = utcnow) -> None:
    """Soft delete: hidden at once, purged by the scheduled function after the retention period."""
    with uow:
        if not uow.accounts.soft_delete(connection_id, account_id, now()):
            raise NotFound(f"account {account_id} not found")
        uow.commit()


def search_accounts(uow: UnitOfWork, query: AccountSearch) -> Page[Account]:
    """The tenant's live accounts with this exact id, across its connections: a blind-index lookup."""
    given = [name for name in ("external_id", "baas_id") if getattr(query, name) is not None]
    if len(given) != 1:
        raise InvalidInput("search by exactly one of external_id and baas_id", field="external_id")
    _check_limit(query.limit)
    value = require_provider_id(getattr(query, given[0]).reveal(), given[0])
    with uow:
        return uow.accounts.search(**{given[0]: value}, cursor=query.cursor, limit=query.limit)


def purge_deleted_accounts(*, now: Clock = utcnow, sealer: Sealer | None = None) -> int:
    """Delete the accounts soft-deleted longer ago than ``CONNVAULT_ACCOUNT_RETENTION_DAYS``, of every tenant, in
    batches (each its own transaction, so a purge cut short by the function's deadline keeps what it did)."""
    before = now() - timedelta(days=get_settings().account_retention_days)
    purged = 0
    while True:
        with UnitOfWork(None, sealer=sealer) as uow:
            batch = uow.accounts.purge_deleted(before, PURGE_BATCH)
            uow.commit()
        purged += batch
        if batch < PURGE_BATCH:
            break
    if purged:
        metrics.add_metric(name=MetricName.ACCOUNTS_PURGED, unit="Count", value=purged)
    logger.info("deleted accounts purged", extra={"purged": purged})
    return purged


def _require_connection(uow: UnitOfWork, connection_id: UUID) -> None:
    if not uow.accounts.connection_exists(connection_id):
        raise NotFound(f"connection {connection_id} not found")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}", field="limit")


def _check(data: AccountInput) -> None:
    for name in ("external_id", "baas_id"):
        value = getattr(data, name)
        if value is not None:
            require_provider_id(value.reveal(), name)
    if data.display_name is not None:
        require_text(data.display_name, "display_name", max_length=MAX_DISPLAY_NAME_LENGTH, min_length=0)
    if data.metadata is not None:
        check_metadata(data.metadata)
