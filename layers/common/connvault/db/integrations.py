"""A tenant's OAuth apps, one per provider, with the client secret sealed."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from connvault.crypto.envelope import SealContext
from connvault.db.providers import to_provider
from connvault.db.rowcount import rows_changed
from connvault.db.rows import IntegrationRow, ProviderRow
from connvault.errors import Conflict, NotFound
from connvault.models import Integration, IntegrationStatus, Provider

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.redacted import Redacted

CLIENT_SECRET_FIELD = "integrations.client_secret"


class IntegrationRepository:
    def __init__(self, session: Session, sealer: Sealer) -> None:
        self._session = session
        self._sealer = sealer

    def find(self, provider_id: UUID) -> Integration | None:
        found = self._session.execute(
            select(IntegrationRow, ProviderRow)
            .join(ProviderRow, ProviderRow.id == IntegrationRow.provider_id)
            .where(IntegrationRow.provider_id == provider_id)
        ).one_or_none()
        return None if found is None else self._to_domain(found[0], found[1])

    def get(self, provider: Provider) -> Integration:
        integration = self.find(provider.id)
        if integration is None:
            raise NotFound(f"no integration for provider {provider.slug!r}")
        return integration

    def list_all(self) -> list[Integration]:
        rows = self._session.execute(
            select(IntegrationRow, ProviderRow)
            .join(ProviderRow, ProviderRow.id == IntegrationRow.provider_id)
            .order_by(ProviderRow.slug)
        )
        return [self._to_domain(integration, provider) for integration, provider in rows]

    def save(
        self,
        tenant_id: UUID,
        provider: Provider,
        *,
        client_id: str,
        client_secret: Redacted[str] | None,
        keep_client_secret: bool,
        scopes: Sequence[str],
        allowed_return_urls: Sequence[str],
    ) -> Integration:
        """Create or replace the tenant's integration for ``provider``.

        ``keep_client_secret`` leaves a stored secret as it is, so a tenant can change scopes or return URLs
        without sending the secret again. New client credentials (another secret or client id) clear an
        ``invalid_credentials`` status: refreshes resume with them.
        """
        row = self._session.scalars(
            select(IntegrationRow).where(IntegrationRow.provider_id == provider.id).with_for_update()
        ).one_or_none()
        if row is None:
            row = IntegrationRow(id=uuid.uuid4(), tenant_id=tenant_id, provider_id=provider.id)
            self._session.add(row)
        if not keep_client_secret or row.client_id != client_id:
            row.status, row.status_reason, row.status_since = IntegrationStatus.ACTIVE.value, None, func.now()
        row.client_id = client_id
        row.scopes = list(scopes)
        row.allowed_return_urls = list(allowed_return_urls)
        if not keep_client_secret:
            row.client_secret = self._sealer.seal_text(
                client_secret, SealContext(tenant_id, CLIENT_SECRET_FIELD, row.id)
            )
        try:
            self._session.flush()
        except IntegrityError:
            raise Conflict(f"integration for provider {provider.slug!r} was created concurrently") from None
        self._session.refresh(row)
        return self._to_domain(row, provider)

    def mark_credentials_invalid(self, provider_id: UUID, *, seen_updated_at: datetime, reason: str) -> bool:
        """Mark the integration ``invalid_credentials`` after the provider refused its client credentials,
        unless it changed since the refresh read it (``seen_updated_at``): then the tenant has just sent new
        credentials, and a refusal of the old ones says nothing about them."""
        changed = rows_changed(
            self._session,
            update(IntegrationRow)
            .where(
                IntegrationRow.provider_id == provider_id,
                IntegrationRow.updated_at == seen_updated_at,
                IntegrationRow.status == IntegrationStatus.ACTIVE.value,
            )
            .values(status=IntegrationStatus.INVALID_CREDENTIALS.value, status_reason=reason, status_since=func.now()),
        )
        return changed > 0

    def delete(self, provider_id: UUID) -> bool:
        changed = rows_changed(self._session, delete(IntegrationRow).where(IntegrationRow.provider_id == provider_id))
        return changed > 0

    def _to_domain(self, row: IntegrationRow, provider: Provider | ProviderRow) -> Integration:
        secret = self._sealer.open_text(row.client_secret, SealContext(row.tenant_id, CLIENT_SECRET_FIELD, row.id))
        return Integration(
            id=row.id,
            tenant_id=row.tenant_id,
            provider=provider if isinstance(provider, Provider) else to_provider(provider),
            client_id=row.client_id,
            client_secret=secret,
            scopes=tuple(row.scopes),
            allowed_return_urls=tuple(row.allowed_return_urls),
            created_at=row.created_at,
            updated_at=row.updated_at,
            status=IntegrationStatus(row.status),
            status_reason=row.status_reason,
            status_since=row.status_since,
        )
