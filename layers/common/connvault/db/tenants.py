"""Tenants and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import Select, delete, exists, func, or_, select, update

from connvault.db.rowcount import rows_changed
from connvault.db.rows import (
    ConnectConfirmationRow,
    ConnectionRow,
    DeviceSessionRow,
    IntegrationRow,
    OAuthSessionRow,
    ProviderRow,
    TenantApiKeyRow,
    TenantRow,
)
from connvault.db.target import get_target
from connvault.errors import NotFound

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from connvault.db.target import DatabaseTarget


@dataclass(frozen=True, slots=True)
class Tenant:
    id: UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored API key: never the secret, only its digest."""

    id: UUID
    tenant_id: UUID
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


class TenantRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, tenant_id: UUID, name: str) -> Tenant:
        """Insert a tenant; the unit of work must be bound to ``tenant_id`` (RLS checks the new row)."""
        row = TenantRow(id=tenant_id, name=name)
        self._session.add(row)
        self._session.flush()
        self._session.refresh(row)
        return Tenant(row.id, row.name, row.created_at)

    def get(self, tenant_id: UUID) -> Tenant:
        row = self._session.get(TenantRow, tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return Tenant(row.id, row.name, row.created_at)

    def lock(self, tenant_id: UUID) -> bool:
        """Lock the tenant's row until the transaction ends; False when there is no such tenant. No row naming the
        tenant can be inserted meanwhile: its foreign-key check share-locks this row, which ``FOR UPDATE`` refuses
        until the transaction ends (after a delete, the insert then fails)."""
        query = select(TenantRow.id).where(TenantRow.id == tenant_id).with_for_update()
        return self._session.scalar(query) is not None

    def holds_connections_or_parked_grants(self, tenant_id: UUID) -> bool:
        """Whether the tenant still has a connection or a grant parked for confirmation: rows whose grant its
        deletion must revoke before the cascade drops them (filtered by tenant as well as RLS)."""
        connection = exists().where(ConnectionRow.tenant_id == tenant_id)
        parked = exists().where(ConnectConfirmationRow.tenant_id == tenant_id)
        return bool(self._session.scalar(select(or_(connection, parked))))

    def delete(self, tenant_id: UUID) -> bool:
        """Delete the tenant; every row it owns goes with it (ON DELETE CASCADE)."""
        changed = rows_changed(self._session, delete(TenantRow).where(TenantRow.id == tenant_id))
        return changed > 0

    def add_api_key(self, tenant_id: UUID, key_id: str, secret_sha256: bytes) -> ApiKeyRecord:
        row = TenantApiKeyRow(tenant_id=tenant_id, key_id=key_id, secret_sha256=secret_sha256)
        self._session.add(row)
        self._session.flush()
        self._session.refresh(row)
        return _api_key(row)

    def usage(self, resource: Resource, now: datetime) -> int:
        return int(self._session.scalar(usage_query(resource, now)) or 0)

    def revoke_api_key(self, key_id: str, now: datetime) -> ApiKeyRecord:
        row = self._session.scalars(
            update(TenantApiKeyRow)
            .where(TenantApiKeyRow.key_id == key_id)
            .values(revoked_at=func.coalesce(TenantApiKeyRow.revoked_at, now))
            .returning(TenantApiKeyRow)
        ).one_or_none()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return _api_key(row)


class Resource(StrEnum):
    """What a tenant holds that counts against its quota (``CONNVAULT_QUOTA_<NAME>``)."""

    CONNECTIONS = "connections"
    CUSTOM_PROVIDERS = "custom_providers"
    INTEGRATIONS = "integrations"
    API_KEYS = "api_keys"
    CONNECT_SESSIONS = "connect_sessions"


def usage_query(resource: Resource, now: datetime) -> Select[int]:
    """How many of ``resource`` the unit of work's tenant holds (RLS confines the count to it): live API keys
    and unexpired connect sessions only (browser sessions, and device sessions still pending), every row of the
    others."""
    count = select(func.count())
    if resource is Resource.CONNECTIONS:
        return count.select_from(ConnectionRow)
    if resource is Resource.CUSTOM_PROVIDERS:
        return count.select_from(ProviderRow).where(ProviderRow.tenant_id.is_not(None))
    if resource is Resource.INTEGRATIONS:
        return count.select_from(IntegrationRow)
    if resource is Resource.API_KEYS:
        return count.select_from(TenantApiKeyRow).where(TenantApiKeyRow.revoked_at.is_(None))
    browser = count.select_from(OAuthSessionRow).where(OAuthSessionRow.expires_at > now).scalar_subquery()
    device = (
        count.select_from(DeviceSessionRow)
        .where(DeviceSessionRow.status == "pending", DeviceSessionRow.expires_at > now)
        .scalar_subquery()
    )
    return select(browser + device)


def list_tenant_ids(target: DatabaseTarget | None = None) -> list[UUID]:
    """Every tenant id, read as the schema owner (the one cross-tenant read key rotation needs; RLS would show
    the app role none). Adds nothing to the schema: no SECURITY DEFINER function lists tenants."""
    connection = (target or get_target()).connect()
    try:
        return [row[0] for row in connection.run("SELECT id FROM tenants ORDER BY id")]
    finally:
        connection.close()


def _api_key(row: TenantApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.tenant_id, row.key_id, row.created_at, row.revoked_at)
