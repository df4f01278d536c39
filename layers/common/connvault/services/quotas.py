"""Per-tenant quotas: one tenant of a shared deployment cannot hold more than its share.

Checked inside the transaction that adds the resource, by a count under the tenant's RLS. Two additions racing
may both pass the count: a quota can be exceeded by the number of concurrent requests of one tenant, which is
bounded, not by more. Limits are settings (``CONNVAULT_QUOTA_*``), the same for every tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.db.tenants import Resource
from connvault.errors import QuotaExceeded

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.db.uow import UnitOfWork


def require_room(uow: UnitOfWork, resource: Resource, *, now: Clock = utcnow) -> None:
    """Raise ``QuotaExceeded`` when the tenant already holds its quota of ``resource`` (call inside ``with uow``)."""
    limit: int = getattr(get_settings(), f"quota_{resource.value}")
    if uow.tenants.usage(resource, now()) >= limit:
        raise QuotaExceeded(f"the tenant holds its quota of {limit} {resource.value.replace('_', ' ')}")


def require_room_for_connection(
    uow: UnitOfWork, provider_id: UUID, end_user_id: str, alias: str, *, now: Clock = utcnow
) -> None:
    """``require_room`` for a grant about to be saved: a reconnect replaces the end user's connection and needs
    no room, a new connection does (every path that saves a grant asks here: API, OAuth callback, connect page)."""
    if uow.connections.find_by_unique(provider_id, end_user_id, alias) is None:
        require_room(uow, Resource.CONNECTIONS, now=now)
