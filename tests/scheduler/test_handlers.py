"""The two Lambda handlers, invoked in-process with the sample events in ``events/``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from connvault import wiring
from connvault.services.fanout import DueMessage
from devserver.handlers import InvocationContext, load_handler
from tests.scheduler.conftest import EVENTS, Site, held_leases
from tests.support.secrets import SecretRegistry

if TYPE_CHECKING:
    from tests.support.database import TestDatabase


def event(name: str) -> dict:
    return json.loads(Path(EVENTS / name).read_text())


@pytest.fixture
def plain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No jitter, so the handler's run is quick; settings and wiring rebuilt from the environment."""
    monkeypatch.setenv("CONNVAULT_REFRESH_JITTER_SECONDS", "0")
    monkeypatch.delenv("CONNVAULT_REFRESH_QUEUE_URL", raising=False)
    wiring.reset()
    yield
    monkeypatch.undo()
    wiring.reset()


def test_scheduled_handler_refreshes_and_emits_metrics(
    site: Site, db: TestDatabase, plain_settings: None, capsys: pytest.CaptureFixture[str], secrets: SecretRegistry
) -> None:
    # Given three due connections
    site.connect(3)

    # When EventBridge invokes the scheduled function
    answer = load_handler("scheduled_refresh")(event("scheduled_refresh.json"), InvocationContext(remaining_ms=600_000))

    # Then it answers counts only, and flushed one EMF metric per outcome without a secret in sight
    assert (answer["claimed"], answer["refreshed"], answer["due_backlog"]) == (3, 3, 0)
    output = capsys.readouterr().out
    secrets.check(output, "the function's output")
    emf = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {
        "Refreshed",
        "RefreshPermanentFailure",
        "RefreshTransientFailure",
        "RefreshSkipped",
        "RefreshDueBacklog",
        "RefreshRunDuration",
    } <= names
    assert held_leases(db) == 0


def test_scheduled_handler_enqueues_in_fan_out_mode_and_the_worker_refreshes(
    site: Site, db: TestDatabase, plain_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given fan-out mode and two due connections
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"refresh-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("CONNVAULT_REFRESH_QUEUE_URL", url)
    wiring.reset()
    ids = site.connect(2)

    # When the scheduled function runs, Then it only enqueues
    answer = load_handler("scheduled_refresh")(event("scheduled_refresh.json"), InvocationContext(remaining_ms=600_000))
    assert (answer["enqueued"], answer["refreshed"]) == (2, 0)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    # When the worker gets them in an SQS event shaped like events/refresh_worker.json (plus a bad one)
    template = event("refresh_worker.json")["Records"][0]
    records = [{**template, "messageId": m["MessageId"], "body": m["Body"]} for m in messages]
    records.append({**template, "messageId": "unreadable", "body": "not json"})
    answer = load_handler("refresh_worker")({"Records": records}, InvocationContext(remaining_ms=60_000))

    # Then both were refreshed and only the unreadable message goes back
    assert answer == {"batchItemFailures": [{"itemIdentifier": "unreadable"}]}
    assert site.refresh_calls() == 2
    assert sorted(DueMessage.from_body(m["Body"]).connection_id for m in messages) == sorted(ids)
    sqs.delete_queue(QueueUrl=url)


def test_sample_worker_event_is_a_valid_message() -> None:
    record = event("refresh_worker.json")["Records"][0]
    assert DueMessage.from_body(record["body"]).stale is False
