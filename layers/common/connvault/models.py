"""Domain objects: plain dataclasses with the behaviour that belongs to them, no ORM and no I/O.

Secrets travel inside ``Redacted`` so that no ``repr``, log line or traceback can show them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from connvault.connection_status import ConnectionStatus as ConnectionStatus
from connvault.errors import DecryptionFailed
from connvault.redacted import Redacted

PROVIDER_SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""What a provider's slug looks like, wherever one is read: the catalog, the API's paths and bodies, and the
``providers.slug`` CHECK constraint (a test compares them)."""


class AuthType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    BASIC = "basic"


class TokenEndpointAuthMethod(StrEnum):
    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"


class ClientAuthMethod(StrEnum):
    """How a client authenticates at a token endpoint: the provider's two secret-based methods (see
    ``TokenEndpointAuthMethod``), or a JWT signed with the client's private key (RFC 7523 §2.2, OpenID
    ``private_key_jwt``), which a connection bringing its own client may choose."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"


class ConnectionKind(StrEnum):
    """How a connection got its credentials, and so how it gets new ones without its end user.

    ``authorization_code`` (the connect flow), ``device_code`` (RFC 8628) and ``imported`` hold a refresh
    token; ``client_credentials`` (RFC 6749 §4.4) and ``jwt_bearer`` (RFC 7523 §2.1) hold what mints tokens
    on demand; ``api_key`` and ``basic`` are stored as given and never renewed.
    """

    AUTHORIZATION_CODE = "authorization_code"
    DEVICE_CODE = "device_code"
    IMPORTED = "imported"
    CLIENT_CREDENTIALS = "client_credentials"
    JWT_BEARER = "jwt_bearer"
    API_KEY = "api_key"
    BASIC = "basic"


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


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key that signs JWT assertions, as PKCS#8 PEM, with the JWS algorithm it signs with
    (``RS256`` or ``ES256``) and the key id (``kid``) the server knows it by. Checked by
    ``connvault.oauth.assertions.parse_signing_key`` before it is ever stored."""

    pem: Redacted[str]
    algorithm: str
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """A tenant's OAuth app at a provider, as the token endpoint needs it.

    ``private_key`` and ``auth_method`` are set only for a client a connection brought itself: then
    ``auth_method`` says how it authenticates (``private_key_jwt`` signs with ``private_key``) instead of the
    provider's ``token_endpoint_auth_method``.
    """

    client_id: str
    client_secret: Redacted[str] | None
    private_key: SigningKey | None = None
    auth_method: ClientAuthMethod | None = None


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
class OAuth2Tokens:
    """What a token endpoint answered, parsed.

    ``extra`` keeps the response's non-secret fields (e.g. Salesforce's instance_url) for metadata.
    """

    access_token: Redacted[str]
    token_type: str = "Bearer"
    refresh_token: Redacted[str] | None = None
    id_token: Redacted[str] | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    provider_account_id: Redacted[str] | None = None
    """The provider's id for the connected account, as the catalog's ``account_id_fields`` find it; None when
    the response does not carry one."""


@dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """What a client-credentials connection asks the token endpoint for (RFC 6749 §4.4) each time its token
    runs out. ``client`` None means the tenant's integration for the provider; ``token_url`` None means the
    provider's token endpoint."""

    client: ClientCredentials | None = None
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    resource: str | None = None
    token_url: str | None = None

    kind = ConnectionKind.CLIENT_CREDENTIALS


@dataclass(frozen=True, slots=True)
class JwtBearerGrant:
    """A service account: a key that signs an assertion (RFC 7523 §2.1) for each new access token.

    ``issuer`` is the assertion's ``iss`` (a Google service account's ``client_email``), ``subject`` its
    ``sub`` (the user a Google Workspace domain-wide delegation acts as), ``audience`` its ``aud`` (default: the
    token URL). ``token_url`` None means the provider's token endpoint.
    """

    issuer: str
    key: SigningKey
    subject: str | None = None
    audience: str | None = None
    scopes: tuple[str, ...] = ()
    token_url: str | None = None

    kind = ConnectionKind.JWT_BEARER


Grant = ClientCredentialsGrant | JwtBearerGrant
"""What mints a connection's tokens on demand, sealed with them; the end user plays no part."""


@dataclass(frozen=True, slots=True)
class OAuth2Credentials:
    """An access token and what renews it: a ``refresh_token``, or a ``grant`` that mints new tokens.

    ``access_token`` is None only for an imported grant stored without one; its expiry is then "now", so
    the first fetch refreshes before anything is handed out.
    """

    access_token: Redacted[str] | None
    refresh_token: Redacted[str] | None = None
    id_token: Redacted[str] | None = None
    grant: Grant | None = None

    type = AuthType.OAUTH2

    @property
    def renewable(self) -> bool:
        """Whether new tokens can be had without the end user."""
        return self.refresh_token is not None or self.grant is not None

    def revocation_target(self) -> tuple[Redacted[str], str]:
        """What to revoke (RFC 7009) and its ``token_type_hint``: the refresh token, which takes the grant with
        it, else the access token. Stored credentials always hold one of them (only an imported grant comes
        without an access token, and it has a refresh token)."""
        if self.refresh_token is not None:
            return self.refresh_token, "refresh_token"
        if self.access_token is None:
            raise ValueError("the credentials hold no token")
        return self.access_token, "access_token"

    def with_refreshed(self, tokens: OAuth2Tokens) -> OAuth2Credentials:
        """The credentials after a refresh: a provider that did not rotate keeps the old refresh token. A
        grant's answer never adds a refresh token: the grant itself renews, and an unused secret is not kept."""
        if self.grant is not None:
            return OAuth2Credentials(access_token=tokens.access_token, id_token=tokens.id_token, grant=self.grant)
        return OAuth2Credentials(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token or self.refresh_token,
            id_token=tokens.id_token or self.id_token,
        )


@dataclass(frozen=True, slots=True)
class ApiKeyCredentials:
    api_key: Redacted[str]

    type = AuthType.API_KEY


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: Redacted[str]

    type = AuthType.BASIC


Credentials = OAuth2Credentials | ApiKeyCredentials | BasicCredentials


def credentials_to_bytes(credentials: Credentials) -> bytes:
    """The plaintext that gets sealed: a small JSON document with a type tag."""
    doc: dict[str, Any]
    match credentials:
        case OAuth2Credentials(access_token=access, refresh_token=refresh, id_token=id_token, grant=grant):
            doc = {"type": AuthType.OAUTH2}
            if access is not None:
                doc["access_token"] = access.reveal()
            if refresh is not None:
                doc["refresh_token"] = refresh.reveal()
            if id_token is not None:
                doc["id_token"] = id_token.reveal()
            if grant is not None:
                doc["grant"] = _grant_document(grant)
        case ApiKeyCredentials(api_key=key):
            doc = {"type": AuthType.API_KEY, "api_key": key.reveal()}
        case BasicCredentials(username=username, password=password):
            doc = {"type": AuthType.BASIC, "username": username, "password": password.reveal()}
    return json.dumps(doc, separators=(",", ":")).encode()


def credentials_from_bytes(data: bytes) -> Credentials:
    """Inverse of ``credentials_to_bytes``; a document it cannot read is a ``DecryptionFailed``."""
    try:
        doc = json.loads(data)
        kind = AuthType(doc["type"])
        if kind is AuthType.OAUTH2:
            return OAuth2Credentials(
                access_token=Redacted(doc["access_token"]) if "access_token" in doc else None,
                refresh_token=Redacted(doc["refresh_token"]) if "refresh_token" in doc else None,
                id_token=Redacted(doc["id_token"]) if "id_token" in doc else None,
                grant=_grant_from_document(doc["grant"]) if "grant" in doc else None,
            )
        if kind is AuthType.API_KEY:
            return ApiKeyCredentials(api_key=Redacted(doc["api_key"]))
        return BasicCredentials(username=doc["username"], password=Redacted(doc["password"]))
    except (ValueError, KeyError, TypeError):
        # ``from None``: the parser's own exception may quote the plaintext, which is a secret.
        raise DecryptionFailed("sealed credentials are not readable") from None


def _grant_document(grant: Grant) -> dict[str, Any]:
    match grant:
        case ClientCredentialsGrant(client=client, scopes=scopes, audience=audience, resource=resource, token_url=url):
            doc: dict[str, Any] = {"kind": grant.kind, "scopes": list(scopes)}
            if client is not None:
                doc["client"] = _client_document(client)
            for name, value in (("audience", audience), ("resource", resource), ("token_url", url)):
                if value is not None:
                    doc[name] = value
        case JwtBearerGrant(issuer=issuer, key=key, subject=subject, audience=audience, scopes=scopes, token_url=url):
            doc = {"kind": grant.kind, "issuer": issuer, "key": _key_document(key), "scopes": list(scopes)}
            for name, value in (("subject", subject), ("audience", audience), ("token_url", url)):
                if value is not None:
                    doc[name] = value
    return doc


def _client_document(client: ClientCredentials) -> dict[str, Any]:
    doc: dict[str, Any] = {"client_id": client.client_id}
    if client.client_secret is not None:
        doc["client_secret"] = client.client_secret.reveal()
    if client.private_key is not None:
        doc["private_key"] = _key_document(client.private_key)
    if client.auth_method is not None:
        doc["auth_method"] = client.auth_method.value
    return doc


def _key_document(key: SigningKey) -> dict[str, Any]:
    return {"pem": key.pem.reveal(), "algorithm": key.algorithm, "key_id": key.key_id}


def _grant_from_document(doc: dict[str, Any]) -> Grant:
    kind = ConnectionKind(doc["kind"])
    if kind is ConnectionKind.CLIENT_CREDENTIALS:
        client = doc.get("client")
        return ClientCredentialsGrant(
            client=None if client is None else _client_from_document(client),
            scopes=tuple(doc["scopes"]),
            audience=doc.get("audience"),
            resource=doc.get("resource"),
            token_url=doc.get("token_url"),
        )
    if kind is ConnectionKind.JWT_BEARER:
        return JwtBearerGrant(
            issuer=doc["issuer"],
            key=_key_from_document(doc["key"]),
            subject=doc.get("subject"),
            audience=doc.get("audience"),
            scopes=tuple(doc["scopes"]),
            token_url=doc.get("token_url"),
        )
    raise ValueError("not a grant kind")


def _client_from_document(doc: dict[str, Any]) -> ClientCredentials:
    secret = doc.get("client_secret")
    key = doc.get("private_key")
    method = doc.get("auth_method")
    return ClientCredentials(
        client_id=doc["client_id"],
        client_secret=None if secret is None else Redacted(secret),
        private_key=None if key is None else _key_from_document(key),
        auth_method=None if method is None else ClientAuthMethod(method),
    )


def _key_from_document(doc: dict[str, Any]) -> SigningKey:
    return SigningKey(pem=Redacted(doc["pem"]), algorithm=doc["algorithm"], key_id=doc.get("key_id"))


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


def needs_refresh(expires_at: datetime | None, now: datetime, ttl_seconds: int) -> bool:
    """Whether a token must be renewed before it is handed out with at least ``ttl_seconds`` left.

    A token without an expiry never needs a refresh: providers such as GitHub OAuth apps issue those.
    """
    return expires_at is not None and expires_at <= now + timedelta(seconds=ttl_seconds)


SATISFIABLE_SHARE = 0.9
"""A ``min_ttl`` up to this share of a token's lifetime is met by refreshing; past it, a fresh token would
satisfy it for moments only, so the caller gets the freshest token instead (``min_ttl_met`` false)."""


def refresh_ttl(min_ttl: int, margin: int, issued_at: datetime | None, expires_at: datetime | None) -> int:
    """How long the token handed out must stay valid, or it is refreshed first.

    Without a known lifetime, the larger of the caller's ``min_ttl`` and the provider's refresh ``margin``.
    With one, neither may ask what the provider cannot give: a provider issuing 60-second tokens cannot
    satisfy a 300-second margin or a one-hour ``min_ttl``, and asking would refresh on every fetch without
    ever getting there. So the margin is capped at half the lifetime (a token is used for at least half its
    life), and a ``min_ttl`` beyond ``SATISFIABLE_SHARE`` of it settles for the same: the freshest token.
    """
    if issued_at is None or expires_at is None:
        return max(min_ttl, margin)
    lifetime = max((expires_at - issued_at).total_seconds(), 0.0)
    half = int(lifetime // 2)
    wanted = min_ttl if min_ttl <= lifetime * SATISFIABLE_SHARE else half
    return max(min(margin, half), wanted)


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
