"""``new_http_app()``: the resolver every HTTP handler uses, with one error shape and the tenant context.

HTTP statuses live here and nowhere else: a table from error class to status, walked along the MRO, so a new
``ConnvaultError`` subclass is mapped by its family. Error bodies carry the error's code and its message,
which by construction names fields and ids, never values.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from functools import cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths

from connvault.api.body import JsonOnlyValidation, strict_json
from connvault.config import get_settings
from connvault.errors import (
    ConfigurationError,
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
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ReauthRequired,
    ResponseTooLarge,
    Unauthorized,
)
from connvault.errors import Conflict as ConflictError
from connvault.observability import MetricName, get_tracer, logger, metrics, tracing_enabled
from connvault.services.auth import UNCHECKED_CONTEXT_KEY
from connvault.services.rate_limits import get_rate_limiter

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

STATUS_BY_ERROR: dict[type[ConnvaultError], HTTPStatus] = {
    InvalidInput: HTTPStatus.BAD_REQUEST,
    DiscoveryFailed: HTTPStatus.UNPROCESSABLE_ENTITY,
    CredentialsRefused: HTTPStatus.UNPROCESSABLE_ENTITY,
    Unauthorized: HTTPStatus.UNAUTHORIZED,
    NotFound: HTTPStatus.NOT_FOUND,
    ConflictError: HTTPStatus.CONFLICT,
    ReauthRequired: HTTPStatus.CONFLICT,
    IntegrationCredentialsInvalid: HTTPStatus.CONFLICT,
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


def status_for(error: ConnvaultError) -> HTTPStatus:
    for klass in type(error).__mro__:
        if klass in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[klass]
    return HTTPStatus.INTERNAL_SERVER_ERROR


def error_response(
    status: HTTPStatus, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body={"error": body},
        headers={**NO_STORE, **(headers or {})},
    )


def json_response(status: HTTPStatus, body: Any, *, headers: dict[str, str] | None = None) -> Response[Any]:
    """A model (or anything JSON-able) with the status and headers a route wants."""
    payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
    return Response(
        status_code=status.value, content_type=content_types.APPLICATION_JSON, body=payload, headers=headers or {}
    )


def new_http_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=strict_json)
    # Taken by the resolver in place of its own (it builds one only when the app has none): JSON bodies only.
    # Powertools leaves its middleware's __init__ unannotated.
    app._request_validation_middleware = JsonOnlyValidation()  # type: ignore[no-untyped-call]

    # Powertools leaves exception_handler unannotated: each handler below is typed, its registration is not.
    @app.exception_handler(ConnvaultError)  # type: ignore[untyped-decorator]
    def _domain_error(error: ConnvaultError) -> Response[dict[str, Any]]:
        if isinstance(error, ConfigurationError):
            # The operator's to fix: the detail (which names settings, never their values) goes to the log only.
            logger.error(
                "deployment misconfigured",
                extra={"error_code": error.code, "setting": error.field, "detail": error.message},
            )
            return _internal_error()
        status = status_for(error)
        headers = {}
        if isinstance(error, ProviderUnavailable | KeyServiceUnavailable | DatabaseUnavailable):
            retry_after = getattr(error, "retry_after", None) or 1
            headers["Retry-After"] = str(max(1, round(retry_after)))
        if isinstance(error, DatabaseUnavailable):
            # Ours to fix, so logged as an error; ``db/`` translated the driver's error, whose message (hosts,
            # statements) stays out of it.
            logger.error("database unavailable", extra={"error_code": error.code, "stack": stack_of(error)})
            count_database_unavailable()
        elif status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.SERVICE_UNAVAILABLE:
            logger.error("request failed", extra={"error_code": error.code})
            metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
        else:
            logger.info("request refused", extra={"error_code": error.code, "status": status.value})
            metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return error_response(status, error.code, error.message, field=getattr(error, "field", None), headers=headers)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
        # Only the locations of the bad fields: pydantic's own messages may quote the rejected input.
        fields = sorted({_field_of(item) for item in error.errors()})
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return error_response(
            HTTPStatus.BAD_REQUEST,
            InvalidInput.code,
            "invalid request: " + ", ".join(fields)[:500],
            field=fields[0] if fields else None,
        )

    @app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]
    def _unreadable_body(_error: Exception) -> Response[dict[str, Any]]:
        # Raised while the resolver decodes the body, before any route runs: bytes that are not UTF-8. (JSON
        # nested deeper than Python's parser goes is ``strict_json``'s to refuse, where the parser runs.)
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return error_response(
            HTTPStatus.BAD_REQUEST, InvalidInput.code, "the request body is not readable JSON", field="body"
        )

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
    def _unsupported_media_type(_error: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        # The resolver refuses to read a body of a type it does not know; the API speaks JSON only.
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return error_response(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
            field="headers.content-type",
        )

    @app.not_found
    def _no_route(_error: Exception) -> Response[dict[str, Any]]:
        return error_response(HTTPStatus.NOT_FOUND, NotFound.code, "no such route")

    def _unexpected(error: Exception) -> Response[dict[str, Any]]:
        # The type only: a driver's or HTTP library's message can hold row values or URLs.
        logger.error("unexpected error", extra={"error_type": type(error).__name__, "stack": stack_of(error)})
        return _internal_error()

    # Registered by a call rather than as a decorator: the handlers above call it, and Powertools'
    # unannotated decorator would leave the name untyped.
    app.exception_handler(Exception)(_unexpected)

    return app


def _internal_error() -> Response[dict[str, Any]]:
    """500 ``internal_error``, saying nothing of what went wrong: the log says it."""
    metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "an unexpected error occurred")


def count_database_unavailable() -> None:
    metrics.add_metric(name=MetricName.SERVER_ERROR, unit="Count", value=1)
    metrics.add_metric(name=MetricName.DATABASE_UNAVAILABLE, unit="Count", value=1)


def database_unavailable_response() -> Response[dict[str, Any]]:
    """503 with ``Retry-After``: the database refused us (too many connections, a failover) or is unreachable."""
    count_database_unavailable()
    unavailable = DatabaseUnavailable("the database is unavailable; retry shortly")
    return error_response(status_for(unavailable), unavailable.code, unavailable.message, headers={"Retry-After": "1"})


def _field_of(problem: dict[str, Any]) -> str:
    """``body.client_id``, ``query.min_ttl``…, named from the schema only: within a body the location stops at
    the first part that is not a field of a request model (an unknown key, a key of ``metadata``), since such
    a part is the client's own text, a secret perhaps. A body that is not JSON at all is just ``body``. The tag
    of a body that is one of several shapes (``POST /connections``'s kinds) is left out: ``body.client_secret``,
    not ``body.client_credentials.client_secret``."""
    if problem.get("type") == "json_invalid":
        return "body"
    location = list(problem.get("loc", ()))
    if location[:1] != ["body"]:
        return ".".join(str(part) for part in location)
    if len(location) > 2 and location[1] in body_union_tags():
        del location[1]
    named = ["body"]
    for part in location[1:]:
        if not (isinstance(part, int) or part in request_field_names()):
            break
        named.append(str(part))
    return ".".join(named)


def request_field_names() -> frozenset[str]:
    """Every field name of every request and response model (the ``Strict`` family, wherever a route module
    defines one): what an error location inside a body may say. Not cached: route modules load their models
    when they register, and a name learnt later must count."""
    from connvault.api.schemas import Strict  # at first use: the token route's cold start needs no pydantic models

    names: set[str] = set()
    pending: list[type] = [Strict]
    while pending:
        model = pending.pop()
        names.update(getattr(model, "model_fields", {}))
        pending.extend(model.__subclasses__())
    return frozenset(names)


@cache
def body_union_tags() -> frozenset[str]:
    from connvault.api.schemas import NEW_CONNECTION_KINDS  # at first use: the token route needs no pydantic models

    return frozenset(NEW_CONNECTION_KINDS)


def stack_of(error: BaseException) -> list[str]:
    """Where an error was raised, as ``file:line function`` frames: enough to debug, no message, no values."""
    frames = traceback.extract_tb(error.__traceback__)
    return [f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} {frame.name}" for frame in frames[-8:]]


def tenant_id(app: APIGatewayHttpResolver) -> UUID:
    """The tenant the authorizer vouched for; the only source of tenant identity a handler trusts."""
    authorizer = app.current_event.request_context.authorizer
    context = (authorizer.get_lambda if authorizer else None) or {}
    try:
        tenant = UUID(str(context["tenant_id"]))
    except (KeyError, ValueError):
        raise Unauthorized("no tenant in the request context") from None
    logger.append_keys(tenant_id=str(tenant))
    return tenant


def callback_url(app: APIGatewayHttpResolver) -> str:
    """The redirect URI registered at providers: configured, or this API's own ``/oauth/callback``."""
    configured = get_settings().callback_url
    if configured:
        return configured
    context = app.current_event.request_context
    return f"https://{context.domain_name}/oauth/callback"


def lambda_handler(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point for ``app``, with the safe Powertools defaults every HTTP function shares:
    no event in the logs, state cleared per request, no response or error text in traces, and no tracer at all
    when tracing is off (see ``observability.tracing_enabled``)."""

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        authorizer = _authorizer_context(event)
        if authorizer.get(UNCHECKED_CONTEXT_KEY) is not None:
            # The authorizer could not reach the database to check the key, and let the request through only
            # so that it can be answered 503 here: no route runs for it.
            logger.warning("request not authorized: the database is unavailable")
            return _lambda_answer(database_unavailable_response())
        refused = _over_rate(authorizer.get("tenant_id"))
        if refused is not None:
            return _lambda_answer(refused)
        return app.resolve(event, context)

    if tracing_enabled():
        handler = get_tracer().capture_lambda_handler(capture_response=False, capture_error=False)(handler)
    logged = logger.inject_lambda_context(
        correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
    )
    return logged(metrics.log_metrics(handler))


def _authorizer_context(event: dict[str, Any]) -> dict[str, Any]:
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    return context.get("lambda") or {}


def _over_rate(tenant: object) -> Response[dict[str, Any]] | None:
    """429 with ``Retry-After`` when the tenant the authorizer named is over its request rate, before any route
    runs; None to go on (public routes name no tenant, and a malformed one is the route's to refuse)."""
    try:
        tenant_id = UUID(str(tenant)) if tenant is not None else None
    except ValueError:
        return None
    if tenant_id is None:
        return None
    try:
        get_rate_limiter().admit(tenant_id)
    except RateLimited as refused:
        logger.info("request refused", extra={"tenant_id": str(tenant_id), "error_code": refused.code, "status": 429})
        return error_response(
            status_for(refused), refused.code, refused.message, headers={"Retry-After": str(int(refused.retry_after))}
        )
    return None


def _lambda_answer(answer: Response[dict[str, Any]]) -> dict[str, Any]:
    """A response built before the resolver runs, as the Lambda returns it."""
    return {
        "statusCode": answer.status_code,
        "headers": answer.headers,
        "body": json.dumps(answer.body, separators=(",", ":")),
        "isBase64Encoded": False,
    }
