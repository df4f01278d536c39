"""Connections made from credentials the tenant hands over rather than from the connect flow: an OAuth grant
made elsewhere (``imported``), a client's own credentials (``client_credentials``, RFC 6749 §4.4) and a
service account's key (``jwt_bearer``, RFC 7523 §2.1).

Each is tried at the provider before anything is stored: an imported grant is refreshed at once (unless the
tenant says ``verify=False``), the other two get their first token. A refusal is ``CredentialsRefused``
naming the field at fault, and nothing is stored; no transaction is open during the provider call. What is
stored is what renews the connection, sealed with its tokens; from then on it is renewed by the refresh
engine like any other (``services/renewal.py``), served by the token route and kept fresh by the scheduler.

``prepare_*`` check the input without I/O and say what to ask the provider; ``create_connection`` does the
rest. The bulk import (``services/imports.py``) runs the same preparation and provider call per item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connvault import connection_config, wiring
from connvault.clock import Clock, utcnow
from connvault.db.connections import NewConnection, NewCredentials
from connvault.db.tenants import Resource
from connvault.errors import (
    ClientRejected,
    Conflict,
    CredentialsRefused,
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    ProviderRejected,
    ReauthRequired,
)
from connvault.models import (
    AuthType,
    ClientAuthMethod,
    ClientCredentials,
    ClientCredentialsGrant,
    ConfigSource,
    ConnectionKind,
    JwtBearerGrant,
    OAuth2Credentials,
)
from connvault.oauth.assertions import parse_signing_key
from connvault.observability import MetricName, logger, metrics
from connvault.services import quotas
from connvault.services.connections import check_metadata
from connvault.services.leases import ProviderApp
from connvault.services.renewal import Renewal, renew, revoking_client
from connvault.validation import is_oauth_token, require_outbound_url, require_scopes, require_text, require_url

if TYPE_CHECKING:
    from connvault.db.uow import UnitOfWork
    from connvault.models import Connection, SigningKey
    from connvault.oauth.client import OAuthClient
    from connvault.redacted import Redacted
from connvault.retry import doubling, retry

MAX_TOKEN_LENGTH = 8192
MAX_CLIENT_SECRET_LENGTH = 4096
MAX_NAME_LENGTH = 512
"""Client ids, service-account e-mails (``iss``) and subjects."""
MAX_AUDIENCE_LENGTH = 2048
MAX_TOKEN_TYPE_LENGTH = 64
STORE_ATTEMPTS = 3
"""A store that follows a provider call is retried: a refreshed grant may exist nowhere else any more."""


@dataclass(frozen=True, slots=True)
class Target:
    """The account a new connection is for, and the tenant's metadata about it."""

    provider: str
    end_user_id: str
    alias: str = ""
    metadata: Mapping[str, Any] | None = None
    connection_config: Mapping[str, object] | None = None
    """Values for the provider's URL placeholders (an Okta subdomain), as the tenant sent them."""


@dataclass(frozen=True, slots=True)
class ImportedGrantInput:
    """An OAuth 2 grant made elsewhere. Without ``expires_at`` the access token counts as expired (the first
    fetch refreshes), since a grant moved between vaults seldom comes with an access token worth trusting."""

    target: Target
    refresh_token: Redacted[str]
    access_token: Redacted[str] | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] | None = None
    token_type: str | None = None
    verify: bool = True


@dataclass(frozen=True, slots=True)
class ClientCredentialsInput:
    """A client-credentials connection: the client is the tenant's integration for the provider, or its own
    (``client_id`` with ``client_secret`` or ``private_key``), Nango-style. ``token_url`` (its own endpoint)
    needs its own client: the integration's secret goes nowhere but the provider's endpoint."""

    target: Target
    client_id: str | None = None
    client_secret: Redacted[str] | None = None
    private_key: Redacted[str] | None = None
    key_id: str | None = None
    auth_method: ClientAuthMethod | None = None
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    resource: str | None = None
    token_url: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccountInput:
    """A service account: a Google service-account JSON key (``client_email``, ``private_key``,
    ``private_key_id``, ``token_uri``), or ``issuer`` and ``private_key`` for any RFC 7523 server."""

    target: Target
    service_account_key: Redacted[Mapping[str, Any]] | None = None
    issuer: str | None = None
    private_key: Redacted[str] | None = None
    key_id: str | None = None
    subject: str | None = None
    audience: str | None = None
    scopes: tuple[str, ...] = ()
    token_url: str | None = None


NewGrantInput = ImportedGrantInput | ClientCredentialsInput | ServiceAccountInput


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked request: the account, what to try at the provider, and what a refusal blames."""

    target: Target
    kind: ConnectionKind
    credentials: OAuth2Credentials
    verify: bool
    refused_field: str
    needs_integration: bool
    expires_at: datetime | None = None
    token_type: str | None = None
    scopes: tuple[str, ...] = ()
    connection_config: Mapping[str, str] | None = None
    """``target.connection_config`` checked against the provider (``configure``): what the row keeps."""


def create_connection(
    uow: UnitOfWork, data: NewGrantInput, *, oauth: OAuthClient | None = None, now: Clock = utcnow
) -> Connection:
    """Check ``data`` with the provider and store the connection it makes.

    Raises InvalidInput (the field at fault), CredentialsRefused (the provider refused the credentials),
    Conflict (the provider, end user and alias have a connection already), QuotaExceeded (the tenant holds its
    quota of connections; checked before any provider call), ProviderUnavailable (retry later; nothing stored).
    """
    prepared = prepare(data, now())
    with uow:
        prepared, app = configure(prepared, resolve(uow, prepared))
        if uow.connections.find_by_unique(app.provider.id, *_account(prepared)) is not None:
            raise Conflict("a connection for this provider, end_user_id and alias exists already")
        quotas.require_room(uow, Resource.CONNECTIONS, now=now)
    client = oauth or wiring.get_oauth_client()
    renewal = try_at_provider(prepared, app, client, now())
    row = new_row(prepared, app, renewal, now())
    store(uow, [row])
    with uow:
        try:
            connection = uow.connections.get(row.id)
        except NotFound:
            connection = None
    if connection is None:  # another request stored the account between our check and our insert
        if renewal is not None:
            abandon(renewal, prepared, app, client)
        raise Conflict("a connection for this provider, end_user_id and alias exists already")
    logger.info(
        "connection created",
        extra={"connection_id": str(connection.id), "provider": connection.provider_slug, "kind": prepared.kind},
    )
    return connection


def prepare(data: NewGrantInput, now: datetime) -> Prepared:
    """Check everything that needs no I/O; ``InvalidInput`` names the field at fault."""
    end_user_id = require_text(data.target.end_user_id, "end_user_id", max_length=255)
    alias = require_text(data.target.alias, "alias", max_length=100, min_length=0)
    metadata = dict(data.target.metadata or {})
    check_metadata(metadata)
    target = Target(data.target.provider, end_user_id, alias, metadata, data.target.connection_config)
    if isinstance(data, ImportedGrantInput):
        return _prepare_import(data, target, now)
    if isinstance(data, ClientCredentialsInput):
        return _prepare_client_credentials(data, target)
    return _prepare_service_account(data, target)


def resolve(uow: UnitOfWork, prepared: Prepared) -> ProviderApp:
    """The provider (an OAuth one) and the tenant's app there, which must exist where the connection renews as
    that app."""
    slug = prepared.target.provider
    try:
        provider = uow.providers.get_by_slug(slug)
    except NotFound:
        raise InvalidInput("unknown provider", field="provider") from None
    if provider.auth_type is not AuthType.OAUTH2:
        raise InvalidInput("the provider does not use OAuth; store its credentials as given", field="provider")
    integration = uow.integrations.find(provider.id)
    if integration is None and prepared.needs_integration:
        raise InvalidInput(
            "configure the provider's integration first (or give the connection its own client)", field="provider"
        )
    return ProviderApp(provider, integration)


def configure(prepared: Prepared, app: ProviderApp) -> tuple[Prepared, ProviderApp]:
    """The connection's values for its provider's URL placeholders, checked (``InvalidInput`` naming the key), and
    the app with them filled in: the first renewal goes to the connection's own host, as every later one will
    (``ProviderApp.endpoints``), and the row keeps the values with its grant."""
    config = connection_config.tenant_config(app.provider, prepared.target.connection_config)
    if not prepared.verify and any(key.source is ConfigSource.TOKEN_RESPONSE for key in app.provider.connection_config):
        # Its API host comes only with a token response: unverified, the connection would have none.
        raise InvalidInput(
            f"provider {app.provider.slug!r} names its API host in its token responses: import with verify",
            field="verify",
        )
    configured = replace(app, provider=connection_config.configured(app.provider, config))
    return replace(prepared, connection_config=config), configured


def try_at_provider(prepared: Prepared, app: ProviderApp, oauth: OAuthClient, now: datetime) -> Renewal | None:
    """The first renewal (None when the tenant said not to verify). A refusal is ``CredentialsRefused`` on the
    field at fault; ``ProviderUnavailable`` passes through (retry later). An answer without the values the
    provider must give in its token response (Salesforce's ``instance_url``), or with one outside its declared
    domains, is refused too, and what it granted revoked: a connection with no usable API host is not kept."""
    if not prepared.verify:
        return None
    try:
        renewal = renew(prepared.credentials, app.provider, app.integration, oauth, now)
    except (ReauthRequired, ProviderRejected) as exc:
        metrics.add_metric(name=MetricName.CREDENTIALS_REFUSED, unit="Count", value=1)
        reason = exc.reason or exc.code
        # ``ClientRejected``: the integration's client, not what this request brought (``renewal.renew``).
        refused = "provider" if isinstance(exc, ClientRejected) else prepared.refused_field
        what = "integration's client" if isinstance(exc, ClientRejected) else prepared.refused_field
        raise CredentialsRefused(
            f"the provider refused the {what} ({reason}); nothing was stored", field=refused, reason=reason
        ) from None
    try:
        connection_config.token_response_config(app.provider, renewal.tokens.extra)
    except InvalidInput as exc:
        abandon(renewal, prepared, app, oauth)
        metrics.add_metric(name=MetricName.CREDENTIALS_REFUSED, unit="Count", value=1)
        raise CredentialsRefused(
            f"the provider's token response gave no usable {exc.field}; what it granted was revoked, nothing stored",
            field="provider",
            reason="invalid_token_response",
        ) from None
    return renewal


def new_row(prepared: Prepared, app: ProviderApp, renewal: Renewal | None, at: datetime) -> NewConnection:
    """The connection to insert: the provider's answer when there was one, else the grant as given."""
    if renewal is None:
        grant = NewCredentials(
            credentials=prepared.credentials,
            token_type=prepared.token_type or "Bearer",
            scopes=prepared.scopes,
            # An access token without its expiry is taken as expired: the first fetch refreshes it.
            expires_at=(prepared.expires_at if prepared.credentials.access_token is not None else None) or at,
            connection_config=prepared.connection_config,
        )
    else:
        tokens = renewal.tokens
        answered = NewCredentials.answered(renewal.credentials, tokens, prepared.scopes)
        # The token response's values (checked by ``try_at_provider``) join the tenant's, as a connect keeps them.
        config = {
            **(prepared.connection_config or {}),
            **connection_config.token_response_config(app.provider, tokens.extra),
        }
        grant = replace(answered, connection_config=config)
    return NewConnection(
        provider_id=app.provider.id,
        end_user_id=prepared.target.end_user_id,
        alias=prepared.target.alias,
        grant=grant,
        granted_at=at,
        metadata=prepared.target.metadata or {},
        kind=prepared.kind,
    )


def store(uow: UnitOfWork, rows: list[NewConnection]) -> None:
    """Insert ``rows``, skipping accounts stored meanwhile; the caller then finds which rows are its own by id.

    Retried on a database error, since what a provider answered may exist nowhere else (a rotated refresh
    token). A retry after a commit whose answer was lost inserts nothing more: the rows are there by their ids.
    """

    def insert() -> None:
        with uow:
            uow.connections.add_many(uow.tenant, rows)
            uow.commit()

    retry(insert, attempts=STORE_ATTEMPTS, on=(DatabaseUnavailable,), wait=doubling(0.2, 2.0))


def abandon(renewal: Renewal, prepared: Prepared, app: ProviderApp, oauth: OAuthClient) -> None:
    """Revoke what a provider call produced for a connection that was not stored after all (another request
    stored the account first). A refresh token given by the tenant and not rotated is left alone: the
    connection stored first may be using it."""
    tokens = renewal.tokens
    given = prepared.credentials.refresh_token
    rotated = tokens.refresh_token is not None and (given is None or tokens.refresh_token.reveal() != given.reveal())
    token, hint = (tokens.refresh_token, "refresh_token") if rotated else (tokens.access_token, "access_token")
    client = revoking_client(renewal.credentials, app.credentials)
    if token is not None and client is not None:
        oauth.revoke(app.provider, client, token.reveal(), hint)


def _account(prepared: Prepared) -> tuple[str, str]:
    return prepared.target.end_user_id, prepared.target.alias


# -- the kinds ---------------------------------------------------------------------------------------------------


def _prepare_import(data: ImportedGrantInput, target: Target, now: datetime) -> Prepared:
    refresh_token = _imported_token(data.refresh_token, "refresh_token")
    access_token = data.access_token
    if access_token is not None:
        _imported_token(access_token, "access_token")
    if data.expires_at is not None and data.expires_at.tzinfo is None:
        raise InvalidInput("expires_at needs a time zone (e.g. 2026-01-31T00:00:00Z)", field="expires_at")
    token_type = _optional_text(data.token_type, "token_type", MAX_TOKEN_TYPE_LENGTH)
    return Prepared(
        target=target,
        kind=ConnectionKind.IMPORTED,
        credentials=OAuth2Credentials(access_token=access_token, refresh_token=refresh_token),
        verify=data.verify,
        refused_field="refresh_token",
        needs_integration=True,
        expires_at=data.expires_at,
        token_type=token_type,
        scopes=require_scopes(data.scopes or ()),
    )


def _prepare_client_credentials(data: ClientCredentialsInput, target: Target) -> Prepared:
    client = _own_client(data)
    if data.token_url is not None and client is None:
        raise InvalidInput(
            "token_url needs the connection's own client_id and client_secret or private_key: the integration's "
            "secret goes to the provider's token endpoint only",
            field="token_url",
        )
    grant = ClientCredentialsGrant(
        client=client,
        scopes=require_scopes(data.scopes),
        audience=_optional_text(data.audience, "audience", MAX_AUDIENCE_LENGTH),
        resource=None if data.resource is None else require_url(data.resource, "resource"),
        token_url=None if data.token_url is None else require_outbound_url(data.token_url, "token_url"),
    )
    blamed = "client_secret"
    if client is not None and client.private_key is not None:
        blamed = "private_key"
    return Prepared(
        target=target,
        kind=ConnectionKind.CLIENT_CREDENTIALS,
        credentials=OAuth2Credentials(access_token=None, grant=grant),
        verify=True,
        refused_field=blamed,
        needs_integration=client is None,
        scopes=grant.scopes,
    )


def _own_client(data: ClientCredentialsInput) -> ClientCredentials | None:
    """The connection's own client, or None to use the integration's; every half-given combination is refused."""
    if data.client_id is None:
        for name in ("client_secret", "private_key", "key_id", "auth_method"):
            if getattr(data, name) is not None:
                raise InvalidInput(f"{name} needs client_id", field="client_id")
        return None
    client_id = require_text(data.client_id, "client_id", max_length=MAX_NAME_LENGTH)
    if (data.client_secret is None) == (data.private_key is None):
        raise InvalidInput("give client_secret or private_key with client_id (one of them)", field="client_secret")
    if data.private_key is not None:
        if data.auth_method not in (None, ClientAuthMethod.PRIVATE_KEY_JWT):
            raise InvalidInput("a private_key authenticates with private_key_jwt", field="token_endpoint_auth_method")
        key = parse_signing_key(data.private_key.reveal(), "private_key", key_id=data.key_id)
        return ClientCredentials(client_id, None, private_key=key, auth_method=ClientAuthMethod.PRIVATE_KEY_JWT)
    if data.key_id is not None:
        raise InvalidInput("key_id goes with private_key", field="key_id")
    if data.auth_method is ClientAuthMethod.PRIVATE_KEY_JWT:
        raise InvalidInput("private_key_jwt needs private_key", field="private_key")
    secret = _secret_text(data.client_secret, "client_secret", MAX_CLIENT_SECRET_LENGTH)
    return ClientCredentials(client_id, secret, auth_method=data.auth_method)


def _prepare_service_account(data: ServiceAccountInput, target: Target) -> Prepared:
    issuer, key, token_url = _service_account_identity(data)
    grant = JwtBearerGrant(
        issuer=issuer,
        key=key,
        subject=_optional_text(data.subject, "subject", MAX_NAME_LENGTH),
        audience=_optional_text(data.audience, "audience", MAX_AUDIENCE_LENGTH),
        scopes=require_scopes(data.scopes),
        token_url=token_url,
    )
    return Prepared(
        target=target,
        kind=ConnectionKind.JWT_BEARER,
        credentials=OAuth2Credentials(access_token=None, grant=grant),
        verify=True,
        refused_field="service_account_key" if data.service_account_key is not None else "private_key",
        needs_integration=False,
        scopes=grant.scopes,
    )


def _service_account_identity(data: ServiceAccountInput) -> tuple[str, SigningKey, str | None]:
    """``(iss, key, token_url)`` from the JSON key or from the separate fields, never from both."""
    separate = {"issuer": data.issuer, "private_key": data.private_key, "key_id": data.key_id}
    if data.service_account_key is not None:
        given = sorted(name for name, value in separate.items() if value is not None)
        if given:
            raise InvalidInput(f"{given[0]} comes from service_account_key; give one or the other", field=given[0])
        return _from_key_file(data.service_account_key.reveal(), data.token_url)
    if data.issuer is None:
        raise InvalidInput("give service_account_key, or issuer and private_key", field="issuer")
    if data.private_key is None:
        raise InvalidInput("give service_account_key, or issuer and private_key", field="private_key")
    issuer = require_text(data.issuer, "issuer", max_length=MAX_NAME_LENGTH)
    key = parse_signing_key(data.private_key.reveal(), "private_key", key_id=data.key_id)
    token_url = None if data.token_url is None else require_outbound_url(data.token_url, "token_url")
    return issuer, key, token_url


def _from_key_file(document: Mapping[str, Any], token_url: str | None) -> tuple[str, SigningKey, str | None]:
    """A Google service-account JSON key: the fields that sign an assertion, and the endpoint it names."""
    prefix = "service_account_key"
    if not isinstance(document, Mapping):
        raise InvalidInput(f"{prefix} must be the key file's JSON object", field=prefix)
    kind = document.get("type", "service_account")
    if kind != "service_account":
        raise InvalidInput(f"{prefix} is not a service account key (type)", field=f"{prefix}.type")
    email = document.get("client_email")
    if not isinstance(email, str):
        raise InvalidInput(f"{prefix} has no client_email", field=f"{prefix}.client_email")
    issuer = require_text(email, f"{prefix}.client_email", max_length=MAX_NAME_LENGTH)
    pem = document.get("private_key")
    if not isinstance(pem, str):
        raise InvalidInput(f"{prefix} has no private_key", field=f"{prefix}.private_key")
    key_id = document.get("private_key_id")
    if key_id is not None and not isinstance(key_id, str):
        raise InvalidInput(f"{prefix}.private_key_id must be a string", field=f"{prefix}.private_key_id")
    key = parse_signing_key(pem, f"{prefix}.private_key", key_id=key_id)
    named = document.get("token_uri")
    if named is not None and not isinstance(named, str):
        raise InvalidInput(f"{prefix}.token_uri must be a URL", field=f"{prefix}.token_uri")
    if token_url is not None and named is not None and named != token_url:
        raise InvalidInput("token_url and the key's token_uri differ; give one", field="token_url")
    chosen = token_url or named
    field_name = "token_url" if token_url is not None else f"{prefix}.token_uri"
    return issuer, key, None if chosen is None else require_outbound_url(chosen, field_name)


def _secret_text(value: Redacted[str] | None, name: str, max_length: int) -> Redacted[str]:
    if value is None:
        raise InvalidInput(f"{name} is required", field=name)
    require_text(value.reveal(), name, max_length=max_length)
    return value


def _imported_token(value: Redacted[str], name: str) -> Redacted[str]:
    """A token as RFC 6749 spells one (``validation.is_oauth_token``): it will be sent in headers as it is."""
    if not is_oauth_token(value.reveal(), max_length=MAX_TOKEN_LENGTH):
        raise InvalidInput(f"{name} must be 1 to {MAX_TOKEN_LENGTH} printable ASCII characters", field=name)
    return value


def _optional_text(value: str | None, name: str, max_length: int) -> str | None:
    return None if value is None else require_text(value, name, max_length=max_length)
