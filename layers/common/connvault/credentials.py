"""A connection's credentials, as fetch hands them out and the vault seals them: the shapes (OAuth2 tokens, API keys,
basic logins), their sealed plaintext, and the freshness rules a fetch applies. What renews tokens without the end
user (a grant, its client or key) is in ``token_grants``, loaded only by credentials that hold one.

Apart from ``models`` because token fetch needs these and nothing else of the domain at cold start (every
dataclass costs about a millisecond to build at import). ``models`` re-exports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from connvault.errors import DecryptionFailed
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from connvault.oauth.tokens import OAuth2Tokens
    from connvault.token_grants import Grant


class AuthType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    BASIC = "basic"


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
        return self.grant is not None and self.grant.brings_own_client

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
                from connvault.token_grants import grant_document  # only a grant's credentials load its classes

                doc["grant"] = grant_document(grant)
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
            grant = None
            if "grant" in doc:
                from connvault.token_grants import grant_from_document  # only a grant's credentials load its classes

                grant = grant_from_document(doc["grant"])
            return OAuth2Credentials(
                access_token=Redacted(doc["access_token"]) if "access_token" in doc else None,
                refresh_token=Redacted(doc["refresh_token"]) if "refresh_token" in doc else None,
                id_token=Redacted(doc["id_token"]) if "id_token" in doc else None,
                grant=grant,
            )
        if kind is AuthType.API_KEY:
            return ApiKeyCredentials(api_key=Redacted(doc["api_key"]))
        return BasicCredentials(username=doc["username"], password=Redacted(doc["password"]))
    except (ValueError, KeyError, TypeError):
        # ``from None``: the parser's own exception may quote the plaintext, which is a secret.
        raise DecryptionFailed("sealed credentials are not readable") from None


def needs_refresh(expires_at: datetime | None, now: datetime, ttl_seconds: int) -> bool:
    """Whether a token must be renewed before it is handed out with at least ``ttl_seconds`` left.

    A token without an expiry never needs a refresh: providers such as GitHub OAuth apps issue those.
    """
    return expires_at is not None and (expires_at - now).total_seconds() <= ttl_seconds


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
