"""The token route: the one response that carries a secret, served with ``Cache-Control: no-store``."""

from http import HTTPStatus
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from connvault.api.answers import NO_STORE
from connvault.api.app import json_response, tenant_id
from connvault.api.schemas import TokenResponse, error_response
from connvault.services.tokens import get_token

ERRORS: dict[int, OpenAPIResponse] = {
    status: error_response(text)
    for status, text in (
        (400, "Invalid request"),
        (404, "Unknown connection, or another tenant's"),
        (409, "needs_reauth, revoked or expired: connect again; integration_*, provider_misconfigured: fix the setup"),
        (502, "provider_error: the provider refused the refresh, not the grant; retried later with backoff"),
        (503, "provider_unavailable: retry after Retry-After seconds"),
    )
}


def register(app: APIGatewayHttpResolver) -> None:
    @app.get(
        "/connections/<connection_id>/token",
        summary="A usable credential for the connection, refreshed first when needed",
        tags=["tokens"],
        responses={
            200: {"description": "The credential", "content": {"application/json": {"model": TokenResponse}}},
            **ERRORS,
        },
    )
    def fetch_token(
        connection_id: UUID,
        min_ttl: Annotated[int, Query(ge=0, le=86_400, description="Seconds the token must stay valid")] = 0,
        force_refresh: Annotated[bool, Query()] = False,
    ) -> Response[TokenResponse]:
        issued = get_token(tenant_id(app), connection_id, min_ttl=min_ttl, force_refresh=force_refresh)
        return json_response(HTTPStatus.OK, TokenResponse.of(issued), headers=NO_STORE)
