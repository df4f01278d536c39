"""Webhook domain objects: event types, endpoints (with their circuit), deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from connvault.redacted import Redacted


SUCCESS_STAMP_EVERY = timedelta(seconds=10)
"""How stale ``last_success_at`` may get on a healthy endpoint before a delivery writes it again."""


class EventType(StrEnum):
    """Every event a tenant can subscribe to, each written in the transaction of the change it reports."""

    # Written by database triggers: the connection events by migration 0070's, integration.credentials_invalid
    # by 0072's.

    CONNECTION_CREATED = "connection.created"
    CONNECTION_RECONNECTED = "connection.reconnected"
    CONNECTION_REFRESH_FAILED = "connection.refresh_failed"
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    CONNECTION_EXPIRED = "connection.expired"
    CONNECTION_RECOVERED = "connection.recovered"
    CONNECTION_DELETED = "connection.deleted"
    INTEGRATION_CREDENTIALS_INVALID = "integration.credentials_invalid"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    """Tried until its retry window was over, never acknowledged."""
    EXPIRED = "expired"
    """Still pending ``CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS`` after its event (migration 0098): see ExpiredReason."""


class ExpiredReason(StrEnum):
    """Why an expired delivery was not sent in time, as its endpoint stood when it expired."""

    ENDPOINT_DISABLED = "endpoint_disabled"
    CIRCUIT_OPEN = "circuit_open"
    """The endpoint's circuit had not closed since it opened (its receiver kept failing)."""
    MAX_AGE = "max_age"
    """Neither: it waited behind an earlier delivery of its connection that kept failing, or no sender ran."""


class CircuitState(StrEnum):
    """``open``: nothing is sent until ``circuit_open_until``; ``half_open``: one probe at a time, the next
    success closes it; ``closed``: deliveries flow, up to the per-endpoint concurrency."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: UUID
    tenant_id: UUID
    url: str
    description: str
    event_types: tuple[EventType, ...]
    enabled: bool
    previous_secret_expires_at: datetime | None
    consecutive_failures: int
    circuit_open_until: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def needs_success_stamp(self, now: datetime) -> bool:
        """Whether a success must be written: to close the circuit, or because the last stamp is getting old. A
        healthy endpoint's deliveries skip the write (and its round trip)."""
        return (
            self.consecutive_failures > 0
            or self.circuit_open_until is not None
            or self.last_success_at is None
            or self.last_success_at < now - SUCCESS_STAMP_EVERY
        )

    def circuit(self, now: datetime, threshold: int) -> CircuitState:
        if self.circuit_open_until is not None and self.circuit_open_until > now:
            return CircuitState.OPEN
        if self.consecutive_failures >= threshold:
            return CircuitState.HALF_OPEN
        return CircuitState.CLOSED


@dataclass(frozen=True, slots=True)
class SigningSecrets:
    """The secrets a delivery is signed with now: the current one, and the previous one during a rotation's
    overlap (both signatures go out, so a receiver holding either verifies)."""

    current: Redacted[str]
    previous: Redacted[str] | None = None


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    """A registered endpoint with its signing secret, which the tenant sees this once."""

    endpoint: WebhookEndpoint
    secret: Redacted[str]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    subject_id: UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    retry_from: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error_code: str | None
    delivered_at: datetime | None
    created_at: datetime
    occurred_at: datetime
    data: Mapping[str, Any]
    expired_reason: ExpiredReason | None = None

    @property
    def message_id(self) -> str:
        """``webhook-id``: the event's id, the same on every attempt and redelivery (receivers deduplicate)."""
        return f"msg_{self.event_id.hex}"
