"""Checks on values that arrive from tenants, shared by every service that takes them."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, TypeGuard
from urllib.parse import quote, urlsplit, urlunsplit

from connvault.errors import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Iterable

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_URL_LENGTH = 2048
_URL_SAFE = "/%:@!$&'()*+,;=-._~"
"""RFC 3986's reserved and unreserved characters, and ``%`` so that existing escapes stay as they are."""
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,256}$")  # RFC 6749 scope-token characters
MAX_SCOPES = 100
_OAUTH_TOKEN = re.compile(r"[\x20-\x7e]+")
MAX_PROVIDER_TOKEN_LENGTH = 16_384
"""A provider's access or refresh token; a longer one is refused as a malformed answer: it could not be sent as a
bearer token anyway, past the 8-16 KiB most HTTP servers take for a header."""


def require_url(url: str, field: str, *, allow_query: bool = True) -> str:
    """An absolute https URL, or http on a loopback host for local development. No fragments, no userinfo."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{field} must be a URL of at most {MAX_URL_LENGTH} characters", field=field)
    if _has_control_characters(url) or not is_unicode_text(url):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise InvalidInput(f"{field} is not a valid URL", field=field) from None
    if not host:
        raise InvalidInput(f"{field} must be an absolute URL", field=field)
    if parts.scheme != "https" and not (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        raise InvalidInput(f"{field} must use https (http only on 127.0.0.1 or localhost)", field=field)
    if parts.fragment or parts.username or parts.password:
        raise InvalidInput(f"{field} must not carry a fragment or credentials", field=field)
    if parts.query and not allow_query:
        raise InvalidInput(f"{field} must not carry a query string", field=field)
    return url


def require_return_url(url: str, field: str) -> str:
    """A URL the end user's browser is sent back to, in its one ASCII spelling (``ascii_url``): registered and
    compared so, and so written into ``Location``, where raw non-ASCII text (``café``, U+2028) broke gateways."""
    return ascii_url(require_url(url, field), field)


def is_listed(return_url: str, registered: Iterable[str]) -> bool:
    """Whether ``return_url`` (already in its ASCII spelling) equals one of ``registered`` exactly, each compared
    in the same spelling: the one matching rule of every return-URL allow-list."""
    return return_url in {ascii_url(url) for url in registered}


def ascii_url(url: str, field: str = "return_url") -> str:
    """``url`` with its host in IDNA (punycode) and every non-ASCII or unsafe character of path, query and
    fragment percent-encoded as UTF-8; escapes already there are kept, so an ASCII URL comes back unchanged."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        host, colon, port = netloc.rpartition(":") if not netloc.endswith("]") and ":" in netloc else (netloc, "", "")
        netloc = browser_host(host, field) + colon + port
    path = quote(parts.path, safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE + "?")
    fragment = quote(parts.fragment, safe=_URL_SAFE + "?")
    if (netloc, path, query, fragment) == (parts.netloc, parts.path, parts.query, parts.fragment):
        return url  # already ASCII and escaped: exactly as written (``urlunsplit`` would drop an empty "?")
    return urlunsplit((url.split(":", 1)[0], netloc, path, query, fragment))


def browser_host(host: str, field: str) -> str:
    """``host`` in the ASCII (IDNA) spelling a browser uses for it, for a host the end user's browser goes to or
    is framed by; refused where Python's codec (IDNA 2003) and browsers (UTS 46) would spell it differently."""
    if _IDNA_DEVIATIONS.intersection(host):
        raise InvalidInput(f"{field} has a host that browsers and IDNA 2003 spell differently", field=field)
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput(f"{field} has a host that is not a valid internationalised name", field=field) from None


_IDNA_DEVIATIONS = frozenset("\u00df\u1e9e\u03c2\u200c\u200d")
"""UTS 46's deviation characters (ß, ẞ, final ς, the zero-width joiners): Python's ``idna`` codec (IDNA 2003)
maps ``faß.example`` to ``fass.example``, another domain than the ``xn--fa-hia.example`` browsers go to, so a
return URL or frame ancestor spelled with one would be compared as one host and reached as another."""


def require_outbound_url(url: str, field: str, *, allow_query: bool = True) -> str:
    """A URL connvault itself will call (an endpoint, a discovery document): ``require_url`` plus the egress
    guard's static rules, so a URL the guard would refuse at call time is refused at registration instead.

    The message is the same for every refused address (which rule matched is not a tenant's business, and a
    DNS name that resolves somewhere private is only found out at call time, as the same "blocked address").
    """
    from connvault.egress import BlockedAddress, EgressPolicy, check_url

    require_url(url, field, allow_query=allow_query)
    try:
        check_url(url, EgressPolicy.from_settings())
    except BlockedAddress:
        raise InvalidInput(f"{field} is a blocked address (https to a public host only)", field=field) from None
    return url


def require_scopes(scopes: list[str] | tuple[str, ...], field: str = "scopes") -> tuple[str, ...]:
    if len(scopes) > MAX_SCOPES:
        raise InvalidInput(f"at most {MAX_SCOPES} scopes", field=field)
    for scope in scopes:
        if not is_scope(scope):
            raise InvalidInput("a scope holds characters OAuth does not allow", field=field)
    return tuple(dict.fromkeys(scopes))


def is_scope(value: object) -> TypeGuard[str]:
    """One scope as RFC 6749 spells it (``scope-token``: printable ASCII but space, ``"`` and ``\\``), 256 at most."""
    return isinstance(value, str) and _SCOPE.match(value) is not None


def is_oauth_token(value: object, *, max_length: int) -> TypeGuard[str]:
    """An access or refresh token as RFC 6749 spells one (Appendix A.12, A.17: printable ASCII), ``max_length`` at
    most. A token goes back out in an HTTP header as it came: a line break in it would split that header (an
    injection into whoever sends it), and a character past Latin-1 cannot be sent at all (the proxy failed on both).
    One rule for the tokens a provider issues and the ones a tenant imports."""
    return isinstance(value, str) and len(value) <= max_length and _OAUTH_TOKEN.fullmatch(value) is not None


def require_text(value: str, field: str, *, max_length: int, min_length: int = 1) -> str:
    """Text of a bounded length that can be stored, sealed and sent back as it came: no control characters and
    no lone UTF-16 surrogate (which has no UTF-8 form: a secret holding one could be stored but never used)."""
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        raise InvalidInput(f"{field} must be {min_length} to {max_length} characters", field=field)
    if _has_control_characters(value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    if not is_unicode_text(value):
        raise InvalidInput(f"{field} must be valid Unicode text", field=field)
    return value


def is_unicode_text(value: str) -> bool:
    """No lone surrogate: JSON's ``"\ud800"`` decodes to one, and nothing can encode it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_unicode_document(value: object) -> bool:
    """No lone surrogate anywhere in a decoded JSON document, keys and nested values included.

    JSON may escape one (``"\\udc00"``) and ``json.loads`` hands it on as a character nothing can encode: stored,
    sealed or logged later, it fails far from here (a 500). A surrogate pair's escapes decode to one character
    and pass. Only for what ``json.loads`` returns: anything else ``json.dumps`` refuses is a bug to surface.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_control_characters(value: str) -> bool:
    """C0 controls and DEL; NUL above all, which PostgreSQL cannot store in text (a 500, not a 400, if let by)."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
