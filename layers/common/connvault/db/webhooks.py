"""Webhook endpoints and their deliveries: the only place that reads or writes the webhook tables.

Events themselves are written by the trigger of migration 0070, never from here: the outbox is transactional by
construction. Signing secrets are sealed here and opened here, only for the sender.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update

from connvault.crypto.envelope import SealContext
from connvault.db.rowcount import rows_changed
from connvault.db.rows import WebhookDeliveryRow, WebhookEndpointRow, WebhookEventRow
from connvault.errors import InvalidInput, NotFound
from connvault.models import Page
from connvault.webhooks.model import (
    SUCCESS_STAMP_EVERY,
    Delivery,
    DeliveryStatus,
    EventType,
    ExpiredReason,
    SigningSecrets,
    WebhookEndpoint,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.redacted import Redacted

SECRET_FIELD = "webhook_endpoints.secret"
"""The field both secret columns' envelopes are bound to: a rotation moves the current envelope to
``previous_secret`` as it is, and both are the same endpoint's secrets."""


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """One delivery a sender leased: send it under its own tenant."""

    delivery_id: UUID
    tenant_id: UUID
    endpoint_id: UUID
    owner: UUID
    until: datetime


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt came to, as the sender records it."""

    status_code: int | None
    error_code: str | None
    next_attempt_at: datetime | None
    """None once the retry window is over: the delivery is then ``failed``."""


class WebhookRepository:
    def __init__(self, session: Session, sealer: Sealer) -> None:
        self._session = session
        self._sealer = sealer

    # -- endpoints ---------------------------------------------------------------------------------------

    def add(
        self,
        tenant_id: UUID,
        *,
        url: str,
        description: str,
        event_types: Sequence[EventType],
        enabled: bool,
        secret: Redacted[str],
    ) -> WebhookEndpoint:
        endpoint_id = uuid.uuid4()
        row = WebhookEndpointRow(
            id=endpoint_id,
            tenant_id=tenant_id,
            url=url,
            description=description,
            event_types=[str(kind) for kind in event_types],
            enabled=enabled,
            secret=self._seal(tenant_id, endpoint_id, secret),
        )
        self._session.add(row)
        self._session.flush()
        return self.get(endpoint_id)

    def get(self, endpoint_id: UUID, *, for_update: bool = False) -> WebhookEndpoint:
        query = (
            select(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id)
            .execution_options(populate_existing=True)
        )
        if for_update:
            query = query.with_for_update()
        row = self._session.scalars(query).one_or_none()
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return _endpoint(row)

    def list_all(self) -> list[WebhookEndpoint]:
        rows = self._session.scalars(
            select(WebhookEndpointRow).order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id)
        )
        return [_endpoint(row) for row in rows]

    def count(self) -> int:
        return int(self._session.scalar(select(func.count()).select_from(WebhookEndpointRow)) or 0)

    def update(self, endpoint_id: UUID, values: dict[str, Any]) -> WebhookEndpoint:
        """Change the tenant's fields (url, description, event_types, enabled)."""
        changed = rows_changed(
            self._session,
            update(WebhookEndpointRow)
            .where(WebhookEndpointRow.id == endpoint_id)
            .values({**values, "updated_at": func.now()}),
        )
        if not changed:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        return self.get(endpoint_id)

    def delete(self, endpoint_id: UUID) -> bool:
        changed = rows_changed(self._session, delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id))
        return changed > 0

    def rotate_secret(self, endpoint_id: UUID, secret: Redacted[str], previous_until: datetime) -> WebhookEndpoint:
        """The new secret signs from now on; the current one keeps signing until ``previous_until``."""
        row = self._session.scalars(
            select(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        row.previous_secret = row.secret
        row.previous_secret_expires_at = previous_until
        row.secret = self._seal(row.tenant_id, row.id, secret)
        row.updated_at = func.now()
        self._session.flush()
        return self.get(endpoint_id)

    def signing_secrets(self, endpoint_id: UUID, now: datetime) -> SigningSecrets:
        row = self._session.get(WebhookEndpointRow, endpoint_id)
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        previous = None
        if row.previous_secret is not None and row.previous_secret_expires_at and row.previous_secret_expires_at > now:
            previous = self._open(row.tenant_id, row.id, row.previous_secret)
        return SigningSecrets(self._open(row.tenant_id, row.id, row.secret), previous)

    def record_success(self, endpoint_id: UUID, now: datetime) -> None:
        """A 2xx closes the circuit. A healthy endpoint's row is written at most every few seconds, not once per
        delivery: its concurrent deliveries would otherwise queue on the row lock."""
        endpoint = WebhookEndpointRow
        self._session.execute(
            update(endpoint)
            .where(
                endpoint.id == endpoint_id,
                or_(
                    endpoint.consecutive_failures > 0,
                    endpoint.circuit_open_until.is_not(None),
                    endpoint.last_success_at.is_(None),
                    endpoint.last_success_at < now - SUCCESS_STAMP_EVERY,
                ),
            )
            .values(consecutive_failures=0, circuit_open_until=None, last_success_at=now)
        )

    def record_failure(
        self, endpoint_id: UUID, now: datetime, *, threshold: int, cooldown: timedelta, cooldown_cap: timedelta
    ) -> int:
        """Count a failed attempt; at ``threshold`` in a row the circuit opens for ``cooldown``, doubling with
        each failed probe up to ``cooldown_cap``. Returns the failures in a row."""
        failures = int(
            self._session.scalar(
                update(WebhookEndpointRow)
                .where(WebhookEndpointRow.id == endpoint_id)
                .values(consecutive_failures=WebhookEndpointRow.consecutive_failures + 1, last_failure_at=now)
                .returning(WebhookEndpointRow.consecutive_failures)
            )
            or 0
        )
        if failures >= threshold:
            wait = min(cooldown_cap, cooldown * 2 ** min(failures - threshold, 30))
            self._session.execute(
                update(WebhookEndpointRow)
                .where(WebhookEndpointRow.id == endpoint_id)
                .values(circuit_open_until=now + wait)
            )
        return failures

    # -- deliveries --------------------------------------------------------------------------------------

    def claim(
        self, now: datetime, *, endpoints: int, per_endpoint: int, circuit_threshold: int, until: datetime
    ) -> list[DeliveryClaim]:
        """Lease due deliveries across tenants (a SECURITY DEFINER function; ids only), in order per subject
        and endpoint, at most ``per_endpoint`` in flight per endpoint whoever sends them. At most one per endpoint
        and ``endpoints`` in all, each to the tenant with the fewest in flight (migration 0088): the caller passes
        the slots it can start now, so nothing it leases waits behind its own busy pool. The claim reads only
        endpoints it may send to, each up to its first sendable delivery (migration 0097), so a backlog parked
        behind a disabled endpoint or an open circuit costs it nothing but a step per endpoint."""
        owner = uuid.uuid4()
        claimed = func.connvault_claim_webhook_deliveries(
            now, endpoints, per_endpoint, circuit_threshold, owner, until
        ).table_valued("id", "tenant_id", "endpoint_id")
        rows = self._session.execute(select(claimed.c.id, claimed.c.tenant_id, claimed.c.endpoint_id)).all()
        return [DeliveryClaim(row.id, row.tenant_id, row.endpoint_id, owner, until) for row in rows]

    def expire_pending(self, now: datetime, pending_since: datetime, limit: int) -> int:
        """End, across tenants, up to ``limit`` deliveries pending since before ``pending_since`` (none in flight)
        as ``expired``, oldest first (migration 0098). Returns how many expired."""
        return int(
            self._session.scalar(select(func.connvault_expire_webhook_deliveries(now, pending_since, limit))) or 0
        )

    def purge_history(self, before: datetime, limit: int) -> int:
        """Drop finished deliveries (and events left without any) older than ``before``, across tenants."""
        return int(self._session.scalar(select(func.connvault_purge_webhook_history(before, limit))) or 0)

    def get_delivery(self, delivery_id: UUID, *, endpoint_id: UUID | None = None) -> Delivery:
        query = self._deliveries().where(WebhookDeliveryRow.id == delivery_id).execution_options(populate_existing=True)
        if endpoint_id is not None:
            query = query.where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        found = self._session.execute(query).one_or_none()
        if found is None:
            raise NotFound(f"delivery {delivery_id} not found")
        return _delivery(*found)

    def list_deliveries(
        self, endpoint_id: UUID, *, status: DeliveryStatus | None, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """Newest first, keyset-paginated on ``seq``."""
        query = self._deliveries().where(WebhookDeliveryRow.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(WebhookDeliveryRow.status == status.value)
        if cursor:
            query = query.where(WebhookDeliveryRow.seq < _decode_cursor(cursor))
        rows = self._session.execute(query.order_by(WebhookDeliveryRow.seq.desc()).limit(limit + 1)).all()
        items = [_delivery(*row) for row in rows[:limit]]
        next_cursor = str(rows[limit - 1][0].seq) if len(rows) > limit else None
        return Page(items, next_cursor)

    def record_delivered(self, claim: DeliveryClaim, now: datetime, status_code: int) -> bool:
        """Unconditional on the lease: the receiver has it, whoever else may be sending it again."""
        changed = rows_changed(
            self._session,
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == claim.delivery_id, WebhookDeliveryRow.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.DELIVERED.value,
                attempts=WebhookDeliveryRow.attempts + 1,
                last_attempt_at=now,
                last_status_code=status_code,
                last_error_code=None,
                delivered_at=now,
                lease_until=None,
                lease_owner=None,
            ),
        )
        return changed > 0

    def record_failed_attempt(self, claim: DeliveryClaim, now: datetime, outcome: AttemptOutcome) -> bool:
        """Count a failed attempt and schedule the next one (or give up), only while the lease is ours."""
        values: dict[str, Any] = {
            "attempts": WebhookDeliveryRow.attempts + 1,
            "last_attempt_at": now,
            "last_status_code": outcome.status_code,
            "last_error_code": outcome.error_code,
            "lease_until": None,
            "lease_owner": None,
        }
        if outcome.next_attempt_at is None:
            values["status"] = DeliveryStatus.FAILED.value
        else:
            values["next_attempt_at"] = outcome.next_attempt_at
        changed = rows_changed(
            self._session,
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.id == claim.delivery_id,
                WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                WebhookDeliveryRow.lease_owner == claim.owner,
            )
            .values(values),
        )
        return changed > 0

    def release(self, claim: DeliveryClaim) -> None:
        self._session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == claim.delivery_id, WebhookDeliveryRow.lease_owner == claim.owner)
            .values(lease_until=None, lease_owner=None)
        )

    def fail_overdue(self, endpoint_id: UUID, retry_started_before: datetime) -> int:
        """Give up on the endpoint's pending deliveries whose retry window is over although the circuit kept
        them from being tried again (only those tried at least once: a new one gets its chance)."""
        changed = rows_changed(
            self._session,
            update(WebhookDeliveryRow)
            .where(
                WebhookDeliveryRow.endpoint_id == endpoint_id,
                WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                WebhookDeliveryRow.attempts > 0,
                WebhookDeliveryRow.retry_from < retry_started_before,
                WebhookDeliveryRow.lease_owner.is_(None),
            )
            .values(status=DeliveryStatus.FAILED.value),
        )
        return changed

    def redeliver(self, endpoint_id: UUID, delivery_id: UUID, now: datetime) -> Delivery:
        """Queue a delivery again, with a fresh retry window; same event, same ``webhook-id``."""
        changed = rows_changed(
            self._session,
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.endpoint_id == endpoint_id)
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                retry_from=now,
                delivered_at=None,
                held_until=None,
                expired_reason=None,
            ),
        )
        if not changed:
            raise NotFound(f"delivery {delivery_id} not found")
        return self.get_delivery(delivery_id)

    # -- mapping -----------------------------------------------------------------------------------------

    def _deliveries(self) -> Any:
        return select(WebhookDeliveryRow, WebhookEventRow).join(
            WebhookEventRow, WebhookEventRow.id == WebhookDeliveryRow.event_id
        )

    def _seal(self, tenant_id: UUID, endpoint_id: UUID, secret: Redacted[str]) -> bytes:
        return self._sealer.seal_text(secret, SealContext(tenant_id, SECRET_FIELD, endpoint_id))

    def _open(self, tenant_id: UUID, endpoint_id: UUID, sealed: bytes) -> Redacted[str]:
        return self._sealer.open_text(sealed, SealContext(tenant_id, SECRET_FIELD, endpoint_id))


def _endpoint(row: WebhookEndpointRow) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        description=row.description,
        event_types=tuple(EventType(kind) for kind in row.event_types if kind in EventType._value2member_map_),
        enabled=row.enabled,
        previous_secret_expires_at=row.previous_secret_expires_at,
        consecutive_failures=row.consecutive_failures,
        circuit_open_until=row.circuit_open_until,
        last_success_at=row.last_success_at,
        last_failure_at=row.last_failure_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _delivery(row: WebhookDeliveryRow, event: WebhookEventRow) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=event.type,
        subject_id=row.subject_id,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        retry_from=row.retry_from,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error_code=row.last_error_code,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
        occurred_at=event.occurred_at,
        data=dict(event.data),
        expired_reason=None if row.expired_reason is None else ExpiredReason(row.expired_reason),
    )


def _decode_cursor(cursor: str) -> int:
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19 or int(cursor) > _MAX_SEQ:
        raise InvalidInput("cursor is not one this API returned", field="cursor")
    return int(cursor)


_MAX_SEQ = 2**63 - 1
"""The ``bigint`` sequence a delivery cursor names: a larger number of 19 digits failed in the driver (a 500)."""
