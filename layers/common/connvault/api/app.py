"""``new_http_app()``: the resolver every HTTP handler uses, with one error shape and the tenant context.

Statuses and error bodies come from ``api/answers.py`` (shared with the token function's lean route); here they
are wired to the resolver's exception handlers.
"""

from __future__ import annotations

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

from connvault.api.answers import (
    Answer,
    authorizer_context,
    before_routes,
    domain_error_answer,
    error_answer,
    invalid_request_answer,
    no_route_answer,
    tenant_from,
    unexpected_answer,
)
from connvault.api.body import JsonOnlyValidation, strict_json
from connvault.config import get_settings
from connvault.errors import ConnvaultError, InvalidInput
from connvault.observability import MetricName, http_entry, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


def response_of(answer: Answer) -> Response[dict[str, Any]]:
    return Response(
        status_code=answer.status.value,
        content_type=content_types.APPLICATION_JSON,
        body=answer.body,
        headers=answer.headers,
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
        return response_of(domain_error_answer(error))

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
        # Only the locations of the bad fields: pydantic's own messages may quote the rejected input.
        return response_of(invalid_request_answer(sorted({_field_of(item) for item in error.errors()})))

    @app.exception_handler(UnicodeDecodeError)  # type: ignore[untyped-decorator]
    def _unreadable_body(_error: Exception) -> Response[dict[str, Any]]:
        # Raised while the resolver decodes the body, before any route runs: bytes that are not UTF-8. (JSON
        # nested deeper than Python's parser goes is ``strict_json``'s to refuse, where the parser runs.)
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return response_of(
            error_answer(
                HTTPStatus.BAD_REQUEST, InvalidInput.code, "the request body is not readable JSON", field="body"
            )
        )

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
    def _unsupported_media_type(_error: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        # The resolver refuses to read a body of a type it does not know; the API speaks JSON only.
        metrics.add_metric(name=MetricName.CLIENT_ERROR, unit="Count", value=1)
        return response_of(
            error_answer(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
                field="headers.content-type",
            )
        )

    @app.not_found
    def _no_route(_error: Exception) -> Response[dict[str, Any]]:
        return response_of(no_route_answer())

    def _unexpected(error: Exception) -> Response[dict[str, Any]]:
        return response_of(unexpected_answer(error))

    # Registered by a call rather than as a decorator: Powertools' unannotated decorator would leave it untyped.
    app.exception_handler(Exception)(_unexpected)

    return app


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


def tenant_id(app: APIGatewayHttpResolver) -> UUID:
    """The tenant the authorizer vouched for (``answers.tenant_from``)."""
    authorizer = app.current_event.request_context.authorizer
    return tenant_from((authorizer.get_lambda if authorizer else None) or {})


def callback_url(app: APIGatewayHttpResolver) -> str:
    """The redirect URI registered at providers: configured, or this API's own ``/oauth/callback``."""
    configured = get_settings().callback_url
    if configured:
        return configured
    context = app.current_event.request_context
    return f"https://{context.domain_name}/oauth/callback"


def lambda_handler(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point for ``app`` (``observability.http_entry``): what ``before_routes`` answers, or the
    resolver's answer."""

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        early = before_routes(authorizer_context(event)).answer
        if early is not None:
            return early.for_lambda()
        return app.resolve(event, context)

    return http_entry(handler)
