"""Which headers cross the proxy, in each direction.

Requests: an allow-list. The tenant's request to connvault carries connvault's own credential (its API key in
``Authorization``), API Gateway's and the client's framing, and whatever else its HTTP client adds; none of that
is the provider's business. A small set of standard headers that describe the request (content type,
conditionals, ranges, idempotency keys) goes on as is; any other header goes on only when the caller names it
deliberately with the ``Connvault-Proxy-`` prefix (``Connvault-Proxy-Notion-Version: 2022-06-28``), and even then
never one that carries credentials, framing or hop-by-hop meaning, nor the header the credential is injected in.

Responses: everything but hop-by-hop headers (RFC 9110 §7.6.1, and any the ``Connection`` header names),
framing (connvault's own response sets its length and encoding), cookies (the provider's session is not the
tenant's), headers about the provider's origin that would apply to connvault's (HSTS, Alt-Svc, CORS), and any
header that echoes the credential. Bodies are the provider's and pass as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, unquote_plus

from connvault.errors import InvalidInput

PREFIX = "connvault-proxy-"
UPSTREAM_HEADER = "connvault-upstream"
"""Set (``true``) on every answer that is the provider's: a 401 or 404 with it came from the provider, one without
it from connvault (whose error bodies have the usual shape)."""
RETRIES_HEADER = "connvault-proxy-retries"
"""Not forwarded: how many times connvault may retry an idempotent request on 429/502/503/504 (default 0)."""

FORWARDED = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "content-language",
        "content-encoding",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "range",
        "idempotency-key",
        "prefer",
    }
)
NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "forwarded",
        "via",
        "x-real-ip",
    }
)
NEVER_FORWARDED_PREFIXES = ("x-forwarded-", "x-amz", "proxy-", "sec-", PREFIX)
NEVER_RETURNED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
        "set-cookie2",
        "strict-transport-security",
        "alt-svc",
        "public-key-pins",
        "clear-site-data",
    }
)
NEVER_RETURNED_PREFIXES = ("access-control-", "x-amz", "connvault-")
MAX_HEADER_VALUE_LENGTH = 8192
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
"""A header name (RFC 9110 §5.1), lower-cased as connvault receives it."""
_NOT_FIELD_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")


def is_field_value(value: str) -> bool:
    """Whether ``value`` may be sent as a header's value (RFC 9110 §5.5), in either direction: no line break (which
    would split the header: an injection), NUL or other control, and nothing past Latin-1, which HTTP/1.1 cannot
    carry (``http.client`` fails to encode it, a 500, rather than refuse it)."""
    return len(value) <= MAX_HEADER_VALUE_LENGTH and _NOT_FIELD_VALUE.search(value) is None


def request_headers(received: Mapping[str, str], *, credential_header: str | None) -> dict[str, str]:
    """The headers to send upstream, from the (lower-cased) headers connvault received.

    Raises ``InvalidInput`` (field ``headers.<name>``, named as ``_named`` says) for a deliberately forwarded
    header that may not be or whose name is not a header name, and for a value holding a line break, NUL or
    anything else a field value may not (header injection).
    """
    chosen: dict[str, str] = {}
    for name, value in received.items():
        if name.startswith(PREFIX) and name != RETRIES_HEADER:
            target = name[len(PREFIX) :]
            if _never_forwarded(target) or target == credential_header or not _TOKEN.fullmatch(target):
                named = _named(name)
                raise InvalidInput(f"{named} names a header connvault does not forward", field=f"headers.{named}")
        elif name in FORWARDED:
            target = name
        else:
            continue
        if not is_field_value(value):
            named = _named(name)
            raise InvalidInput(f"the value of {named} is not a valid header value", field=f"headers.{named}")
        chosen[target] = value
    return chosen


def _named(name: str) -> str:
    """How an error names a received header: as itself when connvault knows it (forwarded as is, or its own), else
    by its family (``connvault-proxy-*``): the rest of such a name is the client's own text, which errors never
    repeat."""
    return name if name in FORWARDED or name == RETRIES_HEADER else f"{PREFIX}*"


def _never_forwarded(name: str) -> bool:
    return not name or name in NEVER_FORWARDED or name.startswith(NEVER_FORWARDED_PREFIXES)


def response_headers(received: Iterable[tuple[str, str]], *, secrets: Iterable[str] = ()) -> dict[str, str]:
    """The provider's response headers that go back to the tenant, lower-cased, repeated ones joined by ``, ``;
    none whose name or value holds one of ``secrets`` (the credential sent, echoed back in a redirect's
    ``Location``) as it is or percent-decoded, nor one that is not a field value (a NUL or a line break a hostile
    provider sent would reach the tenant's client)."""
    marks = tuple(secrets)
    names_marks = tuple(mark.lower() for mark in marks)  # names arrive lower-cased
    pairs = [(name.lower(), value) for name, value in received]
    hop_by_hop = {token.strip().lower() for name, value in pairs if name == "connection" for token in value.split(",")}
    kept: dict[str, str] = {}
    for name, value in pairs:
        if name in NEVER_RETURNED or name in hop_by_hop or name.startswith(NEVER_RETURNED_PREFIXES):
            continue
        if _carries(name, names_marks) or _carries(value, marks) or not is_field_value(value):
            continue
        kept[name] = f"{kept[name]}, {value}" if name in kept else value
    kept[UPSTREAM_HEADER] = "true"
    return kept


def _carries(text: str, secrets: tuple[str, ...]) -> bool:
    """Whether ``text`` holds a secret as it is or percent-decoded, whichever characters were escaped and in
    whichever case (``+`` read as a space too): comparing against a few encoded spellings missed Python's own
    ``quote`` and lower-case escapes (an outside probe)."""
    views = (text, unquote(text), unquote_plus(text))
    return any(secret in view for secret in secrets for view in views)
