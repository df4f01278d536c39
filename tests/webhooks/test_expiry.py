"""A parked backlog is bounded (migration 0098): what is still pending CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS (3 days)
after its event expires, sent or not, with the reason it was not sent, listed and re-sendable. Before, a delivery
never tried (behind a disabled endpoint, an open circuit, or an earlier delivery of its connection) stayed pending
for good, and the backlog only grew."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from connvault.clock import utcnow
from connvault.config import Settings
from connvault.errors import ConfigurationError
from connvault.services.webhook_delivery import expire_backlog, run_scheduled
from tests.api.conftest import connect_account
from tests.support.factories import owner
from tests.webhooks.conftest import register

if TYPE_CHECKING:
    from tests.api.conftest import Api
    from tests.support.database import TestDatabase

THREE_DAYS_LATER = timedelta(days=3, minutes=1)


def listed(api: Api, endpoint_id: str, **query: str) -> list[dict[str, Any]]:
    answer = api.call("GET", f"/webhooks/{endpoint_id}/deliveries", query=query or None)
    assert answer.status == 200, answer.body
    return list(answer.json()["items"])


def test_deliveries_pending_past_the_maximum_age_expire_with_the_reason_they_were_not_sent(
    api: Api, db: TestDatabase
) -> None:
    # Given four endpoints, each with a connection's "created" and "reconnected" deliveries (the second waiting
    # behind the first): one disabled, one whose circuit is open, one whose first delivery keeps being put off, and
    # one whose first delivery a sender holds right now
    kinds = ["connection.created", "connection.reconnected"]
    disabled, tripped, put_off, in_flight = (register(api, "https://hooks.example.com/" + n, kinds)[0] for n in "abcd")
    connect_account(api)
    connect_account(api)
    assert api.call("PATCH", f"/webhooks/{disabled}", body={"enabled": False}).status == 200
    with owner(db) as sql:
        sql.run(
            "UPDATE webhook_endpoints SET consecutive_failures = 5, circuit_open_until = now() + interval '1 hour'"
            " WHERE id = CAST(:e AS uuid)",
            e=tripped,
        )
        for endpoint, column in ((put_off, "next_attempt_at"), (in_flight, "lease_until")):
            sql.run(
                f"UPDATE webhook_deliveries SET attempts = 1, {column} = now() + interval '4 days'"
                " WHERE seq = (SELECT min(seq) FROM webhook_deliveries WHERE endpoint_id = CAST(:e AS uuid))",
                e=endpoint,
            )

    # When the scheduled function runs within three days, nothing expires: a disabled endpoint's deliveries wait
    assert expire_backlog() == 0
    assert [d["status"] for d in listed(api, disabled)] == ["pending", "pending"]

    # When it runs three days after the events
    expired = expire_backlog(now=lambda: utcnow() + THREE_DAYS_LATER)

    # Then every delivery not in flight expired, each saying why it was not sent, and the one in flight was left to
    # its sender
    assert expired == 7
    reasons = {
        endpoint: [(d["status"], d["expired_reason"], d["next_attempt_at"]) for d in listed(api, endpoint)]
        for endpoint in (disabled, tripped, put_off)
    }
    assert reasons == {
        disabled: [("expired", "endpoint_disabled", None)] * 2,
        tripped: [("expired", "circuit_open", None)] * 2,
        put_off: [("expired", "max_age", None)] * 2,
    }
    assert [(d["status"], d["expired_reason"]) for d in listed(api, in_flight)] == [
        ("expired", "max_age"),
        ("pending", None),
    ]
    assert [d["event_type"] for d in listed(api, disabled, status="expired")] == kinds[::-1]

    # When the tenant asks for one again, it is pending again, with a fresh window and no reason
    delivery = listed(api, put_off)[0]["id"]
    again = api.call("POST", f"/webhooks/{put_off}/deliveries/{delivery}/redeliver")
    assert again.status == 202
    assert (again.json()["status"], again.json()["expired_reason"]) == ("pending", None)


def test_the_scheduled_function_expires_a_backlog_a_bounded_batch_at_a_time_oldest_first(
    api: Api, db: TestDatabase
) -> None:
    # Given 2,500 deliveries pending for four days behind a disabled endpoint, and one of a day
    endpoint, _ = register(api, "https://hooks.example.com/parked", ["connection.created"], enabled=False)
    with owner(db) as sql:
        sql.run(
            "WITH e AS (INSERT INTO webhook_events (tenant_id, type, subject_id, data, occurred_at)"
            " SELECT w.tenant_id, 'connection.created', gen_random_uuid(), '{}', now() - n * interval '1 second'"
            " - CASE WHEN n = 1 THEN interval '1 day' ELSE interval '4 days' END"
            " FROM webhook_endpoints w, generate_series(1, 2501) n WHERE w.id = CAST(:e AS uuid)"
            " RETURNING id, tenant_id, subject_id, occurred_at)"
            " INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id, retry_from, created_at)"
            " SELECT tenant_id, CAST(:e AS uuid), id, subject_id, occurred_at, occurred_at FROM e",
            e=endpoint,
        )

    # When expiry runs two batches of 1,000, then the scheduled function runs
    first = expire_backlog(batch=1000, batches=2)
    with owner(db) as sql:
        oldest_first = sql.run(
            "SELECT max(retry_from) FILTER (WHERE status = 'expired')"
            " < min(retry_from) FILTER (WHERE status = 'pending') FROM webhook_deliveries"
        )
    run = run_scheduled(lambda: 0.0)  # no time left to send: expiry alone

    # Then the first expired the 2,000 oldest, the scheduled run the other 500, and the delivery of a day is pending
    assert (first, run["backlog_expired"]) == (2000, 500)
    assert oldest_first == [[True]]
    with owner(db) as sql:
        assert sql.run(
            "SELECT status, count(*), max(retry_from) < now() - interval '3 days' FROM webhook_deliveries"
            " GROUP BY status ORDER BY status"
        ) == [["expired", 2500, True], ["pending", 1, False]]


@pytest.mark.parametrize("seconds", ["86399", "31536001", "99999999999"])
def test_the_maximum_age_of_a_pending_delivery_is_between_its_retry_window_and_a_year(seconds: str) -> None:
    """Expiry must never cut a delivery's retries short; past a year, the expiry's cut-off fell out of datetime's
    range and every run of the sender failed before it sent anything (an outside probe)."""
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env(
            {"CONNVAULT_WEBHOOK_RETRY_WINDOW_SECONDS": "86400", "CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS": seconds}
        )

    assert error.value.field == "webhook_max_pending_seconds"
    assert Settings().webhook_max_pending_seconds == 3 * 86_400
