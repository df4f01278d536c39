"""The API contract: pydantic ``*Request`` and ``*Response`` models, from which the OpenAPI document is built.

Responses are built from domain objects explicitly (``of``); they never carry a secret, except
``TokenResponse``, the one response that exists to hand one out.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connvault.models import (
    Account,
    ApiKeyCredentials,
    AuthType,
    BasicCredentials,
    ConfigKey,
    ConfigKind,
    ConfigSource,
    Connection,
    ConnectionStatus,
    Integration,
    IntegrationStatus,
    OAuth2Credentials,
    Provider,
    RevocationScope,
    TokenEndpointAuthMethod,
)

if TYPE_CHECKING:
    from connvault.db.accounts import AccountPage
    from connvault.db.connect_settings import ConnectSettings
    from connvault.db.connections import Page
    from connvault.redacted import Redacted
    from connvault.services.connect_links import StartedSession
    from connvault.services.connections import Deletion
    from connvault.services.tokens import IssuedCredential

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", examples=["google"])]
EndUserId = Annotated[str, Field(min_length=1, max_length=255, examples=["user-42"])]
Alias = Annotated[str, Field(max_length=100)]
Scope = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
ProviderAccountId = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=255,
        description="The provider's id for the account. Sealed at rest like a secret, found by exact match.",
    ),
]
ConnectionConfig = Annotated[
    dict[str, Any],
    Field(
        max_length=8,
        description='Values for the provider\'s URL placeholders, as strings, e.g. {"subdomain": "acme"}: '
        "GET /providers lists the keys each provider takes (those with source tenant, all required). Fixed for "
        "the connection's life; a new connect session (same end_user_id and alias) replaces it with the grant.",
        examples=[{"subdomain": "acme"}],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(Strict):
    code: str = Field(examples=["not_found"])
    message: str
    field: str | None = None


class ErrorResponse(Strict):
    error: ErrorBody


class ConnectSessionRequest(Strict):
    """Name one provider (``provider``) or the integrations the end user may choose from (``providers``)."""

    provider: Slug | None = Field(
        default=None, description="One provider; with an OAuth provider the answer also carries its authorize_url."
    )
    providers: list[Slug] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="The integrations the connect page offers, in this order (OAuth, API-key or basic).",
    )
    end_user_id: EndUserId
    alias: Alias = ""
    return_url: Url | None = Field(
        default=None,
        description="Where the end user goes back to, with connection_id or error. Must be in the connect "
        "settings' allowed_return_urls, or, when every provider uses OAuth, in each integration's.",
    )
    scopes: list[Scope] | None = Field(default=None, max_length=100, description="For one OAuth provider only.")
    require_confirmation: bool = Field(
        default=False,
        description="Park the grant until your backend confirms it: the end user comes back to return_url (required "
        "then) with connect_session_id and a one-time confirmation code; check that the user signed in is the one "
        "you started the session for, then POST /connect-sessions/{id}/confirm. Unconfirmed grants are revoked "
        "at the provider once the session expires. For one OAuth provider only; the answer then has no "
        "connect_url (the connect page does not offer confirmation).",
    )
    connection_config: ConnectionConfig | None = None

    @model_validator(mode="after")
    def _one_way_to_name_providers(self) -> ConnectSessionRequest:
        if (self.provider is None) == (self.providers is None):
            raise ValueError("give provider or providers")
        return self

    @property
    def slugs(self) -> tuple[str, ...]:
        return (self.provider,) if self.provider is not None else tuple(self.providers or ())


class ConnectSessionResponse(Strict):
    id: UUID | None = Field(
        description="The OAuth session behind authorize_url; confirmed with POST /connect-sessions/{id}/confirm "
        "when required. Null when there is no authorize_url."
    )
    connect_url: str | None = Field(
        description="The hosted connect page for the end user: the integrations to choose from, the OAuth "
        "redirect or the API-key form, and the way back to return_url. Single use (the browser that opened it "
        "may reload it); expires at connect_url_expires_at if not opened by then."
    )
    connect_url_expires_at: datetime | None
    authorize_url: str | None = Field(
        description="For a session naming one OAuth provider: the provider's consent screen, to send the end "
        "user to directly instead of the page. Single use; expires at expires_at. Null otherwise."
    )
    expires_at: datetime = Field(description="When authorize_url expires; connect_url's expiry when there is none.")
    require_confirmation: bool

    @classmethod
    def of(cls, started: StartedSession) -> ConnectSessionResponse:
        authorize, link = started.authorize, started.link
        expires_at = authorize.expires_at if authorize else link.expires_at if link else None
        assert expires_at is not None, "a session has an authorize_url, a connect_url or both"
        return cls(
            id=authorize.id if authorize else None,
            connect_url=link.url.reveal() if link else None,
            connect_url_expires_at=link.expires_at if link else None,
            authorize_url=authorize.authorize_url.reveal() if authorize else None,
            expires_at=expires_at,
            require_confirmation=bool(authorize and authorize.require_confirmation),
        )


class ConfirmConnectSessionRequest(Strict):
    confirmation: SecretStr = Field(
        min_length=1, max_length=512, description="The code the return URL received with connect_session_id."
    )


class ConnectSettingsRequest(Strict):
    display_name: str | None = Field(
        default=None, min_length=1, max_length=100, description="The name end users see; null: the tenant's name."
    )
    frame_ancestors: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=10,
        description="Origins (https://host[:port]) that may embed the connect page in a frame; empty: none.",
        examples=[["https://app.example.com"]],
    )
    allowed_return_urls: list[Url] = Field(
        default_factory=list, max_length=20, description="Exact URLs any connect link may return to."
    )


class ConnectSettingsResponse(Strict):
    display_name: str | None
    frame_ancestors: list[str]
    allowed_return_urls: list[str]
    updated_at: datetime | None

    @classmethod
    def of(cls, settings: ConnectSettings) -> ConnectSettingsResponse:
        return cls(
            display_name=settings.display_name,
            frame_ancestors=list(settings.frame_ancestors),
            allowed_return_urls=list(settings.allowed_return_urls),
            updated_at=settings.updated_at,
        )


class ConfigKeyResponse(Strict):
    """One value a provider's URLs need per connection."""

    name: str = Field(examples=["subdomain"])
    kind: ConfigKind = Field(
        description="subdomain: one DNS label (lowercase letters, digits, inner hyphens); origin: https://host"
    )
    source: ConfigSource = Field(
        description="tenant: send it in connection_config; token_response: the provider's token response gives it"
    )
    pattern: str | None = Field(description="A regular expression the whole value must also match")
    description: str

    @classmethod
    def of(cls, key: ConfigKey) -> ConfigKeyResponse:
        return cls(name=key.name, kind=key.kind, source=key.source, pattern=key.pattern, description=key.description)


class ProviderResponse(Strict):
    slug: str
    display_name: str
    auth_type: AuthType
    default_scopes: list[str]
    custom: bool
    docs_url: str | None
    connection_config: list[ConfigKeyResponse] = Field(
        description="The per-connection values this provider's URLs need; empty for most providers"
    )
    api_base_url: str | None = Field(description="Where the proxy sends requests; may hold placeholders")

    @classmethod
    def of(cls, provider: Provider) -> ProviderResponse:
        return cls(
            slug=provider.slug,
            display_name=provider.display_name,
            auth_type=provider.auth_type,
            default_scopes=list(provider.default_scopes),
            custom=provider.is_custom,
            docs_url=provider.docs_url,
            connection_config=[ConfigKeyResponse.of(key) for key in provider.connection_config],
            api_base_url=provider.api_base_url,
        )


class ProviderListResponse(Strict):
    items: list[ProviderResponse]


class CustomProviderRequest(Strict):
    """The tenant's own OAuth 2 provider: give ``discovery_url``, or ``authorization_url`` and ``token_url``.

    With ``discovery_url`` (OpenID Connect discovery or RFC 8414 metadata; https to a public address, as every
    URL connvault calls) connvault fetches the metadata and takes from it the endpoints, the issuer, whether the
    callback must carry ``iss`` (RFC 9207), PKCE (S256 offered) and the token endpoint's client authentication
    (client_secret_basic if offered, else client_secret_post); the fields marked "without discovery_url only"
    must then be left out. The metadata's ``issuer`` must be the issuer ``discovery_url`` was built from (or
    ``issuer`` when given); it is refetched when older than the configured maximum age as connect sessions
    start, and on ``POST /integrations/{provider}/refresh-metadata``.
    """

    display_name: str | None = Field(default=None, min_length=1, max_length=200, description="Defaults to the slug.")
    discovery_url: Url | None = Field(
        default=None, examples=["https://login.example.com/.well-known/openid-configuration"]
    )
    issuer: Url | None = Field(
        default=None,
        description="With discovery_url: the issuer the metadata must name (default: derived from the URL). "
        "Without: the value the callback's iss is compared with.",
    )
    authorization_url: Url | None = Field(default=None, description="Without discovery_url only; required then.")
    token_url: Url | None = Field(default=None, description="Without discovery_url only; required then.")
    revocation_url: Url | None = Field(default=None, description="Without discovery_url only (RFC 7009).")
    revocation_scope: RevocationScope = Field(
        default=RevocationScope.TOKEN,
        description="What revoking one token ends at the provider: `token`, only its own grant (RFC 7009), or "
        "`authorization`, every grant of this client for the user (as Google does). A reconnect revokes the grant "
        "it replaces only for `token`.",
    )
    require_iss: bool | None = Field(
        default=None, description="Without discovery_url only: the callback must carry iss equal to issuer."
    )
    pkce: bool | None = Field(default=None, description="Without discovery_url only; default true (S256).")
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = Field(
        default=None, description="Without discovery_url only; default client_secret_basic."
    )
    scope_separator: Literal[" ", ",", "+"] = " "
    authorize_params: dict[
        Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=1024)]
    ] = Field(default_factory=dict, max_length=20, description="Extra query parameters for the authorize URL.")
    refresh_margin_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Refresh tokens expiring within this many seconds."
    )
    api_base_url: Url | None = Field(
        default=None,
        description="Where the proxy sends this provider's API calls (https; no query, no placeholders).",
        examples=["https://api.example.com/v1"],
    )


class IntegrationRequest(Strict):
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr | None = Field(
        default=None, max_length=4096, description="Omit to keep the stored secret. Never returned."
    )
    scopes: list[Scope] = Field(default_factory=list, max_length=100)
    allowed_return_urls: list[Url] = Field(default_factory=list, max_length=20)
    custom_provider: CustomProviderRequest | None = Field(
        default=None,
        description="Define (or redefine) this tenant's own provider under a slug that is not in the global "
        "catalog. Omit it to keep an existing definition. Visible to this tenant only.",
    )


class CustomProviderResponse(Strict):
    """A custom provider as connvault uses it, with what its metadata decided."""

    slug: str
    display_name: str
    discovery_url: str | None
    issuer: str | None
    require_iss: bool
    authorization_url: str | None
    token_url: str | None
    revocation_url: str | None
    revocation_scope: RevocationScope
    pkce: bool
    token_endpoint_auth_method: TokenEndpointAuthMethod
    scope_separator: str
    authorize_params: dict[str, str]
    refresh_margin_seconds: int
    metadata_fetched_at: datetime | None
    api_base_url: str | None

    @classmethod
    def of(cls, provider: Provider) -> CustomProviderResponse:
        return cls(
            slug=provider.slug,
            display_name=provider.display_name,
            discovery_url=provider.discovery_url,
            issuer=provider.issuer,
            require_iss=provider.require_iss,
            authorization_url=provider.authorization_url,
            token_url=provider.token_url,
            revocation_url=provider.revocation_url,
            revocation_scope=provider.revocation_scope,
            pkce=provider.pkce,
            token_endpoint_auth_method=provider.token_endpoint_auth_method,
            scope_separator=provider.scope_separator,
            authorize_params=dict(provider.authorize_params),
            refresh_margin_seconds=provider.refresh_margin_seconds,
            metadata_fetched_at=provider.metadata_fetched_at,
            api_base_url=provider.api_base_url,
        )


class IntegrationResponse(Strict):
    provider: str
    client_id: str
    has_client_secret: bool
    scopes: list[str]
    allowed_return_urls: list[str]
    status: IntegrationStatus = Field(
        description="invalid_credentials: the provider refused the client id or secret; connections keep their "
        "grants, and refreshes wait until new credentials are sent (PUT with client_secret)."
    )
    status_reason: str | None = Field(default=None, description="The provider's error code, e.g. invalid_client.")
    status_since: datetime | None = None
    created_at: datetime
    updated_at: datetime
    custom_provider: CustomProviderResponse | None = Field(
        default=None, description="The tenant's own provider behind this integration; null for a catalog one."
    )

    @classmethod
    def of(cls, integration: Integration) -> IntegrationResponse:
        provider = integration.provider
        return cls(
            provider=provider.slug,
            client_id=integration.client_id,
            has_client_secret=integration.has_client_secret,
            scopes=list(integration.scopes),
            allowed_return_urls=list(integration.allowed_return_urls),
            status=integration.status,
            status_reason=integration.status_reason,
            status_since=integration.status_since,
            created_at=integration.created_at,
            updated_at=integration.updated_at,
            custom_provider=CustomProviderResponse.of(provider) if provider.is_custom else None,
        )


class IntegrationListResponse(Strict):
    items: list[IntegrationResponse]


class CreateConnectionRequest(Strict):
    """API-key or basic credentials; OAuth connections are made through a connect session."""

    provider: Slug
    end_user_id: EndUserId
    alias: Alias = ""
    api_key: SecretStr | None = Field(default=None, max_length=8192)
    username: str | None = Field(default=None, max_length=512)
    password: SecretStr | None = Field(default=None, max_length=8192)
    metadata: dict[str, Any] | None = None
    provider_account_id: ProviderAccountId | None = None
    connection_config: ConnectionConfig | None = None


class UpdateConnectionRequest(Strict):
    alias: Alias | None = None
    metadata: dict[str, Any] | None = None
    provider_account_id: ProviderAccountId | None = Field(
        default=None,
        description="Set the provider's id for the account where the provider does not name it; a later connect or "
        "refresh that names one replaces it.",
    )


class ConnectionResponse(Strict):
    id: UUID
    provider: str
    end_user_id: str
    alias: str
    credential_type: AuthType
    status: ConnectionStatus
    scopes: list[str]
    expires_at: datetime | None
    granted_at: datetime | None
    last_refresh_at: datetime | None
    last_used_at: datetime | None
    refresh_failures: int
    last_error_code: str | None
    metadata: dict[str, Any]
    connection_config: dict[str, str] = Field(description="The values its provider's URL placeholders are filled with")
    created_at: datetime
    updated_at: datetime
    provider_account_id: str | None = Field(
        default=None,
        description="The provider's stable id for the connected account (e.g. the OpenID sub, Slack team:user), from "
        "the token response as the provider catalog says, or set by the tenant.",
    )

    @classmethod
    def of(cls, connection: Connection) -> ConnectionResponse:
        return cls(
            id=connection.id,
            provider=connection.provider_slug,
            end_user_id=connection.end_user_id,
            alias=connection.alias,
            credential_type=connection.credential_type,
            status=connection.status,
            scopes=list(connection.scopes),
            expires_at=connection.expires_at,
            granted_at=connection.granted_at,
            last_refresh_at=connection.last_refresh_at,
            last_used_at=connection.last_used_at,
            refresh_failures=connection.refresh_failures,
            last_error_code=connection.last_error_code,
            metadata=dict(connection.metadata),
            connection_config=dict(connection.connection_config),
            created_at=connection.created_at,
            updated_at=connection.updated_at,
            provider_account_id=_revealed(connection.provider_account_id),
        )


class ConnectionListResponse(Strict):
    items: list[ConnectionResponse]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")

    @classmethod
    def of(cls, page: Page) -> ConnectionListResponse:
        return cls(items=[ConnectionResponse.of(c) for c in page.items], next_cursor=page.next_cursor)


class DeleteConnectionResponse(Strict):
    id: UUID
    deleted: Literal[True] = True
    revocation: Literal["succeeded", "failed", "not_supported"]

    @classmethod
    def of(cls, deletion: Deletion) -> DeleteConnectionResponse:
        outcome = "not_supported"
        if deletion.revocation_attempted:
            outcome = "succeeded" if deletion.revoked else "failed"
        return cls(id=deletion.connection_id, revocation=outcome)


class AccountRequest(Strict):
    """A provider-side account under the connection; at least one of ``external_id`` and ``baas_id``."""

    external_id: ProviderAccountId | None = None
    baas_id: ProviderAccountId | None = Field(
        default=None, description="The account's id at a banking-as-a-service or ledger provider, when it has one."
    )
    display_name: str = Field(default="", max_length=200)
    metadata: dict[str, Any] | None = None


class UpdateAccountRequest(Strict):
    """Fields to replace; an id can be replaced, not removed."""

    external_id: ProviderAccountId | None = None
    baas_id: ProviderAccountId | None = None
    display_name: str | None = Field(default=None, max_length=200)
    metadata: dict[str, Any] | None = None


class AccountResponse(Strict):
    id: UUID
    connection_id: UUID
    external_id: str | None
    baas_id: str | None
    display_name: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountResponse:
        return cls(
            id=account.id,
            connection_id=account.connection_id,
            external_id=_revealed(account.external_id),
            baas_id=_revealed(account.baas_id),
            display_name=account.display_name,
            metadata=dict(account.metadata),
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class AccountListResponse(Strict):
    items: list[AccountResponse]
    next_cursor: str | None = Field(description="Pass as cursor to get the next page; null on the last page.")

    @classmethod
    def of(cls, page: AccountPage) -> AccountListResponse:
        return cls(items=[AccountResponse.of(a) for a in page.items], next_cursor=page.next_cursor)


def _revealed(value: Redacted[str] | None) -> str | None:
    return None if value is None else value.reveal()


class TokenResponse(Strict):
    """The credential, in the shape of its type. Served with ``Cache-Control: no-store``."""

    connection_id: UUID
    credential_type: AuthType
    access_token: str | None = None
    token_type: str | None = None
    expires_at: datetime | None = None
    min_ttl_met: bool | None = Field(
        default=None,
        description="OAuth only. False when the provider's tokens live shorter than the min_ttl asked for: this is "
        "then the freshest token the provider gives (refreshed once past half its life), not one refreshed per call.",
    )
    scopes: list[str] = Field(default_factory=list)
    api_key: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def of(cls, issued: IssuedCredential) -> TokenResponse:
        credentials = issued.credentials
        common = {"connection_id": issued.connection_id, "credential_type": credentials.type}
        match credentials:
            case OAuth2Credentials(access_token=token):
                return cls(
                    **common,
                    access_token=token.reveal(),
                    token_type=issued.token_type or "Bearer",
                    expires_at=issued.expires_at,
                    min_ttl_met=issued.min_ttl_met,
                    scopes=list(issued.scopes),
                )
            case ApiKeyCredentials(api_key=key):
                return cls(**common, api_key=key.reveal())
            case BasicCredentials(username=username, password=password):
                return cls(**common, username=username, password=password.reveal())
