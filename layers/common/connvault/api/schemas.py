"""The API contract: pydantic ``*Request`` and ``*Response`` models, from which the OpenAPI document is built.

Responses are built from domain objects explicitly (``of``); they never carry a secret, except
``TokenResponse``, the one response that exists to hand one out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    Tag,
    WithJsonSchema,
    model_validator,
)

from connvault.models import (
    PROVIDER_SLUG,
    Account,
    ApiKeyCredentials,
    AuthType,
    BasicCredentials,
    ClientAuthMethod,
    ConfigKey,
    ConfigKind,
    ConfigSource,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    DeviceSession,
    DeviceSessionStatus,
    Integration,
    IntegrationStatus,
    OAuth2Credentials,
    Provider,
    RevocationScope,
    TokenEndpointAuthMethod,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

    from connvault.models import Account, Connection, ConnectSettings, Page
    from connvault.redacted import Redacted
    from connvault.services.connect_links import StartedSession
    from connvault.services.connections import Deletion
    from connvault.services.imports import ItemResult
    from connvault.services.tokens import IssuedCredential

Slug = Annotated[str, Field(pattern=PROVIDER_SLUG, examples=["google"])]
EndUserId = Annotated[str, Field(min_length=1, max_length=255, examples=["user-42"])]
Alias = Annotated[str, Field(max_length=100)]
Scope = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
EARLIEST_INSTANT = datetime(1, 1, 2, tzinfo=UTC)
LATEST_INSTANT = datetime(9999, 1, 1, tzinfo=UTC)


def _representable(moment: datetime) -> datetime:
    """An instant every layer can hold: in UTC, from the second day of year 1 to before year 9999. An offset
    carries an edge date past year 9999 or before year 1 (the driver's conversion to UTC overflows: a 500), and a
    time late in 9999 reads back from its epoch as year 10000 (a connection no fetch could read)."""
    try:
        utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError(_NOT_REPRESENTABLE) from None
    if not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        raise ValueError(_NOT_REPRESENTABLE)
    return moment


_NOT_REPRESENTABLE = "the time must fall between the years 1 and 9998 in UTC"


Instant = Annotated[datetime, AfterValidator(_representable)]
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
    """Every model of the API: unknown keys are refused, not ignored.

    A request's booleans and integers are ``StrictBool`` and ``StrictInt``: JSON ``true`` / ``false`` and whole
    numbers only, as the OpenAPI document says. Pydantic's default would take ``"off"``, ``"n"``, ``0`` and ``1`` as
    booleans and ``"60"``, ``true`` and ``60.0`` as integers, and several booleans here are security switches
    (``verify``, ``pkce``, ``require_iss``, ``require_confirmation``): a switch the client did not spell as one is a
    400, not a guess. Not ``strict=True`` on the whole model: that would refuse the JSON strings that ids, times and
    enumerations arrive as (the resolver validates the decoded body, not JSON text). Query parameters are text by
    nature and stay lax."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(Strict):
    code: str = Field(examples=["not_found"])
    message: str
    field: str | None = None


class ErrorResponse(Strict):
    error: ErrorBody


def error_response(description: str) -> OpenAPIResponse:
    """An error status of a route's OpenAPI ``responses``: its description over the one error body."""
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


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
    require_confirmation: StrictBool = Field(
        default=False,
        description="Park the grant until your backend confirms it: the end user comes back to return_url (required "
        "then) with connect_session_id and a one-time confirmation code; check that the user signed in is the one "
        "you started the session for, then POST /connect-sessions/{id}/confirm. Unconfirmed grants are revoked "
        "at the provider once the session expires. For one OAuth provider only; the answer then has no "
        "connect_url (the connect page does not offer confirmation).",
    )
    connection_config: ConnectionConfig | None = None
    flow: Literal["redirect", "device"] = Field(
        default="redirect",
        description="redirect: the end user's browser goes to connect_url or authorize_url. device (RFC 8628, for "
        "a CLI, a TV, an agent; one provider that offers a device flow): the answer is a user_code and a "
        "verification_uri to show the end user, who approves on any other device; follow the session with "
        "GET /connect-sessions/{id}.",
    )

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


class DeviceSessionResponse(Strict):
    """A device connect session (RFC 8628). Show ``user_code`` and ``verification_uri`` to the end user (or
    ``verification_uri_complete`` as a link or QR code, when the provider gives one); they approve on any device.

    connvault polls the provider itself, never faster than ``interval`` (raised when the provider says
    ``slow_down``), whether or not you ask: ``GET /connect-sessions/{id}`` says ``pending``, then ``completed``
    with ``connection_id``, or ``denied``, ``expired`` or ``failed`` with ``error``. The codes are shown only while
    the session is pending; treat them as secrets (whoever enters the user code approves with their own account).
    """

    id: UUID
    flow: Literal["device"] = "device"
    status: DeviceSessionStatus
    provider: str
    end_user_id: str
    alias: str
    user_code: str | None = Field(description="While pending: the code the end user enters.")
    verification_uri: str
    verification_uri_complete: str | None = Field(description="While pending, if the provider gives one.")
    expires_in: int = Field(description="Seconds left before the codes expire (0 once they have).")
    interval: int = Field(description="Seconds between polls of the provider (asking more often changes nothing).")
    expires_at: datetime
    connection_id: UUID | None = Field(description="When completed: the connection made (or reconnected).")
    error: str | None = Field(description="When denied, expired or failed: the provider's code, e.g. access_denied.")

    @classmethod
    def of(cls, session: DeviceSession, now: datetime) -> DeviceSessionResponse:
        codes = session.codes if session.status is DeviceSessionStatus.PENDING else None
        complete = None if codes is None else codes.verification_uri_complete
        return cls(
            id=session.id,
            status=session.status,
            provider=session.provider_slug,
            end_user_id=session.end_user_id,
            alias=session.alias,
            user_code=None if codes is None else codes.user_code.reveal(),
            verification_uri=session.verification_uri,
            verification_uri_complete=None if complete is None else complete.reveal(),
            expires_in=max(0, int((session.expires_at - now).total_seconds())),
            interval=session.interval_seconds,
            expires_at=session.expires_at,
            connection_id=session.connection_id,
            error=session.error_code,
        )


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
    device_flow: bool = Field(description="Whether connect sessions with flow device work for this provider.")

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
            device_flow=provider.device_authorization_url is not None,
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
    device_authorization_url: Url | None = Field(
        default=None, description="Without discovery_url only: the RFC 8628 device authorization endpoint."
    )
    require_iss: StrictBool | None = Field(
        default=None, description="Without discovery_url only: the callback must carry iss equal to issuer."
    )
    pkce: StrictBool | None = Field(default=None, description="Without discovery_url only; default true (S256).")
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = Field(
        default=None, description="Without discovery_url only; default client_secret_basic."
    )
    scope_separator: Literal[" ", ",", "+"] = " "
    authorize_params: dict[
        Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=1024)]
    ] = Field(default_factory=dict, max_length=20, description="Extra query parameters for the authorize URL.")
    refresh_margin_seconds: StrictInt | None = Field(
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
    device_authorization_url: str | None
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
            device_authorization_url=provider.device_authorization_url,
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
    """API-key or basic credentials, stored as given (``kind`` may be left out: the provider's type decides).

    Use it for providers whose auth_type is api_key or basic.
    """

    kind: Literal["api_key", "basic"] | None = None
    provider: Slug
    end_user_id: EndUserId
    alias: Alias = ""
    api_key: SecretStr | None = Field(default=None, max_length=8192)
    username: str | None = Field(default=None, max_length=512)
    password: SecretStr | None = Field(default=None, max_length=8192)
    metadata: dict[str, Any] | None = None
    provider_account_id: ProviderAccountId | None = None
    connection_config: ConnectionConfig | None = None


class ImportedGrant(Strict):
    """An OAuth 2 grant made elsewhere (another vault, your own code), taken over as it stands.

    Without ``expires_at`` the access token counts as expired and the first token fetch refreshes it.
    """

    provider: Slug
    end_user_id: EndUserId
    alias: Alias = ""
    refresh_token: SecretStr = Field(min_length=1, max_length=8192)
    access_token: SecretStr | None = Field(default=None, min_length=1, max_length=8192)
    expires_at: Instant | None = Field(default=None, description="When access_token expires (with a time zone).")
    scopes: list[Scope] | None = Field(default=None, max_length=100, description="The scopes the grant holds.")
    token_type: str | None = Field(default=None, min_length=1, max_length=64, examples=["Bearer"])
    metadata: dict[str, Any] | None = None
    connection_config: ConnectionConfig | None = None


class ImportedConnectionRequest(ImportedGrant):
    """Import one OAuth 2 grant; the provider's integration must be configured (refreshes use its client).

    With ``verify`` (the default) the grant is refreshed at once: a dead refresh token is 422
    ``credentials_refused`` and nothing is stored. At a provider that rotates refresh tokens this spends the
    one you sent: stop using it elsewhere first, or send ``verify: false`` to store the grant as given. A provider
    that names the connection's API host in its token responses (Salesforce's ``instance_url``) takes it from that
    refresh, so it cannot be imported with ``verify: false`` (400 on ``verify``).
    """

    kind: Literal["imported"]
    verify: StrictBool = True


class ClientCredentialsConnectionRequest(Strict):
    """A machine-to-machine connection (RFC 6749 §4.4): the token is the client's own, no end user involved.

    The client is the provider's integration, or the connection's own: ``client_id`` with ``client_secret``
    (authenticated as the provider says, or as ``token_endpoint_auth_method`` says) or with ``private_key``
    (``private_key_jwt``, RFC 7523 §2.2: a PEM RSA or EC P-256 key, ``key_id`` its ``kid``). The first token
    is requested at once: a refused client is 422 ``credentials_refused`` and nothing is stored. Later ones are
    requested when the token is within the provider's margin (or ``min_ttl``), once however many callers ask.
    """

    kind: Literal["client_credentials"]
    provider: Slug
    end_user_id: EndUserId = Field(description="Your id for what the token acts for (a workspace, a service).")
    alias: Alias = ""
    client_id: str | None = Field(default=None, min_length=1, max_length=512)
    client_secret: SecretStr | None = Field(default=None, min_length=1, max_length=4096)
    private_key: SecretStr | None = Field(default=None, min_length=1, max_length=16384)
    key_id: str | None = Field(default=None, min_length=1, max_length=256)
    token_endpoint_auth_method: ClientAuthMethod | None = None
    scopes: list[Scope] = Field(default_factory=list, max_length=100)
    audience: str | None = Field(default=None, min_length=1, max_length=2048, description="e.g. an Auth0 API.")
    resource: Url | None = Field(default=None, description="RFC 8707 resource indicator.")
    token_url: Url | None = Field(
        default=None, description="The token endpoint, if not the provider's; only with the connection's own client."
    )
    metadata: dict[str, Any] | None = None
    connection_config: ConnectionConfig | None = None


class ServiceAccountKey(Strict):
    """A Google service-account JSON key file as downloaded; fields other than these are ignored (a ``Strict``
    model all the same, so that errors may name its fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str | None = None
    client_email: str = Field(min_length=1, max_length=512)
    private_key: SecretStr = Field(min_length=1, max_length=16384)
    private_key_id: str | None = Field(default=None, min_length=1, max_length=256)
    token_uri: Url | None = None


class JwtBearerConnectionRequest(Strict):
    """A service account (RFC 7523 §2.1): each access token is bought with an assertion signed by its key.

    Give ``service_account_key`` (a Google JSON key), or ``issuer`` and ``private_key`` (PEM, RSA of 2048 to 4096
    bits for RS256, or EC P-256 for ES256) for any server taking JWT-bearer grants. ``subject`` is the
    assertion's ``sub`` (for Google Workspace domain-wide delegation, the user acted as). The key is sealed and
    never leaves the vault: the token route hands out access tokens only.
    """

    kind: Literal["jwt_bearer"]
    provider: Slug
    end_user_id: EndUserId
    alias: Alias = ""
    service_account_key: ServiceAccountKey | None = None
    issuer: str | None = Field(default=None, min_length=1, max_length=512)
    private_key: SecretStr | None = Field(default=None, min_length=1, max_length=16384)
    key_id: str | None = Field(default=None, min_length=1, max_length=256)
    subject: str | None = Field(default=None, min_length=1, max_length=512)
    audience: str | None = Field(default=None, min_length=1, max_length=2048)
    scopes: list[Scope] = Field(default_factory=list, max_length=100)
    token_url: Url | None = None
    metadata: dict[str, Any] | None = None
    connection_config: ConnectionConfig | None = None


NEW_CONNECTION_KINDS: dict[str, type[Strict]] = {
    "static": CreateConnectionRequest,
    "imported": ImportedConnectionRequest,
    "client_credentials": ClientCredentialsConnectionRequest,
    "jwt_bearer": JwtBearerConnectionRequest,
}
"""The body of POST /connections by tag. A ``kind`` that is absent, or that no tag names, is read as a static
body, whose ``kind`` check then names the field."""


def _kind_tag(body: object) -> str:
    kind = body.get("kind") if isinstance(body, dict) else getattr(body, "kind", None)
    return kind if isinstance(kind, str) and kind in NEW_CONNECTION_KINDS else "static"


NewConnectionRequest = Annotated[
    Annotated[CreateConnectionRequest, Tag("static")]
    | Annotated[ImportedConnectionRequest, Tag("imported")]
    | Annotated[ClientCredentialsConnectionRequest, Tag("client_credentials")]
    | Annotated[JwtBearerConnectionRequest, Tag("jwt_bearer")],
    Discriminator(_kind_tag),
    Body(),
]


class ImportConnectionsRequest(Strict):
    """Up to 1,000 grants (the fields of an ``imported`` connection, without ``kind``), each answered on its own.

    An item is checked on its own too: a malformed one (an item that is not a JSON object included) is answered
    ``invalid`` and the others go ahead.
    """

    verify: StrictBool = Field(
        default=True,
        description="Refresh each grant at once, as a single import does; each refresh counts against the "
        "tenant's rate limit, and items past it are deferred (rate_limited), not sent.",
    )
    # Any JSON value, so that an item that is no object is answered on its own rather than failing the call:
    # ``new_connections.import_items`` reads each item as an ``ImportedGrant``; the schema says what one should be.
    items: Annotated[
        list[Any],
        WithJsonSchema({"type": "array", "items": {"$ref": "#/components/schemas/ImportedGrant"}, "maxItems": 1000}),
    ] = Field(min_length=1, max_length=1000)


class ImportItemResponse(Strict):
    index: int = Field(description="The item's position in the request, from 0.")
    status: Literal["created", "exists", "invalid", "refused", "unavailable", "deferred", "quota_exceeded"] = Field(
        description="created; exists (the account had a connection: connection_id, left unchanged); invalid (fix "
        "field); refused (the provider refused the refresh token); unavailable (the provider failed: send it again "
        "later); deferred (not attempted in this call's time, or past the tenant's rate limit, code rate_limited: "
        "send it again); quota_exceeded (the tenant holds its quota of connections: nothing stored)."
    )
    connection_id: UUID | None = None
    error: ErrorBody | None = None
    retry_after: float | None = Field(
        default=None,
        description="With unavailable: seconds to wait, if the provider said; with deferred for rate_limited: "
        "seconds until the tenant's rate admits another item.",
    )

    @classmethod
    def of(cls, result: ItemResult) -> ImportItemResponse:
        error = None
        if result.code is not None:
            error = ErrorBody(code=result.code, message=result.message or result.code, field=result.field)
        return cls(
            index=result.index,
            status=result.status.value,
            connection_id=result.connection_id,
            error=error,
            retry_after=result.retry_after,
        )


class ImportConnectionsResponse(Strict):
    items: list[ImportItemResponse]
    counts: dict[str, int] = Field(description="How many items ended in each status.")

    @classmethod
    def of(cls, results: list[ItemResult]) -> ImportConnectionsResponse:
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
        return cls(items=[ImportItemResponse.of(result) for result in results], counts=counts)


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
    kind: ConnectionKind = Field(
        description="How the connection was made, and so how it renews: authorization_code, device_code and "
        "imported hold a refresh token; client_credentials and jwt_bearer mint tokens on demand; api_key and basic "
        "are stored as given."
    )
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
            kind=connection.kind,
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
    def of(cls, page: Page[Connection]) -> ConnectionListResponse:
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
    def of(cls, page: Page[Account]) -> AccountListResponse:
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
                # Only the access token: what renews it (a refresh token, a client secret, a service
                # account's key) never leaves the vault.
                return cls(
                    **common,
                    access_token=token.reveal() if token is not None else None,
                    token_type=issued.token_type or "Bearer",
                    expires_at=issued.expires_at,
                    min_ttl_met=issued.min_ttl_met,
                    scopes=list(issued.scopes),
                )
            case ApiKeyCredentials(api_key=key):
                return cls(**common, api_key=key.reveal())
            case BasicCredentials(username=username, password=password):
                return cls(**common, username=username, password=password.reveal())
