"""Webhook tests: the API harness of ``tests/api`` (a tenant connected to a running demo provider), real local
receivers, and a sender run with a clock the test can move."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from connvault.clock import utcnow
from connvault.oauth.http import HttpTransport
from connvault.services.webhook_delivery import DeliveryConfig, DeliveryReport, deliver_due
from devserver.webhook_receiver import Received, WebhookReceiver
from tests.api.conftest import Api, api, provider, reconfigure  # noqa: F401 - fixtures, shared as they are

ALL_CONNECTION_EVENTS = [
    "connection.created",
    "connection.reconnected",
    "connection.refresh_failed",
    "connection.needs_reauth",
    "connection.expired",
    "connection.recovered",
    "connection.deleted",
]
FAST = DeliveryConfig(deadline_seconds=1.0, backoff_base_seconds=1, backoff_cap_seconds=60)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    started: list[WebhookReceiver] = []

    def make(**settings: Any) -> WebhookReceiver:
        running = WebhookReceiver(**settings).__enter__()
        started.append(running)
        return running

    yield make
    for running in started:
        running.__exit__(None, None, None)


def register(client: Api, url: str, event_types: list[str] | None = None, **fields: Any) -> tuple[str, str]:
    """``POST /webhooks``; the endpoint id and its secret (registered with the scanner)."""
    answer = client.call(
        "POST", "/webhooks", body={"url": url, "event_types": event_types or ALL_CONNECTION_EVENTS, **fields}
    )
    assert answer.status == 201, answer.body
    created = answer.json()
    client.secrets.add(created["secret"])
    return created["endpoint"]["id"], created["secret"]


def send(
    *,
    at: datetime | None = None,
    config: DeliveryConfig = FAST,
    seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """One sender run, at ``at`` (default now) as far as leases and backoff are concerned; setting ``stop`` ends
    it the way its deadline would (no new claims, attempts in flight finish)."""
    offset = (at - utcnow()) if at is not None else timedelta()
    transport = HttpTransport(config.deadline_seconds, maxsize=config.concurrency)

    def remaining_ms() -> float:
        return 0.0 if stop is not None and stop.is_set() else seconds * 1000

    try:
        return deliver_due(remaining_ms, config=config, transport=transport, now=lambda: utcnow() + offset)
    finally:
        transport.close()


def verified(received: Received, secret: str) -> dict[str, Any]:
    """The payload, verified the way a tenant verifies it: with the Standard Webhooks library."""
    return Webhook(secret).verify(received.body, received.headers)
