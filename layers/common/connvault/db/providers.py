"""The provider catalog as the application sees it: global entries plus the tenant's own custom ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connvault.catalog.forms import check_config_keys, parse_credential_check, parse_credential_form
from connvault.connection_config import parse_keys
from connvault.db.rows import ProviderRow
from connvault.errors import Conflict, NotFound
from connvault.models import (
    AuthType,
    Provider,
    RevocationScope,
    ScopeParameter,
    TokenEndpointAuthMethod,
    TokenResponseShape,
)
from connvault.proxy.credentials import parse_api_auth

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
            raise NotFound("provider not found")
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

    def find_custom(self, slug: str) -> Provider | None:
        """The tenant's own provider for ``slug``; RLS leaves no other tenant's row to find."""
        row = self._custom_row(slug)
        return None if row is None else to_provider(row)

    def is_global_slug(self, slug: str) -> bool:
        return (
            self._session.scalar(
                select(ProviderRow.id).where(ProviderRow.slug == slug, ProviderRow.tenant_id.is_(None))
            )
            is not None
        )

    def save_custom(self, provider: Provider) -> Provider:
        """Create or replace the tenant's custom provider ``provider.slug`` with every field of ``provider``.

        The row keeps its id when it exists, so the integration and connections that refer to it stay attached.
        RLS (``custom_write``/``custom_update``) makes sure the row is the tenant's own; checking that the slug
        is not a global one is the caller's job.
        """
        if provider.tenant_id is None:
            raise ValueError("a custom provider needs its tenant_id")
        row = self._custom_row(provider.slug, lock=True)
        if row is None:
            row = ProviderRow(id=provider.id, tenant_id=provider.tenant_id, slug=provider.slug)
            self._session.add(row)
        row.display_name = provider.display_name
        row.auth_type = provider.auth_type.value
        row.default_scopes = list(provider.default_scopes)
        row.scope_separator = provider.scope_separator
        row.authorize_params = dict(provider.authorize_params)
        row.refresh_margin_seconds = provider.refresh_margin_seconds
        row.discovery_url = provider.discovery_url
        row.revocation_scope = provider.revocation_scope.value
        row.account_id_fields = list(provider.account_id_fields)
        row.api_base_url = provider.api_base_url
        _write_endpoints(row, provider)
        return self._flush(row, provider.slug)

    def save_metadata(self, provider: Provider) -> Provider | None:
        """Write what a metadata refresh produced (endpoints, issuer, PKCE, auth method, fetch time) to the
        custom provider ``provider.id``, unless its ``discovery_url`` changed since the fetch began: a
        concurrent redefinition wins over a refresh of the old one. None when it did, or the row is gone."""
        row = self._session.scalars(
            select(ProviderRow)
            .where(
                ProviderRow.id == provider.id,
                ProviderRow.tenant_id.is_not(None),
                ProviderRow.discovery_url == provider.discovery_url,
            )
            .with_for_update()
        ).one_or_none()
        if row is None:
            return None
        _write_endpoints(row, provider)
        return self._flush(row, provider.slug)

    def _custom_row(self, slug: str, *, lock: bool = False) -> ProviderRow | None:
        query = select(ProviderRow).where(ProviderRow.slug == slug, ProviderRow.tenant_id.is_not(None))
        return self._session.scalars(query.with_for_update() if lock else query).one_or_none()

    def _flush(self, row: ProviderRow, slug: str) -> Provider:
        try:
            self._session.flush()
        except IntegrityError:
            raise Conflict(f"custom provider {slug!r} was defined concurrently") from None
        self._session.refresh(row)
        return to_provider(row)


def _write_endpoints(row: ProviderRow, provider: Provider) -> None:
    """The fields a discovery document decides (or the tenant, for a provider defined without one)."""
    row.authorization_url = provider.authorization_url
    row.token_url = provider.token_url
    row.revocation_url = provider.revocation_url
    row.issuer = provider.issuer
    row.require_iss = provider.require_iss
    row.pkce = provider.pkce
    row.token_endpoint_auth_method = provider.token_endpoint_auth_method.value
    row.device_authorization_url = provider.device_authorization_url
    row.metadata_fetched_at = provider.metadata_fetched_at


def to_provider(row: ProviderRow) -> Provider:
    return Provider(
        id=row.id,
        slug=row.slug,
        display_name=row.display_name,
        auth_type=AuthType(row.auth_type),
        authorization_url=row.authorization_url,
        token_url=row.token_url,
        revocation_url=row.revocation_url,
        revocation_scope=RevocationScope(row.revocation_scope),
        default_scopes=tuple(row.default_scopes),
        scope_separator=row.scope_separator,
        scope_parameter=ScopeParameter(row.scope_parameter),
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
        account_id_fields=tuple(row.account_id_fields),
        **_connect_page_fields(row),
        connection_config=parse_keys(row.connection_config),
        api_base_url=row.api_base_url,
        token_params=dict(row.token_params),
        api_auth=parse_api_auth(row.api_auth),
        device_authorization_url=row.device_authorization_url,
    )


def _connect_page_fields(row: ProviderRow) -> dict[str, Any]:
    """The credential form and check of an API-key or basic provider, parsed by the catalog's own rules."""
    if row.credential_form is None:
        return {}
    form = parse_credential_form(row.credential_form, AuthType(row.auth_type))
    check = None
    if row.credential_check is not None:
        # http is the egress guard's to refuse or allow (loopback in local development), not the parser's.
        keys = check_config_keys(parse_keys(row.connection_config))
        check = parse_credential_check(row.credential_check, form, config_keys=keys, require_https=False)
    return {"credential_form": form, "credential_check": check}
