"""The provider catalog as the application sees it: global entries plus the tenant's own custom ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from connvault.db.rows import ProviderRow
from connvault.errors import NotFound
from connvault.models import AuthType, Provider, TokenEndpointAuthMethod, TokenResponseShape

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import Session


class ProviderRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get_by_slug(self, slug: str) -> Provider:
        """The provider a tenant means by ``slug``; RLS hides other tenants' custom providers."""
        row = self._session.scalars(
            select(ProviderRow).where(ProviderRow.slug == slug).order_by(ProviderRow.tenant_id.nulls_first())
        ).first()
        if row is None:
            raise NotFound(f"provider {slug!r} not found")
        return to_provider(row)

    def get(self, provider_id: UUID) -> Provider:
        row = self._session.get(ProviderRow, provider_id)
        if row is None:
            raise NotFound(f"provider {provider_id} not found")
        return to_provider(row)

    def list_all(self, *, include_custom: bool = True) -> list[Provider]:
        query = select(ProviderRow).order_by(ProviderRow.slug)
        if not include_custom:
            query = query.where(ProviderRow.tenant_id.is_(None))
        return [to_provider(row) for row in self._session.scalars(query)]

    def find_custom(self, slug: str) -> ProviderRow | None:
        """The tenant's own provider row for ``slug``, for the custom-provider service to edit."""
        return self._session.scalars(
            select(ProviderRow).where(ProviderRow.slug == slug, ProviderRow.tenant_id.is_not(None))
        ).one_or_none()

    def is_global_slug(self, slug: str) -> bool:
        return (
            self._session.scalar(
                select(ProviderRow.id).where(ProviderRow.slug == slug, ProviderRow.tenant_id.is_(None))
            )
            is not None
        )


def to_provider(row: ProviderRow) -> Provider:
    return Provider(
        id=row.id,
        slug=row.slug,
        display_name=row.display_name,
        auth_type=AuthType(row.auth_type),
        authorization_url=row.authorization_url,
        token_url=row.token_url,
        revocation_url=row.revocation_url,
        default_scopes=tuple(row.default_scopes),
        scope_separator=row.scope_separator,
        pkce=row.pkce,
        token_endpoint_auth_method=TokenEndpointAuthMethod(row.token_endpoint_auth_method),
        rotates_refresh_tokens=row.rotates_refresh_tokens,
        refresh_margin_seconds=row.refresh_margin_seconds,
        authorize_params=dict(row.authorize_params),
        token_response_shape=TokenResponseShape(row.token_response_shape),
        issuer=row.issuer,
        require_iss=row.require_iss,
        discovery_url=row.discovery_url,
        metadata_fetched_at=row.metadata_fetched_at,
        max_concurrent_refreshes=row.max_concurrent_refreshes,
        docs_url=row.docs_url,
        tenant_id=row.tenant_id,
    )
