"""``observability.http_entry`` leaves the log keys exactly as Powertools' ``inject_lambda_context(clear_state=True)``
with the HTTP API's correlation path does, request after request: it sets them in one pass instead, for speed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging import logger as powertools_logger

from connvault import observability
from connvault.observability import http_entry, logger
from devserver.events import http_event
from devserver.handlers import InvocationContext


def keys_seen(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    """The keys a log line of this request carries; then a key of this request's own, which the next must not see."""
    seen = dict(logger.get_current_keys())
    logger.append_keys(tenant_id="only-this-request")
    return seen


@pytest.fixture
def fresh_cold_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(powertools_logger, "is_cold_start", True)
    monkeypatch.setattr(observability, "_cold_start", True)
    yield
    logger.clear_state()


def requests() -> list[tuple[dict[str, Any], InvocationContext]]:
    return [
        (http_event("GET", "/connections", tenant_id=None), InvocationContext(aws_request_id="first")),
        (http_event("GET", "/connections", tenant_id=None), InvocationContext(aws_request_id="second")),
        ({"requestContext": {}}, InvocationContext(aws_request_id="third", function_name="other")),
    ]


@pytest.mark.usefixtures("fresh_cold_start")
def test_log_keys_are_what_powertools_sets() -> None:
    powertools = logger.inject_lambda_context(
        keys_seen, log_event=False, clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_HTTP
    )
    asked = requests()
    theirs = [powertools(event, context) for event, context in asked]
    logger.clear_state()
    ours = [http_entry(keys_seen)(event, context) for event, context in asked]

    assert ours == theirs
    assert [list(keys) for keys in ours] == [list(keys) for keys in theirs]  # a log line's fields keep their order
    assert [keys["cold_start"] for keys in ours] == [True, False, False]
    assert all("tenant_id" not in keys for keys in ours)  # state cleared per request
    assert ours[0]["correlation_id"] == asked[0][0]["requestContext"]["requestId"]
    assert ours[2]["correlation_id"] is None


@pytest.mark.usefixtures("fresh_cold_start")
def test_provisioned_concurrency_is_never_a_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency")
    event, context = requests()[0]

    assert http_entry(keys_seen)(event, context)["cold_start"] is False
