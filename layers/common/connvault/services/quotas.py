"""Per-tenant quotas: one tenant of a shared deployment cannot hold more than its share.

Checked inside the transaction that adds the resource, by a count under the tenant's RLS. Two additions racing
may both pass the count: a quota can be exceeded by the number of concurrent requests of one tenant, which is
bounded, not by more. Limits are settings (``CONNVAULT_QUOTA_*``), the same for every tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.errors import QuotaExceeded

if TYPE_CHECKING:
    from connvault.db.tenants import Resource
    from connvault.db.uow import UnitOfWork


def require_room(uow: UnitOfWork, resource: Resource, *, now: Clock = utcnow) -> None:
    """Raise ``QuotaExceeded`` when the tenant already holds its quota of ``resource`` (call inside ``with uow``)."""
    limit: int = getattr(get_settings(), f"quota_{resource.value}")
    if uow.tenants.usage(resource, now()) >= limit:
        raise QuotaExceeded(f"the tenant holds its quota of {limit} {resource.value.replace('_', ' ')}")
