"""The answers every HTTP function gives before or around its routes, built without the resolver.

HTTP statuses live here and nowhere else: a table from error class to status, walked along the MRO, so a new
``ConnvaultError`` subclass is mapped by its family. Error bodies carry the error's code and its message, which by
construction names fields and ids, never values. ``api/app.py`` wraps these answers in the resolver's ``Response``;
the token function's lean route (``api/token_route.py``) returns them as they are: both give the same bytes.
Nothing here imports the resolver, pydantic or SQLAlchemy (the token function's cold start).
"""

from __future__ import annotations

import math
import traceback
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from uuid import UUID

from connvault.api.context_keys import UNCHECKED_CONTEXT_KEY
from connvault.errors import (
    ConfigurationError,
    Conflict,
    ConnectionRevoked,
    ConnvaultError,
    CredentialsExpired,
    CredentialsRefused,
    DatabaseUnavailable,
    DecryptionFailed,
    DiscoveryFailed,
    IntegrationCredentialsInvalid,
    InvalidInput,
    KeyServiceUnavailable,
    NotFound,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ReauthRequired,
    ResponseTooLarge,
    Unauthorized,
)
from connvault.json_text import answer_json
from connvault.observability import MetricName, logger, metrics
from connvault.services.rate_limits import get_rate_limiter

if TYPE_CHECKING:
    from connvault.services.rate_limits import PendingCount

STATUS_BY_ERROR: dict[type[ConnvaultError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    DiscoveryFailed: HTTPStatus.UNPROCESSABLE_ENTITY,
    CredentialsRefused: HTTPStatus.UNPROCESSABLE_ENTITY,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    NotFound: HTTPStatus.NOT_FOUND,
    Conflict: HTTPStatus.CONFLICT,
    ReauthRequired: HTTPStatus.CONFLICT,
    IntegrationCredentialsInvalid: HTTPStatus.CONFLICT,
    ProviderMisconfigured: HTTPStatus.CONFLICT,
    ConnectionRevoked: HTTPStatus.CONFLICT,
    CredentialsExpired: HTTPStatus.CONFLICT,
    ProviderRejected: HTTPStatus.BAD_GATEWAY,
    ResponseTooLarge: HTTPStatus.BAD_GATEWAY,
    ProviderUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    KeyServiceUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    DatabaseUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    RateLimited: HTTPStatus.TOO_MANY_REQUESTS,
    DecryptionFailed: HTTPStatus.INTERNAL_SERVER_ERROR,
}
NO_STORE = {"Cache-Control": "no-store"}
JSON = "application/json"


class Answer(NamedTuple):
    """A JSON answer: status, body and headers (``Content-Type`` is added when it goes out). A record built per
    request: a frozen dataclass's ``__init__`` cost three times as much."""

    status: HTTPStatus
    body: Any
    headers: dict[str, str]

    def for_lambda(self) -> dict[str, Any]:
        """As an HTTP API Lambda returns it, key for key what the resolver returns for the same answer."""
        return {
            "statusCode": self.status.value,
            "body": answer_json(self.body),
            "isBase64Encoded": False,
            "headers": {**self.headers, "Content-Type": JSON},
            "cookies": [],
        }


def status_for(error: ConnvaultError) -> HTTPStatus:
    for klass in type(error).__mro__:
        if klass in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[klass]
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_answer(
    status: HTTPStatus, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Answer:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return Answer(status, {"error": body}, {**NO_STORE, **(headers or {})})


def domain_error_answer(error: ConnvaultError) -> Answer:
    """A ``ConnvaultError`` as its status, logged and counted by who is to blame (the client, the operator, us, the
    database)."""
    if isinstance(error, ConfigurationError):
        # The operator's to fix: the detail (which names settings, never their values) goes to the log only.
        logger.error(
            "deployment misconfigured",
            extra={"error_code": error.code, "setting": error.field, "detail": error.message},
        )
        return internal_error_answer()
    status = status_for(error)
    headers = {}
    if isinstance(error, ProviderUnavailable | KeyServiceUnavailable | DatabaseUnavailable | RateLimited):
        retry_after = getattr(error, "retry_after", None) or 1
        # Whatever figure a service gave, a whole number of seconds: one that is not finite cannot be rounded.
        headers["Retry-After"] = str(max(1, round(retry_after) if math.isfinite(retry_after) else 1))
    if isinstance(error, DatabaseUnavailable):
        # Ours to fix, so logged as an error; ``db/`` translated the driver's error, whose message (hosts,
        # statements) stays out of it.
        logger.error("database unavailable", extra={"error_code": error.code, "stack": stack_of(error)})
        count_database_unavailable()
    elif status == HTTPStatus.BAD_GATEWAY:
        # The provider's answer was unusable: its fault, not ours, so no alarm on the server errors.
        logger.warning("request failed at the provider", extra={"error_code": error.code})
        metrics.add_metric(name=MetricName.PROVIDER_ERROR, unit="Count", value=1)
    elif status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.SERVICE_UNAVAILABLE:
        logger.error("request failed", extra={"error_code": error.code})
        metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
    else:
        logger.info("request refused", extra={"error_code": error.code, "status": status.value})
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
    return error_answer(status, error.code, error.message, field=getattr(error, "field", None), headers=headers)


def invalid_request_answer(fields: list[str]) -> Answer:
    """400 naming the bad fields (schema names only, sorted, the first as ``field``)."""
    metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
    return error_answer(
        HTTPStatus.BAD_REQUEST,
        InvalidInput.code,
        "invalid request: " + ", ".join(fields)[:500],
        field=fields[0] if fields else None,
    )


def no_route_answer() -> Answer:
    return error_answer(HTTPStatus.NOT_FOUND, NotFound.code, "no such route")


def count_database_unavailable() -> None:
    metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
    metrics.add_metric(name=MetricName.DATABASE_UNAVAILABLE, unit="Count", value=1)


def database_unavailable_answer() -> Answer:
    """503 with ``Retry-After``: the database refused us (too many connections, a failover) or is unreachable."""
    count_database_unavailable()
    unavailable = DatabaseUnavailable("the database is unavailable; retry shortly")
    return error_answer(status_for(unavailable), unavailable.code, unavailable.message, headers={"Retry-After": "1"})


def unexpected_answer(error: Exception) -> Answer:
    # The type only: a driver's or HTTP library's message can hold row values or URLs.
    logger.error("unexpected error", extra={"error_type": type(error).__name__, "stack": stack_of(error)})
    return internal_error_answer()


def internal_error_answer() -> Answer:
    """500 ``internal_error``, saying nothing of what went wrong: the log says it."""
    metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
    return error_answer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred")


def stack_of(error: BaseException) -> list[str]:
    """Where an error was raised, as ``file:line function`` frames: enough to debug, no message, no values."""
    frames = traceback.extract_tb(error.__traceback__)
    return [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} {frame.name}" for frame in frames[-8:]]


def authorizer_context(event: dict[str, Any]) -> dict[str, Any]:
    """What the tenant authorizer passed on (``tenant_id``, or the unchecked mark)."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    return context.get("lambda") or {}


def tenant_from(authorizer: dict[str, Any]) -> UUID:
    """The tenant the authorizer vouched for; the only source of tenant identity a handler trusts."""
    try:
        tenant = parsed_id(str(authorizer["tenant_id"]))
    except (KeyError, ValueError):
        raise Unauthorized("no tenant in the request context") from None
    logger.append_keys(tenant_id=tenant.text)
    return tenant.id


class ParsedId(NamedTuple):
    id: UUID
    text: str
    """``str(id)``: the canonical spelling, as logs and answers write it."""


@lru_cache(maxsize=8192)
def parsed_id(text: str) -> ParsedId:
    """An id as a UUID and its canonical text, parsed once per spelling and process: the authorizer's tenant (twice
    per request otherwise: the rate limit and the route) and a token fetch's connection (a backend fetches the same
    connections over and over). ``ValueError`` for text that is no UUID (never kept)."""
    value = UUID(text)
    return ParsedId(value, str(value))


class Admission(NamedTuple):
    """What ``before_routes`` decided: an early answer, or None to go on, with the tenant's shared count when the
    caller carries it (``carry``)."""

    answer: Answer | None
    pending: PendingCount | None = None


_GO_ON = Admission(None)


def before_routes(authorizer: dict[str, Any], *, carry: bool = False) -> Admission:
    """The answer a request gets before any route runs, or None to go on: 503 when the authorizer could not check
    the key (it lets such a request through only to be answered here), 429 when the tenant is over its rate. With
    ``carry``, a shared count that falls due is handed back rather than reported (``RateLimiter.admit``): the caller
    carries it and then settles it."""
    if authorizer.get(UNCHECKED_CONTEXT_KEY) is not None:
        logger.warning("request not authorized: the database is unavailable")
        return Admission(database_unavailable_answer())
    text = authorizer.get("tenant_id")
    if text is None:
        return _GO_ON  # public routes name no tenant
    try:
        tenant = parsed_id(str(text))
    except ValueError:
        return _GO_ON  # a malformed tenant is the route's to refuse (401)
    try:
        count = get_rate_limiter().admit(tenant.id, carry=carry)
    except RateLimited as refused:
        logger.append_keys(tenant_id=tenant.text)
        return Admission(domain_error_answer(refused))
    return _GO_ON if count is None else Admission(None, count)
