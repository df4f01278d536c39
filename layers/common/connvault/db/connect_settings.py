"""A tenant's connect page settings: the name end users see, who may embed the page, where it may return."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.dialects.postgresql import insert

from connvault.db.rows import ConnectSettingsRow
from connvault.models import ConnectSettings

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import Session


class ConnectSettingsRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, tenant_id: UUID) -> ConnectSettings:
        """The tenant's settings, or the defaults (no row yet): its own name, no embedding, no extra return URLs."""
        row = self._session.get(ConnectSettingsRow, tenant_id)
        return ConnectSettings() if row is None else _to_domain(row)

    def save(self, tenant_id: UUID, settings: ConnectSettings) -> ConnectSettings:
        values = {
            "display_name": settings.display_name,
            "frame_ancestors": list(settings.frame_ancestors),
            "allowed_return_urls": list(settings.allowed_return_urls),
        }
        row = self._session.scalars(
            insert(ConnectSettingsRow)
            .values(tenant_id=tenant_id, **values)
            .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
            .returning(ConnectSettingsRow),
            execution_options={"populate_existing": True},
        ).one()
        return _to_domain(row)


def _to_domain(row: ConnectSettingsRow) -> ConnectSettings:
    return ConnectSettings(
        display_name=row.display_name,
        frame_ancestors=tuple(row.frame_ancestors),
        allowed_return_urls=tuple(row.allowed_return_urls),
        updated_at=row.updated_at,
    )
