"""How a provider's API wants the credential: the catalog's ``api_auth``, and putting a credential there.

Four styles cover the catalog: ``bearer`` (``Authorization: Bearer <token or key>``, RFC 6750, the default for
OAuth and API keys), ``header`` (a header of the provider's own, ``X-Shopify-Access-Token``, with an optional
prefix), ``query`` (a query parameter, for the few APIs that want one) and ``basic`` (``Authorization: Basic``
from a username and password, or an API key as the username with no password, as Stripe accepts). The injected
value never passes through anything the tenant sent: the request's own ``Authorization`` is dropped and a query
parameter of the credential's name is refused (see ``connvault.services.proxy``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from connvault.models import (
    ApiAuth,
    ApiAuthStyle,
    ApiKeyCredentials,
    AuthType,
    BasicCredentials,
    Credentials,
    OAuth2Credentials,
)
from connvault.proxy.headers import is_field_value

_HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9 _.-]{0,32}")
_RESERVED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "host", "content-length"})


class CredentialMismatch(ValueError):
    """The credential cannot be sent the way the provider's ``api_auth`` says (a basic provider's key as a
    bearer token is fine; a username and password as one is not)."""


def parse_api_auth(document: object) -> ApiAuth | None:
    """The catalog's (or ``providers.api_auth``'s) declaration; None when absent. ValueError if malformed."""
    if document is None or document == {}:
        return None
    if not isinstance(document, Mapping) or not set(document) <= {"style", "name", "prefix"}:
        raise ValueError("must be a mapping of style, name and prefix")
    try:
        style = ApiAuthStyle(str(document.get("style")))
    except ValueError:
        raise ValueError("style must be one of: " + ", ".join(member.value for member in ApiAuthStyle)) from None
    name, prefix = document.get("name"), document.get("prefix", "")
    if style is ApiAuthStyle.HEADER:
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or name in _RESERVED_HEADERS:
            raise ValueError("a header style needs a lower-case header name of its own")
    elif style is ApiAuthStyle.QUERY:
        if not isinstance(name, str) or not _QUERY_NAME.fullmatch(name):
            raise ValueError("a query style needs a parameter name")
    elif name is not None:
        raise ValueError(f"a {style.value} style takes no name")
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or (prefix and style is not ApiAuthStyle.HEADER):
        raise ValueError("prefix is short text, for a header style only")
    return ApiAuth(style, name, prefix)


def api_auth_document(auth: ApiAuth | None) -> dict[str, str]:
    """The inverse of ``parse_api_auth``: what the seed writes."""
    if auth is None:
        return {}
    document = {"style": auth.style.value}
    if auth.name is not None:
        document["name"] = auth.name
    if auth.prefix:
        document["prefix"] = auth.prefix
    return document


def effective(auth: ApiAuth | None, auth_type: AuthType) -> ApiAuth:
    """The declared style, or the usual one for the provider's kind: basic for basic, else bearer."""
    if auth is not None:
        return auth
    return ApiAuth(ApiAuthStyle.BASIC if auth_type is AuthType.BASIC else ApiAuthStyle.BEARER)


MIN_MARK_LENGTH = 8
"""Shorter secret spellings are not looked for in answers: they would match ordinary header text."""


@dataclass(frozen=True, slots=True)
class Injection:
    """Where the credential goes on one request. ``repr`` hides the value."""

    header: tuple[str, str] | None = None
    query: str | None = None
    """``name=value``, percent-encoded, to append to the query string."""
    marks: frozenset[str] = frozenset()
    """The spellings of the secret that went out (as is, percent-encoded, base64): an answer header holding one
    echoes the credential (a redirect's ``Location`` with the query key in it) and is not passed back."""

    def __repr__(self) -> str:
        return "Injection(***)"


def inject(auth: ApiAuth, credentials: Credentials) -> Injection:
    """The header or query parameter that carries ``credentials`` the way ``auth`` says. ``CredentialMismatch`` too
    for a header value no header may hold (an API key past Latin-1; tokens are refused when stored)."""
    injection = _injection(auth, _secret_of(credentials, auth.style))
    if injection.header is not None and not is_field_value(injection.header[1]):
        raise CredentialMismatch("the credential holds characters a header cannot carry")
    return injection


def _injection(auth: ApiAuth, secret: str) -> Injection:
    header: tuple[str, str] | None = None
    query: str | None = None
    match auth.style:
        case ApiAuthStyle.BEARER:
            header = ("authorization", f"Bearer {secret}")
        case ApiAuthStyle.HEADER:
            header = (auth.name or "", f"{auth.prefix}{secret}")
        case ApiAuthStyle.QUERY:
            query = f"{quote(auth.name or '', safe='')}={quote(secret, safe='')}"
        case ApiAuthStyle.BASIC:
            encoded = base64.b64encode(secret.encode()).decode("ascii")
            header = ("authorization", f"Basic {encoded}")
            user, _, password = secret.partition(":")
            return Injection(header=header, marks=_marks(password or user, encoded))
    return Injection(header=header, query=query, marks=_marks(secret))


def _marks(secret: str, *more: str) -> frozenset[str]:
    """The credential as sent; an answer's headers are compared percent-decoded too (``headers.response_headers``),
    so no escaped spelling need be listed."""
    spellings = {secret, *more}
    return frozenset(mark for mark in spellings if len(mark) >= MIN_MARK_LENGTH)


def _secret_of(credentials: Credentials, style: ApiAuthStyle) -> str:
    """The token or key to send; for basic, ``user:password`` (a key is the user, as Stripe takes it)."""
    match credentials:
        case OAuth2Credentials(access_token=token):
            if style is ApiAuthStyle.BASIC:
                raise CredentialMismatch("an OAuth token is not a username and password")
            if token is None:  # an imported grant before its first refresh; the token route renews it first
                raise CredentialMismatch("the connection holds no access token yet")
            return token.reveal()
        case ApiKeyCredentials(api_key=key):
            return f"{key.reveal()}:" if style is ApiAuthStyle.BASIC else key.reveal()
        case BasicCredentials(username=username, password=password):
            if style is not ApiAuthStyle.BASIC:
                raise CredentialMismatch("a username and password go in HTTP Basic")
            return f"{username}:{password.reveal()}"
