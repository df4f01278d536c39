"""SQLAlchemy 2 typed rows, one per table. Only repositories touch them; the rest sees domain objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    FetchedValue,
    ForeignKey,
    Integer,
    LargeBinary,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute by name
        UUID: Uuid(as_uuid=True),
        datetime: DateTime(timezone=True),
        str: Text(),
        bytes: LargeBinary(),
        list[str]: ARRAY(Text()),
        dict[str, Any]: JSONB(),
    }


_NOW = text("now()")
_NEW_ID = text("gen_random_uuid()")


def _updated_at() -> Mapped[datetime]:
    """updated_at is kept by a trigger (connvault_set_updated_at): the ORM reloads it after every write, never
    sets it."""
    return mapped_column(server_default=_NOW, server_onupdate=FetchedValue())


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    name: Mapped[str]
    key_salt: Mapped[UUID] = mapped_column(server_default=_NEW_ID)
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    blind_index_key: Mapped[bytes | None]


class TenantApiKeyRow(Base):
    __tablename__ = "tenant_api_keys"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_id: Mapped[str]
    secret_sha256: Mapped[bytes]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    revoked_at: Mapped[datetime | None]


class ProviderRow(Base):
    __tablename__ = "providers"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    slug: Mapped[str]
    display_name: Mapped[str]
    auth_type: Mapped[str]
    authorization_url: Mapped[str | None]
    token_url: Mapped[str | None]
    revocation_url: Mapped[str | None]
    revocation_scope: Mapped[str] = mapped_column(server_default=text("'token'"))
    default_scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    scope_separator: Mapped[str] = mapped_column(server_default=text("' '"))
    scope_parameter: Mapped[str] = mapped_column(server_default=text("'scope'"))
    pkce: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    token_endpoint_auth_method: Mapped[str] = mapped_column(server_default=text("'client_secret_basic'"))
    rotates_refresh_tokens: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    refresh_margin_seconds: Mapped[int] = mapped_column(Integer, server_default=text("300"))
    authorize_params: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    token_response_shape: Mapped[str] = mapped_column(server_default=text("'standard'"))
    issuer: Mapped[str | None]
    require_iss: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    discovery_url: Mapped[str | None]
    metadata_fetched_at: Mapped[datetime | None]
    max_concurrent_refreshes: Mapped[int | None] = mapped_column(Integer)
    docs_url: Mapped[str | None]
    account_id_fields: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    credential_form: Mapped[dict[str, Any] | None]
    credential_check: Mapped[dict[str, Any] | None]
    device_authorization_url: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = _updated_at()
    connection_config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    api_base_url: Mapped[str | None]
    token_params: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    api_auth: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))


class IntegrationRow(Base):
    __tablename__ = "integrations"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    client_id: Mapped[str]
    client_secret: Mapped[bytes | None]
    scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    allowed_return_urls: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(server_default=text("'active'"))
    status_reason: Mapped[str | None]
    status_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = _updated_at()


class ConnectionRow(Base):
    __tablename__ = "connections"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    end_user_id: Mapped[str]
    alias: Mapped[str] = mapped_column(server_default=text("''"))
    credential_type: Mapped[str]
    kind: Mapped[str | None]
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    credentials: Mapped[bytes | None]
    has_refresh_token: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    renews_with_own_client: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    token_type: Mapped[str | None]
    scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    expires_at: Mapped[datetime | None]
    granted_at: Mapped[datetime | None]
    last_refresh_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    refresh_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error_code: Mapped[str | None]
    next_refresh_at: Mapped[datetime | None]
    refresh_lease_until: Mapped[datetime | None]
    refresh_lease_owner: Mapped[UUID | None]
    token_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    refresh_started_at: Mapped[datetime | None]
    fault_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fault_code: Mapped[str | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = _updated_at()
    connection_config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    provider_account_id: Mapped[bytes | None]
    provider_account_id_bidx: Mapped[bytes | None]


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID]
    connection_id: Mapped[UUID]
    external_id: Mapped[bytes | None]
    external_id_bidx: Mapped[bytes | None]
    baas_id: Mapped[bytes | None]
    baas_id_bidx: Mapped[bytes | None]
    display_name: Mapped[str] = mapped_column(server_default=text("''"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = _updated_at()
    deleted_at: Mapped[datetime | None]


class OAuthSessionRow(Base):
    __tablename__ = "oauth_sessions"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    state_sha256: Mapped[bytes]
    end_user_id: Mapped[str]
    alias: Mapped[str] = mapped_column(server_default=text("''"))
    scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    code_verifier: Mapped[bytes | None]
    return_url: Mapped[str | None]
    expires_at: Mapped[datetime]
    require_confirmation: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    connect_link_id: Mapped[UUID | None] = mapped_column(ForeignKey("connect_links.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    connection_config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))


class WebhookEndpointRow(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str]
    description: Mapped[str] = mapped_column(server_default=text("''"))
    event_types: Mapped[list[str]]
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    secret: Mapped[bytes]
    previous_secret: Mapped[bytes | None]
    previous_secret_expires_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    circuit_open_until: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(server_default=_NOW)


class WebhookEventRow(Base):
    __tablename__ = "webhook_events"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str]
    subject_id: Mapped[UUID]
    data: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    seq: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    endpoint_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[UUID] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"))
    subject_id: Mapped[UUID]
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    retry_from: Mapped[datetime] = mapped_column(server_default=_NOW)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[UUID | None]
    held_until: Mapped[datetime | None]
    """Only the claim reads and writes it (migration 0097): a delivery it passed over while it waited."""
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error_code: Mapped[str | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    expired_reason: Mapped[str | None]


class ConnectConfirmationRow(Base):
    __tablename__ = "connect_confirmations"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    end_user_id: Mapped[str]
    alias: Mapped[str] = mapped_column(server_default=text("''"))
    confirmation_sha256: Mapped[bytes]
    credentials: Mapped[bytes]
    token_type: Mapped[str | None]
    scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    token_expires_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    confirm_by: Mapped[datetime]
    provider_account_id: Mapped[bytes | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    connection_config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))


class ConnectSettingsRow(Base):
    __tablename__ = "connect_settings"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    display_name: Mapped[str | None]
    frame_ancestors: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    allowed_return_urls: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    updated_at: Mapped[datetime] = _updated_at()


class ConnectLinkRow(Base):
    __tablename__ = "connect_links"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    link_sha256: Mapped[bytes]
    page_sha256: Mapped[bytes | None]
    provider_ids: Mapped[list[UUID]] = mapped_column(ARRAY(Uuid(as_uuid=True)))
    end_user_id: Mapped[str]
    alias: Mapped[str] = mapped_column(server_default=text("''"))
    scopes: Mapped[list[str] | None]
    return_url: Mapped[str | None]
    expires_at: Mapped[datetime]
    opened_at: Mapped[datetime | None]
    connection_id: Mapped[UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    connection_config: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    credential_checks: Mapped[int] = mapped_column(server_default=text("0"))


class DeviceSessionRow(Base):
    __tablename__ = "device_sessions"

    id: Mapped[UUID] = mapped_column(primary_key=True, server_default=_NEW_ID)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("providers.id", ondelete="CASCADE"))
    end_user_id: Mapped[str]
    alias: Mapped[str] = mapped_column(server_default=text("''"))
    scopes: Mapped[list[str]] = mapped_column(server_default=text("'{}'"))
    codes: Mapped[bytes | None]
    verification_uri: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=text("'pending'"))
    interval_seconds: Mapped[int] = mapped_column(Integer)
    next_poll_at: Mapped[datetime]
    poll_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    poll_lease_until: Mapped[datetime | None]
    poll_lease_owner: Mapped[UUID | None]
    expires_at: Mapped[datetime]
    connection_id: Mapped[UUID | None] = mapped_column(ForeignKey("connections.id", ondelete="SET NULL"))
    error_code: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_NOW)
    updated_at: Mapped[datetime] = _updated_at()
