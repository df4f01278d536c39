"""Routes of the webhook API: endpoints, secret rotation, deliveries and redelivery."""

from http import HTTPStatus
from typing import Annotated
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from connvault.api.answers import NO_STORE
from connvault.api.app import json_response, tenant_id
from connvault.api.schemas import error_response
from connvault.api.webhook_schemas import (
    DeliveryListResponse,
    DeliveryResponse,
    RotateSecretRequest,
    UpdateWebhookEndpointRequest,
    WebhookEndpointListResponse,
    WebhookEndpointRequest,
    WebhookEndpointResponse,
    WebhookSecretResponse,
)
from connvault.clock import utcnow
from connvault.config import get_settings
from connvault.db.uow import UnitOfWork
from connvault.services import webhooks
from connvault.webhooks.model import DeliveryStatus, WebhookEndpoint

ERRORS: dict[int, OpenAPIResponse] = {
    status: error_response(text) for status, text in ((400, "Invalid request"), (404, "Not found"), (409, "Conflict"))
}


def _shown(endpoint: WebhookEndpoint) -> WebhookEndpointResponse:
    return WebhookEndpointResponse.of(
        endpoint, now=utcnow(), circuit_threshold=get_settings().webhook_circuit_threshold
    )


def register(app: APIGatewayHttpResolver) -> None:
    def uow() -> UnitOfWork:
        return UnitOfWork(tenant_id(app))

    @app.post(
        "/webhooks",
        summary="Register a webhook endpoint; its signing secret is in this answer only",
        description=(
            "Deliveries follow the Standard Webhooks specification: headers `webhook-id`, `webhook-timestamp` and "
            "`webhook-signature` (`v1,<base64 HMAC-SHA256>`), verifiable with the standardwebhooks or Svix "
            "libraries and the returned `whsec_` secret. Body: `{type, timestamp, data}`."
        ),
        tags=["webhooks"],
        responses=ERRORS,
    )
    def create_webhook(body: WebhookEndpointRequest) -> Response[WebhookSecretResponse]:
        created = webhooks.create_endpoint(
            uow(), webhooks.EndpointInput(body.url, [str(k) for k in body.event_types], body.description, body.enabled)
        )
        answer = WebhookSecretResponse.of(
            created, now=utcnow(), circuit_threshold=get_settings().webhook_circuit_threshold
        )
        return json_response(HTTPStatus.CREATED, answer, headers=NO_STORE)

    @app.get("/webhooks", summary="List webhook endpoints", tags=["webhooks"])
    def list_webhooks() -> WebhookEndpointListResponse:
        return WebhookEndpointListResponse(items=[_shown(e) for e in webhooks.list_endpoints(uow())])

    @app.get(
        "/webhooks/<endpoint_id>",
        summary="Read a webhook endpoint and its circuit (never its secret)",
        tags=["webhooks"],
        responses=ERRORS,
    )
    def get_webhook(endpoint_id: UUID) -> WebhookEndpointResponse:
        return _shown(webhooks.get_endpoint(uow(), endpoint_id))

    @app.patch("/webhooks/<endpoint_id>", summary="Change a webhook endpoint", tags=["webhooks"], responses=ERRORS)
    def patch_webhook(endpoint_id: UUID, body: UpdateWebhookEndpointRequest) -> WebhookEndpointResponse:
        changes = webhooks.EndpointChanges(
            url=body.url,
            event_types=None if body.event_types is None else [str(k) for k in body.event_types],
            description=body.description,
            enabled=body.enabled,
        )
        return _shown(webhooks.update_endpoint(uow(), endpoint_id, changes))

    @app.delete(
        "/webhooks/<endpoint_id>",
        summary="Delete a webhook endpoint and its pending deliveries",
        tags=["webhooks"],
        responses=ERRORS,
    )
    def delete_webhook(endpoint_id: UUID) -> Response[None]:
        webhooks.delete_endpoint(uow(), endpoint_id)
        return json_response(HTTPStatus.NO_CONTENT, None)

    @app.post(
        "/webhooks/<endpoint_id>/rotate-secret",
        summary="Replace the signing secret; the old one keeps signing during the overlap",
        tags=["webhooks"],
        responses=ERRORS,
    )
    def rotate_webhook_secret(endpoint_id: UUID, body: RotateSecretRequest) -> Response[WebhookSecretResponse]:
        rotated = webhooks.rotate_secret(uow(), endpoint_id, overlap_seconds=body.overlap_seconds)
        answer = WebhookSecretResponse.of(
            rotated, now=utcnow(), circuit_threshold=get_settings().webhook_circuit_threshold
        )
        return json_response(HTTPStatus.OK, answer, headers=NO_STORE)

    @app.get(
        "/webhooks/<endpoint_id>/deliveries",
        summary="List an endpoint's deliveries, newest first",
        tags=["webhooks"],
        responses=ERRORS,
    )
    def list_webhook_deliveries(
        endpoint_id: UUID,
        status: Annotated[DeliveryStatus | None, Query()] = None,
        cursor: Annotated[str | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
    ) -> DeliveryListResponse:
        page = webhooks.list_deliveries(uow(), endpoint_id, status=status, cursor=cursor, limit=limit)
        return DeliveryListResponse.of(page)

    @app.post(
        "/webhooks/<endpoint_id>/deliveries/<delivery_id>/redeliver",
        summary="Send a delivery again (same webhook-id, fresh retry window)",
        tags=["webhooks"],
        responses=ERRORS,
    )
    def redeliver_webhook(endpoint_id: UUID, delivery_id: UUID) -> Response[DeliveryResponse]:
        delivery = webhooks.redeliver(uow(), endpoint_id, delivery_id)
        return json_response(HTTPStatus.ACCEPTED, DeliveryResponse.of(delivery))
