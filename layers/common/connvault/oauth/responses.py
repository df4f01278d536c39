"""Parses what a token endpoint answered into ``OAuth2Tokens``, for every body shape met in the wild.

Bodies are JSON or, from older providers (GitHub's legacy default), form-urlencoded. Fields are loosely
typed in practice: ``expires_in`` as a number or a numeric string, ``scope`` as a string with space,
comma or plus separators or as a list. Some providers answer errors with HTTP 200 (GitHub's
``{"error": ...}``, Slack's ``{"ok": false}``). A response shape that differs in structure gets a named
parser here, selected by the catalog's ``token_response_shape`` rather than by provider name.

Every failure is a ``connvault.errors`` exception; an unreadable body or a success without an access
token is transient (``ProviderUnavailable``, reason ``invalid_response``): providers do send HTML error
pages with HTTP 200 during incidents.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from connvault.errors import ProviderUnavailable
from connvault.models import OAuth2Tokens, TokenResponseShape
from connvault.oauth.outcomes import classify_failure
from connvault.redacted import Redacted
from connvault.validation import MAX_PROVIDER_TOKEN_LENGTH, MAX_SCOPES, is_oauth_token, is_scope, is_unicode_text

type Document = Mapping[str, Any]

MAX_EXPIRES_IN_SECONDS = 10 * 365 * 86_400
"""Beyond this an ``expires_in`` means "does not expire" in practice; it is treated as absent."""
MAX_ACCOUNT_ID_LENGTH = 255
_MAX_ID_TOKEN_PAYLOAD = 16_384

# Keys never copied into ``extra``: they name secrets (a webhook URL is one), or are parsed already.
_SECRET_KEY = re.compile(r"token|secret|code|password|key|signature|webhook", re.IGNORECASE)
_PARSED_KEYS = frozenset({"expires_in", "scope"})
_MAX_EXTRA_KEYS = 32
MAX_EXTRA_BYTES = 4096
"""The provider's fields kept with a connection (``metadata.provider``), as JSON: the tenant's own metadata has
``MAX_METADATA_BYTES`` (16 KiB), so a stored connection's metadata never passes 20 KiB whatever its source."""
_MAX_EXTRA_KEY_LENGTH = 64
_MAX_EXTRA_STRING_LENGTH = 1024
_MAX_EXTRA_INTEGER = 10**18
"""Larger integers are not ids or counts any client reads; their JSON text would only fill the metadata."""
_TOKEN_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_SECONDS = re.compile(r"\s*\d{1,10}(?:\.\d{1,9})?\s*")
_JWT = re.compile(r"[A-Za-z0-9_=-]+(?:\.[A-Za-z0-9_=-]*){2,4}")
"""A JWT's compact form (RFC 7519 §1): three base64url parts for a JWS, five for a JWE, split by dots (padding
let through, which some encoders add and ``_claims`` reads)."""
_SCOPE_SEPARATORS = re.compile(r"[\s,+]+")


def parse_token_response(
    status: int,
    content_type: str,
    body: bytes,
    shape: TokenResponseShape,
    now: datetime,
    *,
    retry_after: str | None = None,
    account_id_fields: Sequence[str] = (),
) -> OAuth2Tokens:
    """The tokens in a token endpoint's answer, or the ``connvault.errors`` exception it amounts to.

    ``retry_after`` is the response's ``Retry-After`` header, used when the answer is transient.
    ``account_id_fields`` (the catalog's) say where the answer names the connected account.
    """
    document = decode_body(content_type, body)
    if not 200 <= status <= 299:
        raise classify_failure(status, error_code(document), retry_after, now)
    if document is None:
        raise ProviderUnavailable("the token response is not readable", reason="invalid_response")
    if is_error(document):
        raise classify_failure(status, error_code(document), retry_after, now)
    tokens = _SHAPES[shape](document, now)
    if not account_id_fields:
        return tokens
    # The id is sealed (connections.provider_account_id): the fields it is made of stay out of the clear metadata.
    return replace(
        tokens,
        provider_account_id=account_id(document, tokens.id_token, account_id_fields),
        extra=_without(tokens.extra, account_id_fields),
    )


def account_id(document: Document, id_token: Redacted[str] | None, fields: Sequence[str]) -> Redacted[str] | None:
    """The connected account's id: each of ``fields`` is a dotted path into the response (``team.id``) or into
    the id token's claims (``id_token.sub``), and their values are joined with ``:`` in that order. None when one
    is missing or is not a string or an integer, or the result is not a usable id (1 to 255 characters, no
    control characters): then the stored id stays as it is.

    The id token is read without checking its signature: it came straight from the token endpoint over TLS, which
    OpenID Connect Core 3.1.3.7 accepts instead of the signature in the code flow.
    """
    claims: Document | None = None
    parts = []
    for path in fields:
        head, _, rest = path.partition(".")
        if head == "id_token" and rest:
            if claims is None:
                claims = _claims(id_token) or {}
            value = _dig(claims, rest)
        else:
            value = _dig(document, path)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            return None
        parts.append(value)
    joined = ":".join(parts)
    if not joined or len(joined) > MAX_ACCOUNT_ID_LENGTH or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in joined):
        return None
    return Redacted(joined)


def subject(id_token: Redacted[str] | None) -> str | None:
    """The end user an ID token names (its ``sub``, OpenID Connect Core 2), read without checking the signature as
    ``account_id`` reads it; None when there is no token or no such claim."""
    sub = (_claims(id_token) or {}).get("sub")
    return sub if isinstance(sub, str) and sub else None


def _without(extra: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """``extra`` minus the values at ``paths`` (and any object they leave empty)."""
    kept = {key: dict(value) if isinstance(value, Mapping) else value for key, value in extra.items()}
    for path in paths:
        head, _, rest = path.partition(".")
        if not rest:
            kept.pop(head, None)
        elif isinstance(kept.get(head), dict):
            kept[head] = _without(kept[head], [rest])
            if not kept[head]:
                del kept[head]
    return kept


def _dig(document: Document, path: str) -> object:
    value: object = document
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _claims(id_token: Redacted[str] | None) -> Document | None:
    """The payload of a compact JWS, or None for anything else."""
    if id_token is None:
        return None
    pieces = id_token.reveal().split(".")
    if len(pieces) != 3 or len(pieces[1]) > _MAX_ID_TOKEN_PAYLOAD:
        return None
    try:
        payload = base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4))
    except (binascii.Error, ValueError):
        return None
    return _json_object(payload.decode("utf-8", errors="replace"))


def decode_body(content_type: str, body: bytes) -> Document | None:
    """The body as a mapping, or None when it is neither a JSON object nor a form.

    The declared media type picks the parser; without a usable one, JSON is tried, then a form.
    """
    media_type = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if media_type == "application/x-www-form-urlencoded":
        return _form(text)
    document = _json_object(text)
    if document is not None or media_type.endswith("json"):
        return document
    return _form(text)


def is_error(document: Document) -> bool:
    """Whether a 2xx body is really an error (GitHub's ``error`` field, Slack's ``"ok": false``)."""
    return bool(document.get("error")) or document.get("ok") is False


def error_code(document: Document | None) -> object:
    """The body's ``error`` field as sent, for ``outcomes`` to check and sanitise."""
    return None if document is None else document.get("error")


def _json_object(text: str) -> Document | None:
    try:
        value = json.loads(text, object_pairs_hook=_members_without_lone_surrogates)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _members_without_lone_surrogates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members minus those whose key or value holds a lone UTF-16 surrogate, at every depth.

    JSON may escape one (``"\\udc00"``) and nothing can encode it: a member holding one, chosen as the account
    id, made the sealer fail (a 500), and one left in ``extra`` made the write after a granted code exchange fail.
    Dropped here, no field read from a provider's answer holds one; the rest of the answer still counts, so a
    provider that garbles a display name cannot cost a grant or a rotated refresh token. An access token holding
    one is dropped too, and the answer then has none (``invalid_response``). The last of repeated keys wins, as
    in ``json.loads``; inner objects went through this hook already, so only strings and arrays are looked into.
    """
    return {key: value for key, value in dict(pairs).items() if is_unicode_text(key) and _is_unicode_value(value)}


def _is_unicode_value(value: object) -> bool:
    if isinstance(value, str):
        return is_unicode_text(value)
    if isinstance(value, list):
        return all(_is_unicode_value(item) for item in value)
    return True  # numbers, booleans, null, and objects this hook has already cleaned


def _form(text: str) -> Document | None:
    if "=" not in text:
        return None
    return dict(parse_qsl(text, keep_blank_values=True))


def _standard(document: Document, now: datetime) -> OAuth2Tokens:
    """RFC 6749 §5.1, read leniently."""
    access_token = _token(document.get("access_token"))
    if access_token is None:
        raise ProviderUnavailable("the token response has no usable access_token", reason="invalid_response")
    return OAuth2Tokens(
        access_token=access_token,
        token_type=_token_type(document.get("token_type")),
        refresh_token=_token(document.get("refresh_token")),
        id_token=_id_token(document.get("id_token")),
        expires_at=_expires_at(document.get("expires_in"), now),
        scopes=_scopes(document.get("scope")),
        extra=_extra(document, depth=1),
    )


def _nested_authed_user(document: Document, now: datetime) -> OAuth2Tokens:
    """Slack's v2 shape: the user's token, when granted, sits in ``authed_user`` with its own fields.

    Without one (a bot-only install, or the answer to a refresh) the top level is a standard response.
    The top level's non-secret fields (``team``, ``app_id``...) are kept as ``extra`` either way.
    """
    user = document.get("authed_user")
    if isinstance(user, dict) and _token(user.get("access_token")) is not None:
        return replace(_standard(user, now), extra=_extra(document, depth=1))
    return _standard(document, now)


_SHAPES: Mapping[TokenResponseShape, Callable[[Document, datetime], OAuth2Tokens]] = {
    TokenResponseShape.STANDARD: _standard,
    TokenResponseShape.NESTED_AUTHED_USER: _nested_authed_user,
}


def _token(value: object) -> Redacted[str] | None:
    """An access or refresh token as sent; one that could not be sent back in a header as it came (a line break, NUL,
    text past ASCII: ``validation.is_oauth_token``) or is longer than any header takes is none."""
    return Redacted(value) if is_oauth_token(value, max_length=MAX_PROVIDER_TOKEN_LENGTH) else None


def _id_token(value: object) -> Redacted[str] | None:
    """The ID token as sent, if it is a JWT no longer than the other tokens; any other is none, as an unusable
    refresh token is, and the rest of the answer still counts. It is sealed with the tokens and opened with them on
    every fetch: uncapped, ~1 MB id tokens grew the token function by 145 MiB over 60 connections (its cache of
    opened credentials), and the one thing read from it is a claim or two (``account_id``, ``subject``)."""
    if isinstance(value, str) and len(value) <= MAX_PROVIDER_TOKEN_LENGTH and _JWT.fullmatch(value):
        return Redacted(value)
    return None


def is_storable_text(value: str) -> bool:
    """Text PostgreSQL can store and UTF-8 can carry: no U+0000 (text and jsonb refuse it) and no lone
    UTF-16 surrogate (``validation.is_unicode_text``: JSON lets ``"\ud800"`` through; it has no UTF-8 form)."""
    return "\x00" not in value and is_unicode_text(value)


def _token_type(value: object) -> str:
    """``Bearer`` when absent or unusable; any spelling of "bearer" becomes ``Bearer`` (RFC 6750)."""
    if not isinstance(value, str) or not _TOKEN_TYPE.fullmatch(value):
        return "Bearer"
    return "Bearer" if value.lower() == "bearer" else value


def _expires_at(value: object, now: datetime) -> datetime | None:
    """``now + expires_in``, or None when it is absent or unusable: not a number of seconds (a boolean, an object),
    below one second, not finite or past ``MAX_EXPIRES_IN_SECONDS``. A numeral in a string is its number: many
    providers send ``"3600"``, some ``"3600.0"``. What None then means is the caller's: "no expiry known" for a
    grant, "as long as the previous token" for a refresh (``services/refresh.py``)."""
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 1 <= value <= MAX_EXPIRES_IN_SECONDS:  # NaN fails every comparison; infinities and 10**400 fail this one
        return None
    return now + timedelta(seconds=int(value))


def _scopes(value: object) -> tuple[str, ...] | None:
    """The granted scopes; None when the provider did not say (then the requested scopes apply). Only scopes as
    RFC 6749 spells them, each once, and at most as many as a tenant may ask for: every token fetch answers them,
    and a provider's 50,000 were stored and answered as they came."""
    if isinstance(value, str):
        named: list[object] = list(_SCOPE_SEPARATORS.split(value))
    elif isinstance(value, list):
        named = value
    else:
        return None
    return tuple(dict.fromkeys(scope for scope in named if is_scope(scope)))[:MAX_SCOPES]


def _extra(document: Document, *, depth: int) -> dict[str, Any]:
    """The non-secret, JSON-safe simple fields: scalars and (one level of) objects of scalars, in the order sent,
    as many as fit ``MAX_EXTRA_BYTES`` of JSON. Without that bound a provider could make connvault store a
    megabyte per connection (32 keys of 32 keys of 1 KiB strings), and every list page carry it."""
    kept: dict[str, Any] = {}
    size = 2  # "{}"
    for key, value in document.items():
        if len(kept) >= _MAX_EXTRA_KEYS:
            break
        if not _is_safe_key(key):
            continue
        if isinstance(value, dict):
            if depth <= 0 or not (value := _extra(value, depth=depth - 1)):
                continue
        elif not _is_simple(value):
            continue
        entry = len(json.dumps({key: value}, ensure_ascii=False).encode("utf-8"))  # the pair plus "{}"
        if size + entry - 1 > MAX_EXTRA_BYTES:
            continue
        kept[key] = value
        size += entry - 1
    return kept


def _is_safe_key(key: object) -> bool:
    return (
        isinstance(key, str)
        and 0 < len(key) <= _MAX_EXTRA_KEY_LENGTH
        and key not in _PARSED_KEYS
        and not _SECRET_KEY.search(key)
        and is_storable_text(key)
    )


def _is_simple(value: object) -> bool:
    """A scalar jsonb stores as it came. Others are dropped at parsing, not stored: a field with U+0000 or a lone
    surrogate (a ``team_name`` say) once made the callback's write fail after the provider had granted access."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return abs(value) < _MAX_EXTRA_INTEGER
    if isinstance(value, float):
        return math.isfinite(value)  # NaN and Infinity are not JSON and Postgres' jsonb refuses them
    return isinstance(value, str) and len(value) <= _MAX_EXTRA_STRING_LENGTH and is_storable_text(value)
