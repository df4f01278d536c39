"""A connection's credentials, as fetch hands them out and the vault seals them: the shapes (OAuth2 tokens and what
renews them, API keys, basic logins), their sealed plaintext, and the freshness rules a fetch applies.

Apart from ``models`` because token fetch needs these and nothing else of the domain at cold start (every
dataclass costs about a millisecond to build at import). ``models`` re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from connvault.errors import DecryptionFailed
from connvault.redacted import Redacted


class AuthType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    BASIC = "basic"


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

    @property
    def renews_with_own_client(self) -> bool:
        """Whether new tokens come through a client or key of its own (a service account, a client-credentials
        grant that brought its client), never the tenant's integration."""
        grant = self.grant
        return isinstance(grant, JwtBearerGrant) or (
            isinstance(grant, ClientCredentialsGrant) and grant.client is not None
        )

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
