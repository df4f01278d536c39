"""The webhook part of the API contract: endpoints, their circuit, secrets (shown once), deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from pydantic import Field, StrictBool, StrictInt

from connvault.api.schemas import Strict, Url
from connvault.webhooks.model import CircuitState, DeliveryStatus, EventType, ExpiredReason

if TYPE_CHECKING:
    from connvault.models import Page
    from connvault.services.webhooks import RotatedSecret
    from connvault.webhooks.model import Delivery, NewEndpoint, WebhookEndpoint

Description = Annotated[str, Field(max_length=500)]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]


class WebhookEndpointRequest(Strict):
    url: Url = Field(description="https URL of the receiver (public host; the egress guard checks every call).")
    event_types: EventTypes
    description: Description = ""
    enabled: StrictBool = True


class UpdateWebhookEndpointRequest(Strict):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class RotateSecretRequest(Strict):
    overlap_seconds: StrictInt | None = Field(
        default=None,
        ge=0,
        le=7 * 86_400,
        description="How long the previous secret keeps signing too (default 24 h; 0 retires it now).",
    )


class CircuitResponse(Strict):
    state: CircuitState
    consecutive_failures: int
    open_until: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None


class WebhookEndpointResponse(Strict):
    id: UUID
    url: str
    description: str
    event_types: list[EventType]
    enabled: bool
    circuit: CircuitResponse
    previous_secret_expires_at: datetime | None = Field(
        description="While in the future, deliveries are signed with the previous secret as well."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, *, now: datetime, circuit_threshold: int) -> WebhookEndpointResponse:
        previous = endpoint.previous_secret_expires_at
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=list(endpoint.event_types),
            enabled=endpoint.enabled,
            circuit=CircuitResponse(
                state=endpoint.circuit(now, circuit_threshold),
                consecutive_failures=endpoint.consecutive_failures,
                open_until=endpoint.circuit_open_until,
                last_success_at=endpoint.last_success_at,
                last_failure_at=endpoint.last_failure_at,
            ),
            previous_secret_expires_at=previous if previous is not None and previous > now else None,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookEndpointListResponse(Strict):
    items: list[WebhookEndpointResponse]


class WebhookSecretResponse(Strict):
    """Answered once, at creation and at rotation: connvault never shows the secret again."""

    endpoint: WebhookEndpointResponse
    secret: str = Field(description="Standard Webhooks signing secret (whsec_...). Shown once; store it now.")

    @classmethod
    def of(
        cls, created: NewEndpoint | RotatedSecret, *, now: datetime, circuit_threshold: int
    ) -> WebhookSecretResponse:
        return cls(
            endpoint=WebhookEndpointResponse.of(created.endpoint, now=now, circuit_threshold=circuit_threshold),
            secret=created.secret.reveal(),
        )


class DeliveryResponse(Strict):
    id: UUID
    message_id: str = Field(description="The webhook-id header: the same on every attempt and redelivery.")
    event_type: str
    subject_id: UUID
    status: DeliveryStatus = Field(
        description="pending, delivered, failed (tried for the retry window, never acknowledged) or expired (still "
        "pending CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS, 3 days, after its event); failed and expired can be "
        "redelivered."
    )
    expired_reason: ExpiredReason | None = Field(
        description="Why an expired delivery was not sent in time, as its endpoint stood then: endpoint_disabled, "
        "circuit_open (its receiver kept failing), max_age (it waited behind an earlier delivery of its connection). "
        "Null unless expired."
    )
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error_code: str | None
    delivered_at: datetime | None
    occurred_at: datetime
    created_at: datetime
    data: dict[str, Any] = Field(description="The event's data object, as sent.")

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryResponse:
        pending = delivery.status is DeliveryStatus.PENDING
        return cls(
            id=delivery.id,
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            subject_id=delivery.subject_id,
            status=delivery.status,
            expired_reason=delivery.expired_reason,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            last_attempt_at=delivery.last_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error_code=delivery.last_error_code,
            delivered_at=delivery.delivered_at,
            occurred_at=delivery.occurred_at,
            created_at=delivery.created_at,
            data=dict(delivery.data),
        )


class DeliveryListResponse(Strict):
    items: list[DeliveryResponse]
    next_cursor: str | None = Field(description="Pass as cursor for older deliveries; null on the last page.")

    @classmethod
    def of(cls, page: Page[Delivery]) -> DeliveryListResponse:
        return cls(items=[DeliveryResponse.of(d) for d in page.items], next_cursor=page.next_cursor)
