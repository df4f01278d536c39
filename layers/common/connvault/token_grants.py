"""What renews a connection's tokens without its end user, sealed inside its ``OAuth2Credentials``: a grant that
mints tokens on demand (client credentials, RFC 6749 §4.4; a service account's signed assertion, RFC 7523 §2.1),
the client and key it uses, their part of the sealed plaintext, and the kinds of connection (how each renews).

Apart from ``credentials`` because a token fetch of a connection that holds no grant (a connect, an import, an API
key) never needs them, and building their classes cost ~7 ms of the token function's cold start.
``credentials`` imports this module only when it reads or writes a grant; ``models`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from connvault.redacted import Redacted


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

    @property
    def brings_own_client(self) -> bool:
        """Whether it asks with a client of its own, not the tenant's integration."""
        return self.client is not None


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

    @property
    def brings_own_client(self) -> bool:
        """Always: it signs with its own key."""
        return True


Grant = ClientCredentialsGrant | JwtBearerGrant
"""What mints a connection's tokens on demand, sealed with them; the end user plays no part."""


def grant_document(grant: Grant) -> dict[str, Any]:
    """The grant's part of the sealed plaintext (``credentials_to_bytes``)."""
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


def grant_from_document(doc: dict[str, Any]) -> Grant:
    """Inverse of ``grant_document``; raises what ``credentials_from_bytes`` turns into ``DecryptionFailed``."""
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
