"""Managing a tenant's webhook endpoints: register, read, change, delete, rotate the signing secret, list and
redeliver deliveries. Sending is ``services/webhook_delivery.py``; events are written by the database itself
(the outbox trigger of migration 0070), so nothing here writes one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.errors import Conflict, InvalidInput
from connvault.validation import require_outbound_url, require_text
from connvault.webhooks.model import EventType, NewEndpoint
from connvault.webhooks.signing import new_secret

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from connvault.db.uow import UnitOfWork
    from connvault.models import Page
    from connvault.redacted import Redacted
    from connvault.webhooks.model import Delivery, DeliveryStatus, WebhookEndpoint

MAX_PAGE_SIZE = 100
MAX_OVERLAP_SECONDS = 7 * 86_400


@dataclass(frozen=True, slots=True)
class EndpointInput:
    url: str
    event_types: Sequence[str]
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    """Fields to change; ``None`` leaves one as it is."""

    url: str | None = None
    event_types: Sequence[str] | None = None
    description: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    endpoint: WebhookEndpoint
    secret: Redacted[str]


def create_endpoint(uow: UnitOfWork, data: EndpointInput) -> NewEndpoint:
    """Register an endpoint with a new signing secret, which the answer shows this once."""
    url = _url(data.url)
    kinds = _event_types(data.event_types)
    description = require_text(data.description, "description", max_length=500, min_length=0)
    secret = new_secret()
    limit = get_settings().webhook_max_endpoints
    with uow:
        if uow.webhooks.count() >= limit:
            raise Conflict(f"a tenant has at most {limit} webhook endpoints")
        endpoint = uow.webhooks.add(
            uow.tenant, url=url, description=description, event_types=kinds, enabled=data.enabled, secret=secret
        )
        uow.commit()
    return NewEndpoint(endpoint, secret)


def list_endpoints(uow: UnitOfWork) -> list[WebhookEndpoint]:
    with uow:
        return uow.webhooks.list_all()


def get_endpoint(uow: UnitOfWork, endpoint_id: UUID) -> WebhookEndpoint:
    with uow:
        return uow.webhooks.get(endpoint_id)


def update_endpoint(uow: UnitOfWork, endpoint_id: UUID, changes: EndpointChanges) -> WebhookEndpoint:
    values: dict[str, Any] = {}
    if changes.url is not None:
        values["url"] = _url(changes.url)
    if changes.event_types is not None:
        values["event_types"] = [str(kind) for kind in _event_types(changes.event_types)]
    if changes.description is not None:
        values["description"] = require_text(changes.description, "description", max_length=500, min_length=0)
    if changes.enabled is not None:
        values["enabled"] = changes.enabled
    with uow:
        if not values:
            return uow.webhooks.get(endpoint_id)
        endpoint = uow.webhooks.update(endpoint_id, values)
        uow.commit()
    return endpoint


def delete_endpoint(uow: UnitOfWork, endpoint_id: UUID) -> None:
    """The endpoint goes with its pending deliveries; events stay for the tenant's other endpoints."""
    with uow:
        uow.webhooks.get(endpoint_id)
        uow.webhooks.delete(endpoint_id)
        uow.commit()


def rotate_secret(
    uow: UnitOfWork, endpoint_id: UUID, *, overlap_seconds: int | None = None, now: Clock = utcnow
) -> RotatedSecret:
    """A new signing secret, shown this once. The old one keeps signing (both signatures are sent) for
    ``overlap_seconds`` (default ``CONNVAULT_WEBHOOK_SECRET_OVERLAP_SECONDS``), so the tenant can roll its
    receivers over without dropping a delivery; 0 retires it at once."""
    overlap = get_settings().webhook_secret_overlap_seconds if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= MAX_OVERLAP_SECONDS:
        raise InvalidInput(f"overlap_seconds must be 0 to {MAX_OVERLAP_SECONDS}", field="overlap_seconds")
    secret = new_secret()
    with uow:
        endpoint = uow.webhooks.rotate_secret(endpoint_id, secret, now() + timedelta(seconds=overlap))
        uow.commit()
    return RotatedSecret(endpoint, secret)


def list_deliveries(
    uow: UnitOfWork, endpoint_id: UUID, *, status: DeliveryStatus | None, cursor: str | None, limit: int
) -> Page[Delivery]:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}", field="limit")
    with uow:
        uow.webhooks.get(endpoint_id)
        return uow.webhooks.list_deliveries(endpoint_id, status=status, cursor=cursor, limit=limit)


def redeliver(uow: UnitOfWork, endpoint_id: UUID, delivery_id: UUID, *, now: Clock = utcnow) -> Delivery:
    """Send a delivery again (a failed one, or a delivered one the receiver lost), with the same ``webhook-id``
    and a fresh retry window. Later events of its connection wait for it, as they would have the first time."""
    with uow:
        delivery = uow.webhooks.redeliver(endpoint_id, delivery_id, now())
        uow.commit()
    return delivery


def _url(url: str) -> str:
    return require_outbound_url(url, "url")  # refused here what the egress guard would refuse at call time


def _event_types(kinds: Sequence[str]) -> tuple[EventType, ...]:
    if not kinds:
        raise InvalidInput("name at least one event type", field="event_types")
    if len(kinds) > len(EventType):
        raise InvalidInput(f"at most {len(EventType)} event types", field="event_types")
    try:
        return tuple(dict.fromkeys(EventType(kind) for kind in kinds))
    except ValueError:
        raise InvalidInput("unknown event type", field="event_types") from None
