"""Managing connections: list, read, edit, delete (with revocation at the provider), and store API-key or
basic credentials. None of these hands out a secret; only ``services.tokens`` does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connvault import connection_config, wiring
from connvault.clock import Clock, utcnow
from connvault.connection_status import issuer_left
from connvault.db.connections import NewCredentials
from connvault.db.tenants import Resource
from connvault.errors import InvalidInput, NotFound, ProviderUnavailable
from connvault.models import (
    ApiKeyCredentials,
    AuthType,
    BasicCredentials,
    Connection,
    ConnectionStatus,
    OAuth2Credentials,
    Page,
)
from connvault.services import quotas
from connvault.services.renewal import revoking_client
from connvault.services.revocation import revoke_grant
from connvault.validation import require_text

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from connvault.db.uow import UnitOfWork
    from connvault.oauth.client import OAuthClient
    from connvault.redacted import Redacted

MAX_METADATA_BYTES = 16_384
MAX_METADATA_DEPTH = 32
MAX_PAGE_SIZE = 200
MAX_ACCOUNT_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class ConnectionFilter:
    provider: str | None = None
    end_user_id: str | None = None
    status: ConnectionStatus | None = None
    cursor: str | None = None
    limit: int = 50
    unused_since: datetime | None = None
    provider_account_id: str | None = None


@dataclass(frozen=True, slots=True)
class StaticCredentialsInput:
    """An API key, or a username and password, that the tenant hands over for safekeeping."""

    provider: str
    end_user_id: str
    alias: str = ""
    api_key: Redacted[str] | None = None
    username: str | None = None
    password: Redacted[str] | None = None
    metadata: Mapping[str, Any] | None = None
    provider_account_id: Redacted[str] | None = None
    connection_config: Mapping[str, object] | None = None
    """Values for the provider's URL placeholders (``{"subdomain": "acme"}``); fixed for the connection's life."""
    kind: str | None = None
    """``api_key`` or ``basic`` when the tenant said which; it must be the provider's type."""


@dataclass(frozen=True, slots=True)
class Deletion:
    connection_id: UUID
    revocation_attempted: bool
    revoked: bool


def list_connections(uow: UnitOfWork, query: ConnectionFilter) -> Page[Connection]:
    if not 1 <= query.limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}", field="limit")
    if query.provider is not None:
        require_text(query.provider, "provider", max_length=63)
    if query.end_user_id is not None:
        require_text(query.end_user_id, "end_user_id", max_length=255)
    if query.provider_account_id is not None:
        require_provider_id(query.provider_account_id, "provider_account_id")
    if query.unused_since is not None and query.unused_since.tzinfo is None:
        raise InvalidInput("unused_since needs a time zone (e.g. 2026-01-31T00:00:00Z)", field="unused_since")
    with uow:
        provider_id = None
        if query.provider is not None:
            try:
                provider_id = uow.providers.get_by_slug(query.provider).id
            except NotFound:
                return Page([], None)
        return uow.connections.list_by_tenant(
            provider_id=provider_id,
            end_user_id=query.end_user_id,
            status=query.status,
            cursor=query.cursor,
            limit=query.limit,
            unused_since=query.unused_since,
            provider_account_id=query.provider_account_id,
        )


def get_connection(uow: UnitOfWork, connection_id: UUID) -> Connection:
    """The connection as the API shows it: its credentials stay sealed (showing one never needs a secret)."""
    with uow:
        return uow.connections.get(connection_id, open_credentials=False)


def update_connection(
    uow: UnitOfWork,
    connection_id: UUID,
    *,
    alias: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    provider_account_id: Redacted[str] | None = None,
) -> Connection:
    """Change what the tenant owns of a connection. ``provider_account_id`` sets the provider's id for the account
    where the token response does not carry one (a later connect or refresh that carries one replaces it)."""
    if alias is not None:
        require_text(alias, "alias", max_length=100, min_length=0)
    if metadata is not None:
        check_metadata(metadata)
    if provider_account_id is not None:
        require_provider_id(provider_account_id.reveal(), "provider_account_id")
    with uow:
        connection = uow.connections.update_details(
            connection_id, alias=alias, metadata=metadata, provider_account_id=provider_account_id
        )
        uow.commit()
    return connection


def create_static_connection(uow: UnitOfWork, data: StaticCredentialsInput, *, now: Clock = utcnow) -> Connection:
    end_user_id = require_text(data.end_user_id, "end_user_id", max_length=255)
    alias = require_text(data.alias, "alias", max_length=100, min_length=0)
    metadata = dict(data.metadata or {})
    check_metadata(metadata)
    if data.provider_account_id is not None:
        require_provider_id(data.provider_account_id.reveal(), "provider_account_id")
    with uow:
        quotas.require_room(uow, Resource.CONNECTIONS, now=now)
        try:
            provider = uow.providers.get_by_slug(data.provider)
        except NotFound:
            raise InvalidInput("unknown provider", field="provider") from None
        credentials = _static_credentials(provider.auth_type, data)
        config = connection_config.tenant_config(provider, data.connection_config)
        connection = uow.connections.add(
            uow.tenant,
            provider.id,
            end_user_id=end_user_id,
            alias=alias,
            grant=NewCredentials(
                credentials,
                token_type=None,
                scopes=(),
                expires_at=None,
                provider_account_id=data.provider_account_id,
                connection_config=config,
            ),
            granted_at=now(),
            metadata=metadata,
        )
        uow.commit()
    return connection


DELETE_ATTEMPTS = 3
"""Rounds of revoke-then-delete before giving up with a retryable error; each extra round means a refresh
stored new tokens while the previous one was revoking."""


def delete_connection(uow: UnitOfWork, connection_id: UUID, *, oauth: OAuthClient | None = None) -> Deletion:
    """Revoke at the provider (refresh token first, RFC 7009), then delete the row whatever the provider said.

    A provider that is down or refuses must not keep a tenant from deleting its user's data. The row is
    deleted only while its tokens are those just revoked: a refresh that stored new ones meanwhile sends
    this round again, so the grant that is current when the row goes is the one revoked. A refresh that
    finds the row gone when it stores revokes its own new tokens (``services/refresh.py``): together, no
    order of the two leaves a live grant without a row.
    """
    attempted = revoked = False
    for _ in range(DELETE_ATTEMPTS):
        with uow:
            connection = uow.connections.get(connection_id)
            provider = connection_config.for_revocation(
                uow.providers.get(connection.provider_id), connection.connection_config
            )
            integration = uow.integrations.find(provider.id)
        credentials = connection.credentials
        revoker = revoking_client(credentials, integration.client if integration is not None else None)
        if (
            isinstance(credentials, OAuth2Credentials)
            and provider.revocation_url
            and revoker is not None
            and not issuer_left(connection.status, connection.last_error_code)
        ):
            attempted = True
            revoked = revoke_grant(oauth or wiring.get_oauth_client(), provider, revoker, credentials, connection_id)
        with uow:
            if uow.connections.delete(connection_id, token_version=connection.token_version):
                uow.commit()
                return Deletion(connection_id, attempted, revoked)
            uow.connections.get(connection_id)  # NotFound when someone else deleted it meanwhile
    raise ProviderUnavailable("the connection is being refreshed; retry the deletion", retry_after=1, reason="busy")


def _static_credentials(auth_type: AuthType, data: StaticCredentialsInput) -> ApiKeyCredentials | BasicCredentials:
    if auth_type is AuthType.OAUTH2:
        raise InvalidInput(
            "an OAuth provider's connections come from a connect session, or from kind imported, "
            "client_credentials or jwt_bearer",
            field="provider",
        )
    if data.kind is not None and data.kind != auth_type:
        raise InvalidInput("kind is not the provider's type (api_key or basic)", field="kind")
    if auth_type is AuthType.API_KEY:
        if data.api_key is None or data.username is not None or data.password is not None:
            raise InvalidInput("this provider takes api_key (and nothing else)", field="api_key")
        require_text(data.api_key.reveal(), "api_key", max_length=8192)
        return ApiKeyCredentials(data.api_key)
    if data.username is None or data.password is None or data.api_key is not None:
        raise InvalidInput("this provider takes username and password", field="username")
    require_text(data.username, "username", max_length=512)
    if ":" in data.username:  # RFC 7617 §2: the provider would read the rest as the password
        raise InvalidInput("username must not contain a colon (HTTP Basic)", field="username")
    require_text(data.password.reveal(), "password", max_length=8192)
    return BasicCredentials(data.username, data.password)


def require_provider_id(value: str, field: str) -> str:
    """An id a provider gave (sealed and blind-indexed): 1 to 255 characters, no control characters, and text
    that UTF-8 can carry (a lone surrogate cannot be sealed or indexed)."""
    require_text(value, field, max_length=MAX_ACCOUNT_ID_LENGTH)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    return value


def check_metadata(metadata: Mapping[str, Any]) -> None:
    """Metadata that PostgreSQL can store and the API can answer with: bounded in size and depth (a deeper
    document is stored but then fails every response that shows it), and no U+0000 (jsonb refuses it)."""
    try:
        size = len(json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise InvalidInput(
            "metadata must be a JSON object of finite numbers and Unicode text", field="metadata"
        ) from None
    if size > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata")
    pending: list[tuple[Any, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise InvalidInput(f"metadata must nest at most {MAX_METADATA_DEPTH} levels", field="metadata")
        if isinstance(value, dict):
            if any("\x00" in key for key in value):
                raise InvalidInput("metadata must not contain U+0000", field="metadata")
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and "\x00" in value:
            raise InvalidInput("metadata must not contain U+0000", field="metadata")
