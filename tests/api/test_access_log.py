"""The access log: every credential handed out is one structured log line and one per-tenant metric; a refused
fetch is neither, and the credential never appears (the suite's secret scanner watches every line)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connvault.observability import logger
from tests.api.conftest import Api, connect_account

AccessLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    """The access lines written since the last call, as CloudWatch gets them: the logger's stream (the lines are
    written to it straight, ``observability.info_line``). They go on to the real stream too, which the secret
    scanner reads."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    seen = 0

    def written() -> list[dict[str, Any]]:
        nonlocal seen
        new, seen = buffer.getvalue()[seen:], len(buffer.getvalue())
        lines = [json.loads(text) for text in new.splitlines()]
        return [line for line in lines if line.get("message") == "credential issued"]

    try:
        yield written
    finally:
        handler.setStream(stream)
        if stream is not None:
            stream.write(buffer.getvalue())


def test_a_token_handed_out_is_one_access_line_that_is_also_the_tenant_metric(
    api: Api, access_lines: AccessLines
) -> None:
    connection_id = connect_account(api)
    access_lines()

    assert api.call("GET", f"/connections/{connection_id}/token").status == 200
    assert api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"}).status == 200

    logged = access_lines()
    assert [(line["refreshed"], line["credential_type"]) for line in logged] == [(False, "oauth2"), (True, "oauth2")]
    for line in logged:
        assert line["tenant_id"] == str(api.tenant.tenant_id)
        assert line["connection_id"] == connection_id
        assert line["correlation_id"]  # the API Gateway request id
        assert line["level"] == "INFO"
    for line in logged:  # the same line is the per-tenant metric, in Embedded Metric Format
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Metrics"] == [{"Name": "CredentialIssued", "Unit": "Count"}]
        assert directive["Dimensions"] == [["service", "tenant_id"]]
        assert (line["service"], line["CredentialIssued"]) == ("connvault", 1)


def test_an_api_key_fetch_is_logged_with_its_kind(api: Api, access_lines: AccessLines) -> None:
    api.secrets.add("sk-test-123456")
    created = api.call(
        "POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": "sk-test-123456"}
    )
    assert created.status == 201, created.body
    access_lines()

    assert api.call("GET", f"/connections/{created.json()['id']}/token").status == 200

    (line,) = access_lines()
    assert (line["credential_type"], line["refreshed"]) == ("api_key", False)


def test_a_refused_fetch_is_not_an_access(api: Api, access_lines: AccessLines) -> None:
    access_lines()

    assert api.call("GET", "/connections/00000000-0000-4000-8000-000000000000/token").status == 404

    assert access_lines() == []
