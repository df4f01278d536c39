"""``observability.info_line`` writes, byte for byte, the line ``logger.info(message, extra=fields)`` writes through
Powertools' formatter: the request's keys and the function's, thread-local keys, the X-Ray trace id, fields that
replace a key in its place, values JSON cannot hold, text beyond ASCII, ``None`` left out."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from connvault.api.answers import tenant_from
from connvault.observability import _start_request, info_line, logger
from devserver.handlers import InvocationContext

TENANT = "3f1c2b9e-5a4d-4e8f-9b7a-0c6d2e1f4a5b"


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the logger's handler writes, at INFO, at one frozen moment (both ways read the clock)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    level = logger.log_level
    logger.setLevel(logging.INFO)
    monkeypatch.setattr(time, "time", lambda: 1_796_017_626.8205)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
        logger.setLevel(level)
        logger.thread_safe_clear_keys()


def both_ways(written: io.StringIO, message: str, fields: dict[str, Any]) -> tuple[str, str]:
    """The line through ``logging`` and the line written straight, from one source line (one ``location``)."""
    logger.info(message, extra=dict(fields)), info_line(message, dict(fields))  # one line: one location
    through_logging, straight = written.getvalue().splitlines(keepends=True)
    return through_logging, straight


def a_request(cold: bool = False) -> None:
    import connvault.observability as observability

    observability._cold_start = cold
    _start_request({"requestContext": {"requestId": "req-1"}}, InvocationContext(aws_request_id="lambda-1"))
    tenant_from({"tenant_id": TENANT})


def test_the_access_line_is_written_as_logging_writes_it(written: io.StringIO) -> None:
    a_request()
    fields = {
        "access_log": True,
        "tenant_id": TENANT,
        "connection_id": "9b2e4c1a-7d3f-4a6b-8e5c-1f0a2d3b4c5e",
        "credential_type": "oauth2",
        "refreshed": False,
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "connvault", "Metrics": []}]},
        "CredentialIssued": 1,
    }

    through_logging, straight = both_ways(written, "credential issued", fields)

    assert straight == through_logging
    line = json.loads(straight)
    assert (line["correlation_id"], line["function_request_id"], line["level"]) == ("req-1", "lambda-1", "INFO")
    assert line["location"].startswith("both_ways:")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"tenant_id": "another", "cold_start": None, "function_name": "renamed"},
        {"count": 3, "ratio": 0.25, "nothing": None, "nested": {"a": [1, None, "b"]}},
        {"id": UUID(TENANT), "moment": time.gmtime(0), "raw": b"bytes"},
        {"name_fr": "clé d'accès", "emoji": "\N{KEY}", "quote": 'say "hi"\n'},
    ],
    ids=["no-fields", "fields-replacing-keys", "numbers-and-none", "not-json", "beyond-ascii"],
)
def test_any_fields_are_written_as_logging_writes_them(written: io.StringIO, fields: dict[str, Any]) -> None:
    a_request(cold=True)

    through_logging, straight = both_ways(written, "a phrase", fields)

    assert straight == through_logging


def test_thread_local_keys_and_the_trace_id_are_written_as_logging_writes_them(
    written: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_request()
    logger.thread_safe_append_keys(worker="w-1", tenant_id="thread-local")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")

    through_logging, straight = both_ways(written, "a phrase", {"refreshed": True})

    assert straight == through_logging
    assert json.loads(straight)["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"


def test_nothing_is_written_below_the_loggers_level(written: io.StringIO) -> None:
    logger.setLevel(logging.WARNING)

    info_line("a phrase", {"a": 1})

    assert written.getvalue() == ""


def test_a_stream_that_fails_is_reported_by_logging_and_the_caller_goes_on(
    written: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("stdout is gone")

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(Broken())

    info_line("a phrase", {"a": 1})

    assert "Logging error" in capsys.readouterr().err


def test_a_field_that_cannot_be_written_is_reported_by_logging_and_the_caller_goes_on(
    written: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    info_line("a phrase", {"odd": Unprintable()})

    assert written.getvalue() == ""
    assert "Logging error" in capsys.readouterr().err
