"""Fan-out mode: the scan enqueues due ids on SQS (moto), the worker refreshes them with its own leases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from connvault.models import ConnectionStatus
from connvault.oauth.client import OAuthClient
from connvault.services.fanout import DueMessage, QueuedMessage, WorkerResult, enqueue_due, refresh_messages
from demo_provider import Fault
from tests.scheduler.conftest import FAST, POLICY, Site, forever, held_leases, load, set_columns

if TYPE_CHECKING:
    from tests.support.database import TestDatabase


@pytest.fixture
def queue(database: TestDatabase) -> Iterator[tuple[Any, str]]:
    """An SQS queue in the session's moto (the ``database`` fixture started it)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"refresh-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """The queue's messages as Lambda's SQS event source would hand them over."""
    records: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return records
        records += [{"messageId": m["MessageId"], "body": m["Body"]} for m in batch]


def work(records: list[dict[str, Any]], oauth: OAuthClient, remaining_ms: Any = forever) -> WorkerResult:
    messages = [QueuedMessage(record["messageId"], record["body"]) for record in records]
    return refresh_messages(messages, remaining_ms=remaining_ms, config=FAST, policy=POLICY, oauth=oauth)


def test_scan_enqueues_each_due_id_once_and_keeps_no_lease(
    site: Site, db: TestDatabase, queue: tuple[Any, str]
) -> None:
    # Given five due connections and one that is not
    due = site.connect(5)
    site.connect(expires_in=timedelta(hours=2))
    sqs, url = queue

    # When the scan runs in fan-out mode (claims in batches of two)
    report = enqueue_due(queue_url=url, remaining_ms=forever, config=replace(FAST, batch_size=2), sqs=sqs)

    # Then the due ids are on the queue, the provider was not called, and no lease is left
    assert (report.claimed, report.enqueued) == (5, 5)
    messages = [DueMessage.from_body(record["body"]) for record in receive_all(sqs, url)]
    assert sorted(m.connection_id for m in messages) == sorted(due)
    assert {m.tenant_id for m in messages} == {site.tenant_id}
    assert site.refresh_calls() == 0
    assert held_leases(db) == 0


def test_worker_refreshes_each_connection_once_even_when_a_message_comes_twice(
    site: Site, db: TestDatabase, oauth: OAuthClient, queue: tuple[Any, str]
) -> None:
    # Given enqueued due connections, one of whose messages SQS delivers twice
    ids = site.connect(4)
    sqs, url = queue
    enqueue_due(queue_url=url, remaining_ms=forever, config=FAST, sqs=sqs)
    records = receive_all(sqs, url)
    records.append({**records[0], "messageId": "duplicate"})

    # When the worker takes the batch
    result = work(records, oauth)

    # Then every connection was refreshed once, the duplicate was a no-op, and every message is consumed
    assert (result.report.refreshed, result.report.skipped) == (4, 1)
    assert result.failed_message_ids == ()
    assert site.refresh_calls() == 4
    assert all(load(site.tenant_id, cid).last_refresh_at is not None for cid in ids)
    assert held_leases(db) == 0


def test_worker_leaves_a_connection_someone_else_is_refreshing(
    site: Site, db: TestDatabase, oauth: OAuthClient
) -> None:
    # Given a connection whose lease a token fetch holds
    [connection_id] = site.connect()
    set_columns(db, connection_id, refresh_lease_until=datetime.now(UTC) + timedelta(seconds=20))
    body = DueMessage(connection_id, site.tenant_id).to_body()

    # When its message arrives, Then the worker skips it and consumes the message
    result = work([{"messageId": "m1", "body": body}], oauth)
    assert result.report.skipped == 1
    assert result.failed_message_ids == ()
    assert site.refresh_calls() == 0


def test_worker_hands_back_unreadable_and_unstarted_messages(site: Site, db: TestDatabase, oauth: OAuthClient) -> None:
    # Given one malformed message and two good ones
    ids = site.connect(2)
    records = [{"messageId": "bad", "body": '{"v": 1, "connection_id": "nope"}'}] + [
        {"messageId": f"m{i}", "body": DueMessage(cid, site.tenant_id).to_body()} for i, cid in enumerate(ids)
    ]

    # When the worker has no time left, Then every message goes back to the queue and nothing was leased
    result = work(records, oauth, remaining_ms=lambda: 0)
    assert sorted(result.failed_message_ids) == ["bad", "m0", "m1"]
    assert site.refresh_calls() == 0
    assert held_leases(db) == 0

    # And with time, only the malformed one does
    assert work(records, oauth).failed_message_ids == ("bad",)


def test_stale_lease_survives_the_queue(
    site: Site, db: TestDatabase, oauth: OAuthClient, queue: tuple[Any, str]
) -> None:
    # Given a connection whose last refresher died holding the lease (the provider may have rotated the token)
    [connection_id] = site.connect()
    set_columns(
        db,
        connection_id,
        refresh_lease_owner=uuid.uuid4(),
        refresh_lease_until=datetime.now(UTC) - timedelta(seconds=1),
    )
    sqs, url = queue
    enqueue_due(queue_url=url, remaining_ms=forever, config=FAST, sqs=sqs)
    records = receive_all(sqs, url)
    assert DueMessage.from_body(records[0]["body"]).stale

    # When the worker's refresh is refused
    site.demo.inject(Fault.error(400, "invalid_grant"))
    result = work(records, oauth)

    # Then the reason says the refresh was interrupted, not merely that the grant is invalid
    assert result.report.permanent_failures == 1
    connection = load(site.tenant_id, connection_id)
    assert (connection.status, connection.last_error_code) == (ConnectionStatus.NEEDS_REAUTH, "refresh_interrupted")


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,  # past the parser's depth: RecursionError
        '{"v": true, "connection_id": "%(c)s", "tenant_id": "%(t)s"}',  # true == 1, but not version 1
        '{"v": 1.0, "connection_id": "%(c)s", "tenant_id": "%(t)s"}',
        '{"v": 1, "connection_id": ["%(c)s"], "tenant_id": "%(t)s"}',
        '{"v": 1, "connection_id": "%(c)s", "tenant_id": "%(t)s", "stale": "yes"}',
        '[{"v": 1, "connection_id": "%(c)s", "tenant_id": "%(t)s"}]',
    ],
    ids=["deep", "v_true", "v_float", "id_list", "stale_string", "array"],
)
def test_only_the_bad_record_of_a_batch_fails_and_types_are_checked_exactly(
    site: Site, oauth: OAuthClient, body: str
) -> None:
    """Issue 23.9: one hostile record used to fail the whole batch (RecursionError) or pass as another type."""
    good, other = site.connect(2)
    records = [
        {"messageId": "bad", "body": body % {"c": other, "t": site.tenant_id} if "%(" in body else body},
        {"messageId": "good", "body": DueMessage(good, site.tenant_id).to_body()},
    ]

    result = work(records, oauth)

    assert result.failed_message_ids == ("bad",)
    assert site.refresh_calls() == 1
