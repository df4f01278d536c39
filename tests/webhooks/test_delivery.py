"""Webhooks end to end: state changes made by the real code paths (connect callback, token fetch refreshing,
delete) become events in the same transaction, and the sender delivers them to real local receivers, signed
per Standard Webhooks (verified with the ``standardwebhooks`` library), in order per connection, retried with
backoff, never slowing anyone else down."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from connvault.clock import utcnow
from connvault.db.uow import UnitOfWork
from connvault.services.webhook_delivery import DeliveryConfig, DeliveryReport
from demo_provider import DemoProvider, Fault
from devserver.demo_setup import create_demo_tenant
from devserver.webhook_receiver import WebhookReceiver
from tests.api.conftest import Api, connect_account
from tests.hardening.support import fetch
from tests.support.database import TestDatabase
from tests.support.factories import owner
from tests.support.secrets import SecretRegistry
from tests.webhooks.conftest import FAST, register, send, verified


def events_in_outbox(db: TestDatabase) -> list[tuple[str, str]]:
    with owner(db) as sql:
        return [tuple(row) for row in sql.run("SELECT type, subject_id::text FROM webhook_events ORDER BY occurred_at")]


def test_a_new_connection_is_delivered_signed_as_standard_webhooks(api: Api, receiver: WebhookReceiver) -> None:
    # Given an endpoint for connection events
    _endpoint_id, secret = register(api, receiver.url, ["connection.created"])

    # When an end user connects an account and the sender runs
    connection_id = connect_account(api)
    report = send()

    # Then the receiver got one delivery that the Standard Webhooks library verifies with the secret
    (delivery,) = receiver.wait_for(1)
    payload = verified(delivery, secret)
    assert report.delivered == 1
    assert payload["type"] == "connection.created"
    assert payload["data"]["connection_id"] == connection_id
    assert payload["data"]["provider"] == "demo"
    assert payload["data"]["end_user_id"] == "user-1"
    assert payload["data"]["status"] == "active"
    assert delivery.headers["webhook-id"].startswith("msg_")
    assert delivery.headers["content-type"] == "application/json"


def test_no_event_is_written_for_a_tenant_without_a_subscribed_endpoint(api: Api, db: TestDatabase) -> None:
    connect_account(api)
    register(api, "https://hooks.example.com/x", ["connection.deleted"])
    connect_account(api, alias="second")

    assert events_in_outbox(db) == []


def test_refresh_failures_reauth_and_recovery_arrive_in_order_with_attempts_and_codes(
    api: Api, provider: DemoProvider, receiver: WebhookReceiver
) -> None:
    # Given a connection and an endpoint for every connection event
    connection_id = connect_account(api)
    _endpoint_id, secret = register(api, receiver.url)

    # When two refreshes fail transiently, one succeeds, then the provider revokes the grant
    provider.inject(Fault.server_error(), Fault.server_error())
    assert fetch(api, connection_id).status == 503
    with owner_clear_backoff(api, connection_id):
        assert fetch(api, connection_id).status == 503
    with owner_clear_backoff(api, connection_id):
        assert fetch(api, connection_id).status == 200
    provider.inject(Fault.error(400, "invalid_grant"))
    assert fetch(api, connection_id).status == 409
    for _ in range(5):
        send()

    # Then the receiver saw them in that order, each with what it needs to act, and no token anywhere
    payloads = [verified(item, secret) for item in receiver.wait_for(4)]
    assert [(p["type"], p["data"].get("attempt"), p["data"]["error_code"]) for p in payloads] == [
        ("connection.refresh_failed", 1, "server_error"),
        ("connection.refresh_failed", 2, "server_error"),
        ("connection.recovered", None, None),
        ("connection.needs_reauth", None, "invalid_grant"),
    ]
    assert payloads[0]["data"]["next_retry_at"] is not None
    stats = provider.stats()
    for item in receiver.received:
        for token in (*stats.access_tokens, *stats.live_refresh_tokens, *stats.revoked):
            assert token.encode() not in item.body


class owner_clear_backoff:  # noqa: N801 - reads as a phrase in the test
    """Let the next token fetch try the provider again at once (the backoff a transient failure set)."""

    def __init__(self, api: Api, connection_id: str) -> None:
        self._api, self._id = api, connection_id

    def __enter__(self) -> None:
        from sqlalchemy import text

        from connvault.db.uow import UnitOfWork

        with UnitOfWork(self._api.tenant.tenant_id) as uow:
            uow.session.execute(text("UPDATE connections SET next_refresh_at = NULL WHERE id = :i"), {"i": self._id})
            uow.commit()

    def __exit__(self, *_exc: object) -> None:
        return


def test_reconnect_and_delete_are_events_and_a_plain_refresh_is_not(
    api: Api, db: TestDatabase, receiver: WebhookReceiver
) -> None:
    connection_id = connect_account(api)
    _endpoint_id, secret = register(api, receiver.url)

    assert fetch(api, connection_id).status == 200  # a healthy refresh: no event
    connect_account(api)  # the same end user connects again
    assert api.call("DELETE", f"/connections/{connection_id}").status == 200
    send()

    kinds = [verified(item, secret)["type"] for item in receiver.wait_for(2)]
    assert kinds == ["connection.reconnected", "connection.deleted"]
    assert [kind for kind, _ in events_in_outbox(db)] == kinds


def test_a_failing_receiver_is_retried_with_backoff_then_failed_after_the_window_and_can_be_redelivered(
    api: Api, make_receiver
) -> None:
    # Given a receiver that answers 500
    failing = make_receiver(status=500)
    endpoint_id, secret = register(api, failing.url, ["connection.created"])
    connect_account(api)

    # When the sender runs: the attempt fails and the next one is scheduled later, not at once
    first = send()
    assert (first.delivered, first.retrying) == (0, 1)
    assert send().claimed == 0
    (listed,) = api.call("GET", f"/webhooks/{endpoint_id}/deliveries").json()["items"]
    assert listed["status"] == "pending"
    assert listed["attempts"] == 1
    assert listed["last_status_code"] == 500

    # When it keeps failing past the retry window (a day later)
    late = send(at=utcnow() + timedelta(days=1, minutes=1))

    # Then the delivery is failed, listed as such, and not tried again
    assert late.failed == 1
    failed = api.call("GET", f"/webhooks/{endpoint_id}/deliveries", query={"status": "failed"}).json()["items"]
    assert [d["id"] for d in failed] == [listed["id"]]
    assert send(at=utcnow() + timedelta(days=2)).claimed == 0

    # When the receiver is fixed and the tenant asks for a redelivery
    failing.status = 200
    again = api.call("POST", f"/webhooks/{endpoint_id}/deliveries/{listed['id']}/redeliver")
    assert again.status == 202
    send()

    # Then it arrives with the same webhook-id as every earlier attempt
    attempts = failing.wait_for(3)
    assert len({item.headers["webhook-id"] for item in attempts}) == 1
    assert verified(attempts[-1], secret)["type"] == "connection.created"
    assert api.call("GET", f"/webhooks/{endpoint_id}/deliveries").json()["items"][0]["status"] == "delivered"


def test_a_slow_receiver_costs_only_its_own_endpoint(api: Api, make_receiver) -> None:
    # Given a receiver that takes 5 s to answer (past the 2 s deadline) and a healthy one, both subscribed
    slow = make_receiver(delay_seconds=5.0)
    healthy = make_receiver()
    slow_id, _ = register(api, slow.url, ["connection.created"])
    _healthy_id, secret = register(api, healthy.url, ["connection.created"])
    for n in range(8):
        connect_account(api, alias=f"a{n}")

    # When the sender runs with two slots per endpoint
    report = send(config=DeliveryConfig(deadline_seconds=2.0, per_endpoint=2, concurrency=8))

    # Then the slow endpoint never had more than two attempts at once: each lasts its whole 2 s deadline, so its
    # arrivals come in pairs at least 2 s apart
    arrivals = sorted(item.at for item in slow.received)
    assert len(arrivals) >= 6
    assert max(sum(1 for t in arrivals if start <= t < start + 1.8) for start in arrivals) <= 2
    # and the healthy one had all eight before the slow one's fifth attempt began (4 s of slow attempts): it
    # never waited behind them
    assert len(healthy.wait_for(8)) == 8
    assert max(item.at for item in healthy.received) < arrivals[4]
    assert report.delivered == 8
    assert all(verified(item, secret) for item in healthy.received)
    listed = api.call("GET", f"/webhooks/{slow_id}/deliveries").json()["items"]
    assert {d["last_error_code"] for d in listed if d["attempts"]} <= {"timeout", "unreachable"}
    assert all(d["status"] == "pending" for d in listed)


def test_endpoints_whose_deliveries_all_wait_behind_a_parked_one_take_no_turn(
    api: Api, db: TestDatabase, make_receiver
) -> None:
    """An outside probe: endpoints whose first delivery a receiver parked for an hour (503 with Retry-After) held
    every claim slot with deliveries queued behind it, and another endpoint's due delivery never went out."""
    failing, healthy = make_receiver(status=503), make_receiver()
    parked = [register(api, failing.url, ["connection.created", "connection.reconnected"])[0] for _ in range(2)]
    connect_account(api)
    with owner(db) as sql:  # each of those endpoints: its "created" parked for an hour
        sql.run("UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour'")
    connect_account(api)  # a reconnect, queued there behind the parked "created": their oldest due delivery
    _healthy_id, secret = register(api, healthy.url, ["connection.reconnected"])
    connect_account(api)  # another: queued there too, due at once here, and younger

    report = send(config=DeliveryConfig(deadline_seconds=1.0, concurrency=len(parked)), seconds=5.0)

    assert [verified(item, secret)["type"] for item in healthy.wait_for(1)] == ["connection.reconnected"]
    assert report.delivered == 1
    assert failing.received == []


@pytest.fixture
def noisy(api: Api, provider: DemoProvider, secrets: SecretRegistry) -> Api:
    """A second tenant beside ``api``'s, with an integration for the same demo provider."""
    tenant = create_demo_tenant(provider, name="Noisy tenant")
    secrets.add(tenant.api_key.reveal())
    return Api(tenant, secrets)


def test_a_tenant_whose_receivers_are_all_slow_delays_another_tenants_delivery_by_one_attempt(
    api: Api, noisy: Api, db: TestDatabase, make_receiver: Callable[..., WebhookReceiver]
) -> None:
    """An outside probe: a tenant whose 20 endpoints answered 200 after 4.6 s (inside the 5 s deadline, so no
    circuit opened) held another tenant's delivery back 15-24 s. A sender leased up to four deliveries per endpoint
    for each free slot and queued them behind its pool, and each freed slot went to the endpoint with the oldest
    backlog: the slow tenant's."""
    # Given a tenant whose three endpoints answer 2xx after 0.7 s (inside the 1 s deadline: no circuit opens)
    config = DeliveryConfig(deadline_seconds=1.0, concurrency=2)
    slow, fast = make_receiver(delay_seconds=0.7), make_receiver()
    for _ in range(3):
        register(noisy, slow.url, ["connection.created"])
    _fast_id, secret = register(api, fast.url, ["connection.created"])
    connect_account(noisy, alias="first")
    stop = threading.Event()
    reports: list[DeliveryReport] = []
    leased: list[int] = []

    def watch_leases() -> None:
        with owner(db) as sql:
            while not stop.is_set():
                leased.append(sql.run("SELECT count(*) FROM webhook_deliveries WHERE lease_until > now()")[0][0])
                time.sleep(0.02)

    running = [
        threading.Thread(target=lambda: reports.append(send(config=config, stop=stop))),
        threading.Thread(target=watch_leases),
    ]
    for thread in running:
        thread.start()
    try:
        # and a sender busy with it when it queues a backlog of twelve deliveries, older than our event (its two
        # slots were taken at different moments, so they free one at a time)
        slow.wait_for(1)
        for n in range(4):
            connect_account(noisy, alias=f"backlog-{n}")
        # When our connection is created
        connect_account(api)
        committed = time.monotonic()
        (arrived,) = fast.wait_for(1, timeout=6.0)
    finally:
        stop.set()
        for thread in running:
            thread.join()

    # Then its delivery went out about one slow attempt (0.7 s) later, not after the backlog's twelve
    assert arrived.at - committed < config.deadline_seconds + 0.5
    assert verified(arrived, secret)["type"] == "connection.created"
    # and the sender never held more deliveries than it had slots to send them
    assert leased
    assert max(leased) <= config.concurrency
    assert reports[0].errors == 0


def test_a_claim_takes_one_delivery_per_endpoint_each_to_the_tenant_with_the_fewest_in_flight(
    api: Api, noisy: Api, receiver: WebhookReceiver
) -> None:
    """The claim itself (migration 0088), whichever sender calls it: at most one delivery per endpoint and no more
    than the slots asked for, and a tenant with nothing in flight before one with an older backlog."""
    noisy_endpoints = sorted(register(noisy, receiver.url, ["connection.created"])[0] for _ in range(2))
    for n in range(3):
        connect_account(noisy, alias=f"n{n}")
    quiet_endpoint, _ = register(api, receiver.url, ["connection.created"])
    connect_account(api)

    def claim(slots: int) -> list[str]:
        now = utcnow()
        with UnitOfWork(None) as uow:
            claims = uow.webhooks.claim(
                now, endpoints=slots, per_endpoint=4, circuit_threshold=5, until=now + timedelta(minutes=1)
            )
            uow.commit()
        return sorted(str(claimed.endpoint_id) for claimed in claims)

    # Nothing in flight anywhere: the oldest backlog goes first
    (first,) = claim(1)
    assert first in noisy_endpoints
    # The noisy tenant has one in flight, ours none: ours goes next, although its delivery is the youngest
    assert claim(1) == [quiet_endpoint]
    # Five slots, two endpoints with deliveries left (five of them): one each
    assert claim(5) == noisy_endpoints


def test_a_2xx_with_an_answer_body_past_the_read_limit_is_delivered(api: Api, make_receiver) -> None:
    """The answer's body is never read past 64 KiB and never matters: an outside probe's 200 with 70 KB counted as a
    failed attempt (``response_too_large``), sent again and again, and pushed the endpoint toward its circuit."""
    chatty = make_receiver(status=200, answer_bytes=70_000)
    endpoint_id, _ = register(api, chatty.url, ["connection.created"])
    connect_account(api)

    report = send()

    assert report.delivered == 1
    assert len(chatty.received) == 1
    (delivery,) = api.call("GET", f"/webhooks/{endpoint_id}/deliveries").json()["items"]
    assert (delivery["status"], delivery["last_error_code"]) == ("delivered", None)


def test_repeated_failures_open_the_circuit_visible_on_the_endpoint(api: Api, make_receiver) -> None:
    failing = make_receiver(status=503)
    endpoint_id, _ = register(api, failing.url, ["connection.created"])
    for n in range(6):
        connect_account(api, alias=f"c{n}")
    config = DeliveryConfig(deadline_seconds=1.0, per_endpoint=6, circuit_threshold=5)

    send(config=config)

    endpoint = api.call("GET", f"/webhooks/{endpoint_id}").json()
    assert endpoint["circuit"]["state"] == "open"
    assert endpoint["circuit"]["consecutive_failures"] >= 5
    # While open, nothing is sent; after the cooldown a single probe goes out, and its failure reopens it
    seen = len(failing.received)
    assert send(config=config).claimed == 0
    assert send(config=config, at=utcnow() + timedelta(minutes=2)).claimed == 1
    assert len(failing.received) == seen + 1
    assert api.call("GET", f"/webhooks/{endpoint_id}").json()["circuit"]["state"] == "open"
    # A successful probe closes it, and the rest flows in the same run
    failing.status = 200
    healed = send(config=config, at=utcnow() + timedelta(hours=2))
    assert healed.delivered == 6
    assert api.call("GET", f"/webhooks/{endpoint_id}").json()["circuit"]["state"] == "closed"


def test_a_rotated_secret_signs_alongside_the_old_one_during_the_overlap(api: Api, receiver: WebhookReceiver) -> None:
    endpoint_id, old = register(api, receiver.url, ["connection.created"])
    rotated = api.call("POST", f"/webhooks/{endpoint_id}/rotate-secret", body={"overlap_seconds": 3600})
    assert rotated.status == 200
    new = rotated.json()["secret"]
    api.secrets.add(new)

    connect_account(api)
    send()

    (item,) = receiver.wait_for(1)
    assert verified(item, old)["type"] == verified(item, new)["type"] == "connection.created"
    assert len(item.headers["webhook-signature"].split(" ")) == 2


def test_after_the_overlap_only_the_new_secret_signs(api: Api, receiver: WebhookReceiver) -> None:
    from standardwebhooks.webhooks import WebhookVerificationError

    endpoint_id, old = register(api, receiver.url, ["connection.created"])
    new = api.call("POST", f"/webhooks/{endpoint_id}/rotate-secret", body={"overlap_seconds": 0}).json()["secret"]
    api.secrets.add(new)
    connect_account(api)
    send()

    (item,) = receiver.wait_for(1)
    assert verified(item, new)["type"] == "connection.created"
    with pytest.raises(WebhookVerificationError):
        verified(item, old)


def test_the_secret_is_shown_at_creation_only(api: Api) -> None:
    endpoint_id, secret = register(api, "https://hooks.example.com/in")

    assert secret.startswith("whsec_")
    for answer in (api.call("GET", f"/webhooks/{endpoint_id}"), api.call("GET", "/webhooks")):
        assert answer.status == 200
        assert secret not in answer.body
        assert "secret" not in json.dumps(answer.json()).replace("previous_secret_expires_at", "")


def test_the_receivers_answer_body_and_headers_are_never_logged(api: Api, make_receiver, caplog) -> None:
    failing = make_receiver(status=500)
    register(api, failing.url, ["connection.created"])
    connect_account(api)
    send(config=FAST)

    assert failing.url not in caplog.text


def test_a_confirmed_session_emits_created_at_the_confirmation_not_at_the_callback(
    api: Api, db: TestDatabase, receiver: WebhookReceiver
) -> None:
    from tests.api.test_confirmed_connect import park

    register(api, receiver.url, ["connection.created"])
    session_id, code = park(api)
    assert events_in_outbox(db) == []

    confirmed = api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code})

    assert [kind for kind, _ in events_in_outbox(db)] == ["connection.created"]
    assert events_in_outbox(db)[0][1] == confirmed.json()["id"]


def test_the_scheduled_handler_sends_with_its_sample_event(api: Api, receiver: WebhookReceiver) -> None:
    from pathlib import Path

    from devserver.handlers import InvocationContext, load_handler

    register(api, receiver.url, ["connection.created"])
    connect_account(api)
    sample = json.loads((Path(__file__).resolve().parents[2] / "events" / "webhook_delivery.json").read_text())

    answer = load_handler("webhook_delivery")(sample, InvocationContext())

    assert answer["delivered"] == 1
    assert answer["unconfirmed_revoked"] == 0
    assert len(receiver.wait_for(1)) == 1


def test_finished_history_past_its_retention_is_purged_and_pending_deliveries_are_kept(
    api: Api, db: TestDatabase, make_receiver
) -> None:
    from connvault.services.webhook_delivery import purge_history

    healthy, failing = make_receiver(), make_receiver(status=500)
    register(api, healthy.url, ["connection.created"])
    register(api, failing.url, ["connection.created"])
    connect_account(api)
    send()

    assert purge_history() == 0  # within the retention
    assert purge_history(now=lambda: utcnow() + timedelta(days=31)) == 1

    with owner(db) as sql:
        assert sql.run("SELECT status FROM webhook_deliveries") == [["pending"]]
        assert sql.run("SELECT count(*) FROM webhook_events")[0][0] == 1


def test_a_refused_app_is_one_integration_event_however_many_connections_it_stops(
    api: Api, provider: DemoProvider, db: TestDatabase, receiver: WebhookReceiver
) -> None:
    from tests.api.test_integration_status import run_scheduler, the_app_is_refused
    from tests.hardening.support import make_due

    # Given two due connections and an endpoint for integration events
    for end_user in ("user-1", "user-2"):
        make_due(db, connect_account(api, end_user_id=end_user))
    _endpoint_id, secret = register(api, receiver.url, ["integration.credentials_invalid"])

    # When the provider starts refusing the tenant's app and two scheduled runs meet the integration
    the_app_is_refused(provider, api)
    run_scheduler()
    run_scheduler()
    send()

    # Then exactly one event says so, naming the integration and the provider's code, and nothing secret
    (delivery,) = receiver.wait_for(1)
    payload = verified(delivery, secret)
    assert payload["type"] == "integration.credentials_invalid"
    assert (payload["data"]["provider"], payload["data"]["status"]) == ("demo", "invalid_credentials")
    assert payload["data"]["error_code"] == "invalid_client"
    assert payload["data"]["since"] is not None
    assert [kind for kind, _subject in events_in_outbox(db)] == ["integration.credentials_invalid"]
    assert secret.encode() not in delivery.body
    assert provider.settings.client_secret.encode() not in delivery.body


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 5 ", 5.0),
        ("9" * 5000, 3600.0),
        (None, 0.0),
        ("-1", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("\u00b2", 0.0),  # a digit to str.isdigit, not to float: an outside reading found it raised
        ("\u0663", 0.0),
    ],
)
def test_a_receivers_retry_after_is_ascii_seconds_capped(value: str | None, seconds: float) -> None:
    from connvault.services.webhook_delivery import _retry_after

    assert _retry_after(value, 3600.0) == seconds
