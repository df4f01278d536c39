"""The proxy route, ``/connections/{connection_id}/proxy/{path+}``: any method, the provider's answer as it is.

API Gateway's ``{path+}`` takes the rest of the path, slashes included; the resolver's path parameters stop at a
slash, so the route is registered twice over one function: as documented (one segment) and for deeper paths
(hidden from the document). Either way the path is the raw rest of the request path, checked by the service.

The provider's answer goes back with its status and the headers that may cross, body as bytes (base64 in the
Lambda answer, whatever its type). Header names go out in lower case, as HTTP/2 spells them; that also keeps the
resolver from treating a JSON body as a value to serialise again.
"""

import base64
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from connvault.api.app import tenant_id
from connvault.api.schemas import error_response
from connvault.errors import InvalidInput
from connvault.services.proxy import METHODS, ProxyRequest, forward
from connvault.validation import is_unicode_text

RULE = "/connections/<connection_id>/proxy/<path>"
DEEPER = RULE + "/.+"
"""The same route for paths of more than one segment (a regular expression, which the resolver allows)."""

DESCRIPTION = """Calls the connection's provider API with its credential, so the credential never leaves connvault.

The request goes to the provider's `api_base_url` (with the connection's `connection_config` filled in) plus
`path` (any depth) plus the query string, with the method and the body as sent. The credential is added the way
the provider's API takes it (`Authorization: Bearer`, a header of its own, a query parameter, or HTTP Basic); your
own `Authorization` header is never forwarded. Of your other headers, `Accept`, `Accept-Language`,
`Content-Type`, `Content-Language`, `Content-Encoding`, the `If-*` conditionals, `Range`, `Idempotency-Key` and
`Prefer` are forwarded; send any other as `Connvault-Proxy-<Name>` (e.g. `Connvault-Proxy-Notion-Version`).

A 401 from the provider triggers one refresh of an OAuth token and one retry. `Connvault-Proxy-Retries: 1`..`3`
lets connvault retry an idempotent request (GET, HEAD, PUT, DELETE, OPTIONS) on 429, 502, 503, 504 or a lost
connection, waiting at least the provider's `Retry-After`; the default is no retries.

The answer is the provider's: its status, its body, its headers except hop-by-hop ones, `Set-Cookie` and
headers about the provider's own origin, plus `Connvault-Upstream: true` (so a 401 or a 404 with it is the
provider's). Errors of connvault itself have the usual error body and no such header: 400 for a path
that could leave the API's base path (`..`, encoded slashes, `//`, backslashes...), 404, 409 when the connection
needs to be connected again, 502 `response_too_large` when the answer is larger than about 4.6 MB, 502
`provider_error` when the provider refused the refresh after its 401 without saying the grant is dead (it is
retried later, with backoff), 503 when the provider cannot be reached in time or a refresh is backing off."""

ERRORS: dict[int, OpenAPIResponse] = {
    status: error_response(text)
    for status, text in (
        (400, "A path, query or header connvault does not send on"),
        (404, "Unknown connection, or another tenant's"),
        (409, "needs_reauth, revoked or expired: connect again"),
        (502, "response_too_large: the provider's answer does not fit; provider_error: a refresh was refused"),
        (503, "provider_unavailable: the provider could not be reached in time, or a refresh is backing off"),
    )
}

ConnectionId = Annotated[str, Path(description="The connection whose credential is used (a UUID)")]
ProxiedPath = Annotated[str, Path(description="The path under the provider's api_base_url; may hold slashes")]


def register(app: APIGatewayHttpResolver) -> None:
    def proxy(connection_id: ConnectionId, path: ProxiedPath) -> Response[bytes]:
        try:
            connection = UUID(connection_id)
        except ValueError:
            raise InvalidInput("invalid request: path.connection_id", field="path.connection_id") from None
        event = app.current_event
        body = event.body
        raw = base64.b64decode(body) if body is not None and event.is_base64_encoded else body
        path, query = event.path.split("/", 4)[4], event.raw_query_string
        # A lone surrogate has no UTF-8 form to send on: quoting or encoding it was a 500 (an outside probe).
        for field, text in (("path", path), ("query", query), ("body", raw if isinstance(raw, str) else "")):
            if not is_unicode_text(text):
                raise InvalidInput(f"invalid request: {field}", field=field)
        request = ProxyRequest(
            method=event.http_method,
            path=path,
            query=query,
            headers={name.lower(): value for name, value in event.headers.items()},
            body=raw.encode() if isinstance(raw, str) else raw,
        )
        answer = forward(tenant_id(app), connection, request)
        return Response(status_code=answer.status, headers=dict(answer.headers), body=answer.body)

    # Validation off: the resolver's response validation would turn the body's bytes into text.
    methods = sorted(METHODS)
    app.route(
        RULE,
        method=methods,
        enable_validation=False,
        summary="Call the provider's API with the connection's credential",
        description=DESCRIPTION,
        tags=["proxy"],
        responses={200: {"description": "The provider's answer, whatever its status and type"}, **ERRORS},
    )(proxy)
    app.route(DEEPER, method=methods, include_in_schema=False, enable_validation=False)(proxy)
