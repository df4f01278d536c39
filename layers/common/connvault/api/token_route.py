"""The token function's one route, ``GET /connections/{connection_id}/token``, served without the resolver.

The function handles exactly this route, so routing, OpenAPI validation and the response builder are replaced by a
hand parse of the path and the two query parameters, with the same strictness and the same answers, byte for byte,
as the resolver gives for the route's declaration in ``api/token.py`` (which still documents it in the OpenAPI
document): ``tests/api/test_token_route.py`` compares both over odd inputs. Logs keep the correlation id and
structure; EMF is printed only when a metric was recorded; no tracer exists when tracing is off. Why this, and
what it saves: docs/design.md.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from connvault.api.answers import (
    NO_STORE,
    Answer,
    ParsedId,
    authorizer_context,
    before_routes,
    domain_error_answer,
    invalid_request_answer,
    no_route_answer,
    parsed_id,
    tenant_from,
    unexpected_answer,
)
from connvault.credentials import ApiKeyCredentials, BasicCredentials, OAuth2Credentials
from connvault.errors import ConnvaultError
from connvault.observability import http_entry
from connvault.services.rate_limits import get_rate_limiter
from connvault.services.tokens import get_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.typing import LambdaContext

    from connvault.services.rate_limits import PendingCount
    from connvault.services.tokens import IssuedCredential

# The resolver's own pattern for a path parameter (RFC 3986's safe and unsafe characters, and word characters).
_PATH = re.compile(r"^/connections/(?P<connection_id>[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+)/token$")
# What pydantic takes as a UUID: hyphenated, simple, braced or URN, any case.
_HEX = "[0-9a-fA-F]"
_HYPHENATED = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_UUID = re.compile(rf"^(?:{_HYPHENATED}|{_HEX}{{32}}|\{{{_HYPHENATED}\}}|urn:uuid:{_HYPHENATED})$")
# What pydantic takes as an int from text: ASCII digits, single underscores between them, an optional sign, and a
# fraction of zeros; surrounding Unicode white space is ignored.
_INTEGER = re.compile(r"^[+-]?[0-9](?:_?[0-9])*(?:\.0+)?$")
_WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
MAX_MIN_TTL = 86_400


def new_handler() -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point (``observability.http_entry``)."""
    return http_entry(lambda event, _context: _answer(event).for_lambda())


def _answer(event: dict[str, Any]) -> Answer:
    authorizer = authorizer_context(event)
    admission = before_routes(authorizer, carry=True)
    if admission.answer is not None:
        return admission.answer
    try:
        return _route(event, authorizer, admission.pending)
    finally:
        if admission.pending is not None:
            get_rate_limiter().settle(admission.pending)


def _route(event: dict[str, Any], authorizer: dict[str, Any], count: PendingCount | None) -> Answer:
    """The route's answer; ``count``, the tenant's shared count when it fell due, rides on the token read."""
    try:
        connection, min_ttl, force_refresh = _parse(event)
    except _NoRoute:
        return no_route_answer()
    except _Invalid as invalid:
        return invalid_request_answer(invalid.fields)
    try:
        issued = get_token(
            tenant_from(authorizer), connection.id, min_ttl=min_ttl, force_refresh=force_refresh, count=count
        )
    except ConnvaultError as error:
        return domain_error_answer(error)
    except Exception as error:  # the resolver's last handler (``db/`` raises the database's own as ConnvaultError)
        return unexpected_answer(error)
    return Answer(HTTPStatus.OK, token_body(issued, connection.text), dict(NO_STORE))


class _NoRoute(Exception):
    pass


class _Invalid(Exception):
    def __init__(self, fields: list[str]) -> None:
        super().__init__()
        self.fields = fields


def _parse(event: dict[str, Any]) -> tuple[ParsedId, int, bool]:
    context = event.get("requestContext") or {}
    path = event.get("rawPath") or ""
    stage = context.get("stage")
    if stage != "$default":
        path = path[len("/" + str(stage)) :]
    matched = _PATH.match(path)
    if matched is None or str((context.get("http") or {}).get("method", "")).upper() != "GET":
        raise _NoRoute
    query = event.get("queryStringParameters") or {}
    raw_id = matched["connection_id"]
    connection_id = parsed_id(raw_id) if _UUID.match(raw_id) else None
    min_ttl = _min_ttl(query.get("min_ttl"))
    force_refresh = _boolean(query.get("force_refresh"))
    if connection_id is not None and min_ttl is not None and force_refresh is not None:
        return connection_id, min_ttl, force_refresh
    checked = (
        ("path.connection_id", connection_id),
        ("query.force_refresh", force_refresh),
        ("query.min_ttl", min_ttl),
    )
    raise _Invalid([name for name, value in checked if value is None])


def _min_ttl(raw: str | None) -> int | None:
    if raw is None:
        return 0
    text = raw.strip(_WHITE_SPACE)
    if not _INTEGER.match(text):
        return None
    whole = text.split(".")[0]
    # Read without int() on the whole text, which refuses more than 4,300 digits (leading zeros too) where
    # pydantic reads any number of them.
    digits = whole.lstrip("+-").replace("_", "").lstrip("0")
    if len(digits) > len(str(MAX_MIN_TTL)):
        return None
    value = int(digits or "0")
    return value if value <= MAX_MIN_TTL and (value == 0 or not whole.startswith("-")) else None


def _boolean(raw: str | None) -> bool | None:
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    return False if lowered in _FALSE else None


def token_body(issued: IssuedCredential, connection_id: str) -> dict[str, Any]:
    """``TokenResponse`` as the resolver serialises it: every field, in the model's order. ``connection_id`` is
    ``str(issued.connection_id)``, which the route parsed with the id."""
    body: dict[str, Any] = {
        "connection_id": connection_id,
        "credential_type": issued.credentials.type.value,
        "access_token": None,
        "token_type": None,
        "expires_at": None,
        "min_ttl_met": None,
        "scopes": [],
        "api_key": None,
        "username": None,
        "password": None,
    }
    match issued.credentials:
        case OAuth2Credentials(access_token=token):
            body.update(
                access_token=token.reveal() if token is not None else None,
                token_type=issued.token_type or "Bearer",
                expires_at=_instant(issued.expires_at),
                min_ttl_met=issued.min_ttl_met,
                scopes=list(issued.scopes),
            )
        case ApiKeyCredentials(api_key=key):
            body["api_key"] = key.reveal()
        case BasicCredentials(username=username, password=password):
            body.update(username=username, password=password.reveal())
    return body


@lru_cache(maxsize=4096)
def _instant(moment: datetime | None) -> str | None:
    """As pydantic writes an aware datetime in JSON: ISO 8601, ``Z`` for UTC (once per expiry and process: writing
    an aware datetime costs more than the rest of the answer's fields together)."""
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
