"""The providers a tenant can connect to: the global catalog and its own custom providers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connvault.db.uow import UnitOfWork
    from connvault.models import Provider


def list_providers(uow: UnitOfWork) -> list[Provider]:
    """By slug; row-level security leaves out other tenants' custom providers."""
    with uow:
        return uow.providers.list_all()
