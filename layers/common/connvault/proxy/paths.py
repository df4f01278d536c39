"""Where a proxied request goes: the provider's API base URL, plus the caller's path and query, and nowhere else.

The path comes from the tenant (``/connections/{id}/proxy/{path}``), possibly already percent-decoded by API
Gateway, possibly not. Rather than guess which, every decoding of it is checked: the path as received, each
layer of percent-decoding down to the last, and each of those after Unicode NFKC folding (which turns the
fullwidth dot and solidus, U+FF0E and U+FF0F, into ``.`` and ``/``, as some servers do). In none of them may a
segment be ``.`` or ``..`` (also before a ``;`` parameter, ``..;``), be empty (``//host``, a leading ``/``),
hold a backslash or a control character, nor the first segment look like a URL scheme (``https:``). Percent
escapes must be well formed and decode to valid UTF-8 (no overlong dots). What passes is sent as received, with
only the characters a path may not hold literally percent-encoded, so an upstream that decodes once more still
finds no way out of the base path.

Then the URL is built by appending, and checked again: its scheme, host and port are the base URL's, and its path
starts with the base path. That last check does not depend on the rules above being complete.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote_to_bytes, urlsplit

from connvault.errors import InvalidInput

MAX_PATH_LENGTH = 4096
MAX_QUERY_LENGTH = 8192
MAX_DECODING_LAYERS = 4
"""A path encoded more often than this is refused rather than decoded further: no API needs it."""

_PCHAR = "!$&'()*+,;=:@-._~"
"""RFC 3986 ``pchar`` besides unreserved letters and digits and ``%``: what may stand in a segment as it is."""
_QUERY_SAFE = _PCHAR + "/?"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"the proxied path {reason}", field="path")


def safe_path(raw: str) -> str:
    """The path to append to the base URL, percent-encoded where it must be; ``InvalidInput`` (field ``path``)
    for anything that could leave the base path in any decoding."""
    if not raw or len(raw) > MAX_PATH_LENGTH:
        raise _refuse(f"must be 1 to {MAX_PATH_LENGTH} characters")
    if "?" in raw or "#" in raw:
        # The query arrives separately; a literal one here was percent-encoded by the caller and decoded on the
        # way (API Gateway does that), so where the path ends is no longer known.
        raise _refuse("must not contain ? or # (percent-encode them as %3F and %23)")
    layer = raw
    for _ in range(MAX_DECODING_LAYERS + 1):
        _check_layer(layer)
        _check_layer(unicodedata.normalize("NFKC", layer))
        if "%" not in layer:
            return quote(raw, safe="/%" + _PCHAR)
        if _BAD_ESCAPE.search(layer):
            raise _refuse("holds a % that starts no escape (send %25)")
        try:
            layer = unquote_to_bytes(layer).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("percent-decodes to bytes that are not UTF-8") from None
    raise _refuse(f"is percent-encoded more than {MAX_DECODING_LAYERS} times over")


def _check_layer(path: str) -> None:
    if _CONTROL.search(path):
        raise _refuse("must not contain control characters")
    if "\\" in path:
        raise _refuse("must not contain a backslash")
    segments = path.split("/")
    if _SCHEME.match(segments[0]):
        raise _refuse("must be a path, not a URL")
    for index, segment in enumerate(segments):
        if not segment and index != len(segments) - 1:
            raise _refuse("must not have empty segments (// or a leading /)")
        if segment.split(";", 1)[0] in (".", ".."):
            raise _refuse("must not have . or .. segments")


def safe_query(raw: str) -> str:
    """The query string to send on, percent-encoded where it must be; ``InvalidInput`` (field ``query``)."""
    if len(raw) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"the query string must be at most {MAX_QUERY_LENGTH} characters", field="query")
    if _CONTROL.search(raw) or "#" in raw:
        raise InvalidInput("the query string must not contain control characters or #", field="query")
    if _BAD_ESCAPE.search(raw):
        raise InvalidInput("the query string holds a % that starts no escape (send %25)", field="query")
    return quote(raw, safe="%" + _QUERY_SAFE)


def join(base_url: str, path: str, query: str = "") -> str:
    """``base_url`` + ``/`` + a path from ``safe_path`` (+ ``?`` + a query from ``safe_query``), checked again: the
    result's origin is the base URL's and its path lies under the base path. ``ValueError`` otherwise, which is
    a bug (the checks above let something through), never the tenant's input."""
    url = f"{base_url.rstrip('/')}/{path}" + (f"?{query}" if query else "")
    base, built = urlsplit(base_url), urlsplit(url)
    prefix = base.path.rstrip("/") + "/"
    if (built.scheme, built.hostname, built.port, built.username) != (base.scheme, base.hostname, base.port, None):
        raise ValueError("a proxied URL left its base URL's origin")
    rest = built.path[len(prefix) :].split("/")
    if not built.path.startswith(prefix) or built.fragment or "" in rest[:-1] or {".", ".."} & set(rest):
        raise ValueError("a proxied URL left its base path")
    return url
