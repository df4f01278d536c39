"""Domain objects: plain dataclasses with the behaviour that belongs to them, no ORM and no I/O.

Secrets travel inside ``Redacted`` so that no ``repr``, log line or traceback can show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from connvault.connection_status import ConnectionStatus as ConnectionStatus
from connvault.credentials import (
    SATISFIABLE_SHARE as SATISFIABLE_SHARE,
)
from connvault.credentials import (
    ApiKeyCredentials as ApiKeyCredentials,
)
from connvault.credentials import (
    AuthType as AuthType,
)
from connvault.credentials import (
    BasicCredentials as BasicCredentials,
)
from connvault.credentials import (
    Credentials as Credentials,
)
from connvault.credentials import (
    OAuth2Credentials as OAuth2Credentials,
)
from connvault.credentials import (
    credentials_from_bytes as credentials_from_bytes,
)
from connvault.credentials import (
    credentials_to_bytes as credentials_to_bytes,
)
from connvault.credentials import (
    needs_refresh as needs_refresh,
)
from connvault.credentials import (
    refresh_ttl as refresh_ttl,
)
from connvault.oauth.tokens import (
    OAuth2Tokens as OAuth2Tokens,
)
from connvault.token_grants import (
    ClientAuthMethod as ClientAuthMethod,
)
from connvault.token_grants import (
    ClientCredentials as ClientCredentials,
)
from connvault.token_grants import (
    ClientCredentialsGrant as ClientCredentialsGrant,
)
from connvault.token_grants import (
    ConnectionKind as ConnectionKind,
)
from connvault.token_grants import (
    Grant as Grant,
)
from connvault.token_grants import (
    JwtBearerGrant as JwtBearerGrant,
)
from connvault.token_grants import (
    SigningKey as SigningKey,
)

if TYPE_CHECKING:
    from connvault.redacted import Redacted

PROVIDER_SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""What a provider's slug looks like, wherever one is read: the catalog, the API's paths and bodies, and the
``providers.slug`` CHECK constraint (a test compares them)."""


class TokenEndpointAuthMethod(StrEnum):
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"


class ScopeParameter(StrEnum):
    """Where the authorize URL carries the scopes; Slack wants user-token scopes in ``user_scope``."""

    SCOPE = "scope"
    USER_SCOPE = "user_scope"


class RevocationScope(StrEnum):
    """What revoking one token takes with it at the provider (see ``services/revocation.py``)."""

    TOKEN = "token"
    """Only the grant the token belongs to (RFC 7009's reading): a replaced grant can be revoked safely."""
    AUTHORIZATION = "authorization"
    """Every grant of the client for that user (Google): revoking a replaced grant would end its successor."""


class TokenResponseShape(StrEnum):
    """How a provider's token response is laid out (see ``connvault.oauth.responses``)."""

    STANDARD = "standard"
    NESTED_AUTHED_USER = "nested_authed_user"


class ConfigKind(StrEnum):
    """What a connection configuration value may be; each kind fixes where its placeholder may stand in a URL
    (see ``connvault.connection_config``)."""

    SUBDOMAIN = "subdomain"
    """One DNS label, filling a whole label left of a host's fixed domain: ``https://{shop}.myshopify.com``."""
    ORIGIN = "origin"
    """An https origin under one of the key's ``domains``, standing for a whole URL's start: ``{instance_url}/x``."""


class ConfigSource(StrEnum):
    """Who supplies a connection configuration value."""

    TENANT = "tenant"
    """The tenant, in ``connection_config`` when starting a connect session or creating a connection."""
    TOKEN_RESPONSE = "token_response"
    """The provider, as the same-named field of the code exchange's token response (Salesforce ``instance_url``)."""


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One per-connection value a provider's URLs need: its kind, who supplies it, and what else it must match."""

    name: str
    kind: ConfigKind
    source: ConfigSource = ConfigSource.TENANT
    pattern: str | None = None
    """A further regular expression the whole value must match, on top of its kind's own rules."""
    domains: tuple[str, ...] = ()
    """``origin`` only: the registrable domains the origin's host must be, or be under."""
    description: str = ""


class ApiAuthStyle(StrEnum):
    """How a provider's API takes the credential (see ``connvault.proxy.credentials``)."""

    BEARER = "bearer"
    HEADER = "header"
    QUERY = "query"
    BASIC = "basic"


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """The catalog's ``api_auth``: a style, and for ``header``/``query`` the name (and a header's value prefix)."""

    style: ApiAuthStyle
    name: str | None = None
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class CredentialField:
    """One field of the connect page's form for an API-key or basic provider.

    ``api_key``, ``username`` and ``password`` are the credentials; any other name is a non-secret detail (a
    site name, a region) kept in the connection's metadata. ``pattern`` is matched against the whole value, by
    the browser (the input's ``pattern``) and again by connvault.
    """

    name: str
    label: str
    secret: bool = False
    pattern: str | None = None
    hint: str | None = None
    max_length: int = 8192


@dataclass(frozen=True, slots=True)
class CredentialForm:
    """What the connect page asks an end user for to connect an API-key or basic provider."""

    fields: tuple[CredentialField, ...]
    help_url: str | None = None
    """Where the end user finds the key (the provider's own page for it)."""


class CheckAuth(StrEnum):
    """How a credential check presents the typed credentials to the provider."""

    BEARER = "bearer"
    BASIC = "basic"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """A request that tells whether typed credentials work, made before they are saved.

    ``url`` may name non-secret form fields as ``{name}`` (each then has a pattern); 2xx means the credentials
    work, 401 and 403 that the provider refused them, anything else that it could not say.
    """

    url: str
    auth: CheckAuth = CheckAuth.BEARER
    header: str | None = None
    """The header that carries the key when ``auth`` is ``header``."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A catalog entry: everything the OAuth client needs to talk to one provider, as data."""

    id: UUID
    slug: str
    display_name: str
    auth_type: AuthType
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    revocation_scope: RevocationScope = RevocationScope.TOKEN
    default_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    scope_parameter: ScopeParameter = ScopeParameter.SCOPE
    pkce: bool = True
    token_endpoint_auth_method: TokenEndpointAuthMethod = TokenEndpointAuthMethod.CLIENT_SECRET_BASIC
    rotates_refresh_tokens: bool = False
    refresh_margin_seconds: int = 300
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_response_shape: TokenResponseShape = TokenResponseShape.STANDARD
    issuer: str | None = None
    require_iss: bool = False
    discovery_url: str | None = None
    metadata_fetched_at: datetime | None = None
    max_concurrent_refreshes: int | None = None
    docs_url: str | None = None
    tenant_id: UUID | None = None
    account_id_fields: tuple[str, ...] = ()
    """Where a token response names the connected account (see ``oauth.responses.account_id``)."""
    credential_form: CredentialForm | None = None
    credential_check: CredentialCheck | None = None
    connection_config: tuple[ConfigKey, ...] = ()
    """The per-connection values the URL placeholders (``{subdomain}``) need; empty for most providers."""
    api_base_url: str | None = None
    """Where the provider's API lives, possibly with placeholders; what the proxy prefixes paths with."""
    token_params: Mapping[str, str] = field(default_factory=dict)
    """Extra form fields for the code exchange (Shopify's ``expiring=1``)."""
    api_auth: ApiAuth | None = None
    """How the API takes the credential; None means the usual for ``auth_type`` (bearer, or basic)."""

    device_authorization_url: str | None = None
    """RFC 8628 device authorization endpoint; None when the provider has no device flow."""

    @property
    def is_custom(self) -> bool:
        """A tenant's own provider rather than a global catalog entry."""
        return self.tenant_id is not None


class IntegrationStatus(StrEnum):
    ACTIVE = "active"
    INVALID_CREDENTIALS = "invalid_credentials"
    """The provider refused the client id or secret: refreshes wait for the tenant to replace them."""


@dataclass(frozen=True, slots=True)
class Integration:
    """A tenant's OAuth app for one provider."""

    id: UUID
    tenant_id: UUID
    provider: Provider
    client_id: str
    client_secret: Redacted[str] | None
    scopes: tuple[str, ...]
    allowed_return_urls: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    status: IntegrationStatus = IntegrationStatus.ACTIVE
    status_reason: str | None = None
    """The provider's error code that set the status (e.g. ``invalid_client``)."""
    status_since: datetime | None = None

    @property
    def client(self) -> ClientCredentials:
        return ClientCredentials(self.client_id, self.client_secret)

    @property
    def has_client_secret(self) -> bool:
        return self.client_secret is not None


@dataclass(frozen=True, slots=True)
class Connection:
    """One end user's account at one provider."""

    id: UUID
    tenant_id: UUID
    provider_id: UUID
    provider_slug: str
    end_user_id: str
    alias: str
    credential_type: AuthType
    status: ConnectionStatus
    credentials: Credentials | None
    token_type: str | None
    scopes: tuple[str, ...]
    expires_at: datetime | None
    granted_at: datetime | None
    last_refresh_at: datetime | None
    last_used_at: datetime | None
    refresh_failures: int
    last_error_code: str | None
    next_refresh_at: datetime | None
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
    refresh_lease_until: datetime | None = None
    provider_account_id: Redacted[str] | None = None
    has_refresh_token: bool = False
    """Whether the sealed credentials renew without the end user, known without opening them: a refresh token,
    or the client or key of a ``client_credentials`` / ``jwt_bearer`` grant (the column's name predates those)."""
    token_version: int = 0
    """Counts every change of the stored tokens (refresh or new grant): a waiter accepts any version newer
    than the one it read, whichever process wrote it."""
    refresh_started_at: datetime | None = None
    """When the refresh that produced the stored tokens took its lease (None: none since the grant)."""
    connection_config: Mapping[str, str] = field(default_factory=dict)
    """Values for the provider's URL placeholders; fixed for the life of a grant (see migration 0080)."""
    fault_count: int = 0
    """Consecutive refresh attempts that failed on our side (KMS, database, an unreadable row)."""
    fault_code: str | None = None
    kind: ConnectionKind = ConnectionKind.AUTHORIZATION_CODE

    @property
    def refresh_token(self) -> Redacted[str] | None:
        return self.credentials.refresh_token if isinstance(self.credentials, OAuth2Credentials) else None

    def ensure_servable(self, *, refreshing: bool = False) -> None:
        """See ``ConnectionStatus.ensure_servable``."""
        self.status.ensure_servable(
            self.id, has_refresh_token=self.has_refresh_token, reason=self.last_error_code, refreshing=refreshing
        )

    def leased(self, now: datetime) -> bool:
        """Whether someone holds a live refresh lease on it."""
        return self.refresh_lease_until is not None and self.refresh_lease_until > now

    def is_due(self, now: datetime, horizon_seconds: int) -> bool:
        """The scheduler's claim condition (``connvault_claim_due_refreshes``), for a connection in hand."""
        return (
            self.status is ConnectionStatus.ACTIVE
            and self.has_refresh_token
            and needs_refresh(self.expires_at, now, horizon_seconds)
            and (self.next_refresh_at is None or self.next_refresh_at <= now)
        )

    def has_fresh_token(self, now: datetime, min_ttl: int, margin: int) -> bool:
        """Whether it is active with a token good for ``min_ttl`` and the provider's ``margin`` (see
        ``refresh_ttl``): nothing to refresh for this caller."""
        return self.status is ConnectionStatus.ACTIVE and not needs_refresh(
            self.expires_at, now, self.refresh_ttl(min_ttl, margin)
        )

    def may_expire(self, now: datetime) -> bool:
        """Whether its token has run out while it still counts as serving one: a candidate for ``expired``
        (``leases.expire`` checks again, with the lease, in the database)."""
        lapsed = self.expires_at is not None and self.expires_at <= now
        return lapsed and self.status in (ConnectionStatus.ACTIVE, ConnectionStatus.ERROR)

    @property
    def issued_at(self) -> datetime | None:
        """When the current token was issued: the later of the grant and the last refresh."""
        moments = [moment for moment in (self.granted_at, self.last_refresh_at) if moment is not None]
        return max(moments) if moments else None

    def tokens_requested_since(self, moment: datetime) -> bool:
        """Whether the stored tokens come from a provider call begun at or after ``moment`` (a refresh whose
        lease was taken then, or a new grant): what a forced fetch that asked at ``moment`` accepts."""
        started = self.refresh_started_at
        return (started is not None and started >= moment) or (
            self.granted_at is not None and self.granted_at >= moment
        )

    def refresh_ttl(self, min_ttl: int, margin: int) -> int:
        """The time-to-live worth refreshing for, for this connection's current token (see ``refresh_ttl``)."""
        return refresh_ttl(min_ttl, margin, self.issued_at, self.expires_at)


@dataclass(frozen=True, slots=True)
class Page[T]:
    """One page of a listing, and the cursor that continues it (None on the last page)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """How a tenant's hosted connect page presents itself and where it may send end users back to."""

    display_name: str | None = None
    frame_ancestors: tuple[str, ...] = ()
    allowed_return_urls: tuple[str, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """A provider-side account under a connection (e.g. one bank account behind a Plaid login)."""

    id: UUID
    tenant_id: UUID
    connection_id: UUID
    external_id: Redacted[str] | None
    baas_id: Redacted[str] | None
    display_name: str
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PendingConnect:
    """A connect attempt waiting for its callback; found by the hash of its state, used once."""

    id: UUID
    tenant_id: UUID
    provider_id: UUID
    end_user_id: str
    alias: str
    scopes: tuple[str, ...]
    code_verifier: Redacted[str] | None
    return_url: str | None
    expires_at: datetime
    require_confirmation: bool = False
    """Park the grant until the tenant confirms it (``services/connect_confirmation.py``)."""
    connect_link_id: UUID | None = None
    """Set when the connect page started this attempt: the callback then shows the page's result."""
    connection_config: Mapping[str, str] = field(default_factory=dict)
    """The tenant's values for the provider's URL placeholders; the callback adds the provider's own."""


class DeviceSessionStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    DENIED = "denied"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeviceCodes:
    """A device session's secrets: the device code buys the tokens, and the user code (and the complete URI
    that carries it) lets whoever holds it approve the session with their own account."""

    device_code: Redacted[str]
    user_code: Redacted[str]
    verification_uri_complete: Redacted[str] | None = None


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """A device connect session (RFC 8628) and where its polling stands; ``codes`` is None once it has ended."""

    id: UUID
    tenant_id: UUID
    provider_id: UUID
    provider_slug: str
    end_user_id: str
    alias: str
    scopes: tuple[str, ...]
    verification_uri: str
    status: DeviceSessionStatus
    interval_seconds: int
    next_poll_at: datetime
    poll_failures: int
    expires_at: datetime
    created_at: datetime
    connection_id: UUID | None = None
    error_code: str | None = None
    codes: DeviceCodes | None = None
