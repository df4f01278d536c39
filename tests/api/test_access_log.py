"""The access log: every credential handed out is one structured log line and one per-tenant metric; a refused
fetch is neither, and the credential never appears (the suite's secret scanner watches every line)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connvault.observability import logger
from tests.api.conftest import Api, connect_account


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access lines as CloudWatch gets them: each record through the Powertools formatter."""
    formatter = logger.registered_formatter
    found = [json.loads(formatter.format(r)) for r in caplog.records if r.getMessage() == "credential issued"]
    caplog.clear()
    return found


def test_a_token_handed_out_is_one_access_line_that_is_also_the_tenant_metric(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    connection_id = connect_account(api)
    caplog.clear()

    assert api.call("GET", f"/connections/{connection_id}/token").status == 200
    assert api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"}).status == 200

    logged = access_lines(caplog)
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


def test_an_api_key_fetch_is_logged_with_its_kind(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.secrets.add("sk-test-123456")
    created = api.call(
        "POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": "sk-test-123456"}
    )
    assert created.status == 201, created.body
    caplog.clear()

    assert api.call("GET", f"/connections/{created.json()['id']}/token").status == 200

    (line,) = access_lines(caplog)
    assert (line["credential_type"], line["refreshed"]) == ("api_key", False)


def test_a_refused_fetch_is_not_an_access(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()

    assert api.call("GET", "/connections/00000000-0000-4000-8000-000000000000/token").status == 404

    assert access_lines(caplog) == []
