"""The webhook endpoint API: validation, limits, tenant isolation, and what the database keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from connvault.db.uow import UnitOfWork
from connvault.services.tenants import create_api_key, create_tenant
from tests.api.conftest import Api, connect_account
from tests.support.factories import as_tenant, owner
from tests.webhooks.conftest import register

if TYPE_CHECKING:
    from devserver.webhook_receiver import WebhookReceiver
    from tests.support.database import TestDatabase


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/x", "event_types": ["connection.created"]}, "url"),
        ({"url": "http://hooks.example.com/x", "event_types": ["connection.created"]}, "url"),
        ({"url": "https://user:pw@hooks.example.com/x", "event_types": ["connection.created"]}, "url"),
        ({"url": "https://hooks.example.com/\x00", "event_types": ["connection.created"]}, "url"),
        ({"url": "https://hooks.example.com/x", "event_types": []}, "body.event_types"),
        ({"url": "https://hooks.example.com/x", "event_types": ["connection.stolen"]}, "body.event_types.0"),
        (
            {"url": "https://hooks.example.com/x", "event_types": ["connection.created"], "secret": "mine"},
            "body.secret",
        ),
    ],
)
def test_a_bad_endpoint_is_a_typed_400_and_writes_nothing(api: Api, db: TestDatabase, body: dict, field: str) -> None:
    answer = api.call("POST", "/webhooks", body=body)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field
    with owner(db) as sql:
        assert sql.run("SELECT count(*) FROM webhook_endpoints")[0][0] == 0


def test_another_tenants_endpoint_and_deliveries_are_not_found(api: Api, receiver: WebhookReceiver) -> None:
    endpoint_id, _ = register(api, receiver.url)
    connect_account(api)
    (delivery,) = api.call("GET", f"/webhooks/{endpoint_id}/deliveries").json()["items"]
    other = create_tenant("Other")
    key = create_api_key(UnitOfWork(other.id)).plaintext
    api.secrets.add(key.reveal())

    for method, path in (
        ("GET", f"/webhooks/{endpoint_id}"),
        ("PATCH", f"/webhooks/{endpoint_id}"),
        ("DELETE", f"/webhooks/{endpoint_id}"),
        ("POST", f"/webhooks/{endpoint_id}/rotate-secret"),
        ("GET", f"/webhooks/{endpoint_id}/deliveries"),
        ("POST", f"/webhooks/{endpoint_id}/deliveries/{delivery['id']}/redeliver"),
    ):
        body = {} if method in ("PATCH", "POST") else None
        assert api.call(method, path, body=body, key=key.reveal()).status == 404, (method, path)
    assert api.call("GET", "/webhooks", key=key.reveal()).json() == {"items": []}


def test_webhook_rows_are_invisible_to_other_tenants_in_the_database(
    api: Api, db: TestDatabase, receiver: WebhookReceiver
) -> None:
    register(api, receiver.url)
    connect_account(api)
    other = create_tenant("Other").id

    for table in ("webhook_endpoints", "webhook_events", "webhook_deliveries"):
        with as_tenant(db, api.tenant.tenant_id) as sql:
            assert sql.run(f"SELECT count(*) FROM {table}")[0][0] == 1, table
        for tenant in (other, None):
            with as_tenant(db, tenant) as sql:
                assert sql.run(f"SELECT count(*) FROM {table}")[0][0] == 0, table


def test_the_secret_is_stored_sealed(api: Api, db: TestDatabase) -> None:
    _endpoint_id, secret = register(api, "https://hooks.example.com/in")

    with owner(db) as sql:
        (sealed,) = sql.run("SELECT secret FROM webhook_endpoints")[0]
    assert secret.encode() not in bytes(sealed)
    assert secret.removeprefix("whsec_").encode() not in bytes(sealed)


def test_an_endpoint_can_be_changed_disabled_and_deleted(api: Api, receiver: WebhookReceiver) -> None:
    endpoint_id, _ = register(api, receiver.url, ["connection.created"])

    changed = api.call(
        "PATCH", f"/webhooks/{endpoint_id}", body={"event_types": ["connection.deleted"], "enabled": False}
    )
    assert changed.status == 200
    assert changed.json()["event_types"] == ["connection.deleted"]
    assert changed.json()["enabled"] is False
    assert api.call("DELETE", f"/webhooks/{endpoint_id}").status == 204
    assert api.call("GET", f"/webhooks/{endpoint_id}").status == 404


def test_a_tenant_has_at_most_twenty_endpoints(api: Api) -> None:
    for n in range(20):
        register(api, f"https://hooks.example.com/{n}")

    refused = api.call(
        "POST", "/webhooks", body={"url": "https://hooks.example.com/x", "event_types": ["connection.created"]}
    )
    assert refused.status == 409


@pytest.mark.parametrize("cursor", ["9223372036854775808", "9999999999999999999", "12345678901234567890", "-1", "1x"])
def test_a_delivery_cursor_past_the_sequences_range_is_a_400(api: Api, receiver: WebhookReceiver, cursor: str) -> None:
    endpoint_id, _ = register(api, receiver.url)

    answer = api.call("GET", f"/webhooks/{endpoint_id}/deliveries", query={"cursor": cursor})

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "cursor"
