"""A log line's message is the phrase as written: Powertools would read a string that parses as JSON into
structure (``{"a": 1}`` an object, ``123`` a number); connvault's formatter never does (``observability``)."""

from __future__ import annotations

import json
import logging

import pytest

from connvault.observability import logger


@pytest.mark.parametrize("message", ['{"tenant_id": "x"}', "123", "true", "credential issued"])
def test_a_message_is_logged_as_the_string_it_was_written_as(message: str) -> None:
    record = logging.LogRecord("connvault", logging.INFO, __file__, 1, message, None, None)

    line = json.loads(logger.registered_formatter.format(record))

    assert line["message"] == message
