"""Device authorization answers (RFC 8628 §3.2) as a hostile or broken provider may send them: a usable one
is read leniently, anything else is a connvault error that carries none of what was sent, and what a poll's
refusal means is sorted by its code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connvault.errors import ConnvaultError, ProviderRejected, ProviderUnavailable, ReauthRequired
from connvault.oauth.device import (
    DEFAULT_INTERVAL_SECONDS,
    MAX_EXPIRES_IN_SECONDS,
    MAX_INTERVAL_SECONDS,
    PollOutcome,
    parse_device_authorization,
    poll_outcome,
)
from connvault.oauth.http import HttpResponse

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEVICE_CODE = "dc-SECRET-7f3a"
USER_CODE = "WDJB-MJHT"
GOOD = {
    "device_code": DEVICE_CODE,
    "user_code": USER_CODE,
    "verification_uri": "https://idp.example/device",
    "verification_uri_complete": f"https://idp.example/device?user_code={USER_CODE}",
    "expires_in": 1800,
    "interval": 5,
}


def answer(document: Any, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return HttpResponse(status=status, content_type=content_type, retry_after=None, body=body)


def test_a_standard_answer_is_read_with_its_codes_kept_secret() -> None:
    parsed = parse_device_authorization(answer(GOOD), NOW)

    assert (parsed.device_code.reveal(), parsed.user_code.reveal()) == (DEVICE_CODE, USER_CODE)
    assert (parsed.verification_uri, parsed.expires_in, parsed.interval) == ("https://idp.example/device", 1800, 5)
    assert parsed.verification_uri_complete is not None
    assert DEVICE_CODE not in repr(parsed) and USER_CODE not in repr(parsed)


def test_googles_spelling_and_numbers_as_strings_are_read_and_a_missing_interval_is_five_seconds() -> None:
    loose = {"device_code": DEVICE_CODE, "user_code": USER_CODE, "verification_url": "https://g.example/device"}

    parsed = parse_device_authorization(answer({**loose, "expires_in": "1800"}), NOW)

    assert (parsed.verification_uri, parsed.expires_in, parsed.interval) == (
        "https://g.example/device",
        1800,
        DEFAULT_INTERVAL_SECONDS,
    )
    assert parsed.verification_uri_complete is None


def test_an_interval_or_lifetime_past_reason_is_capped_and_one_below_a_second_is_the_default() -> None:
    huge = parse_device_authorization(answer({**GOOD, "interval": 10**12, "expires_in": 10**12}), NOW)
    zero = parse_device_authorization(answer({**GOOD, "interval": 0}), NOW)
    negative = parse_device_authorization(answer({**GOOD, "interval": -3}), NOW)

    assert (huge.interval, huge.expires_in) == (MAX_INTERVAL_SECONDS, MAX_EXPIRES_IN_SECONDS)
    assert zero.interval == negative.interval == DEFAULT_INTERVAL_SECONDS


@pytest.mark.parametrize(
    "changes",
    [
        {"device_code": None},
        {"device_code": ""},
        {"device_code": 12345},
        {"device_code": "a" * 5000},
        {"user_code": "bad\x00code"},
        {"user_code": ["WDJB"]},
        {"verification_uri": "javascript:alert(1)"},
        {"verification_uri": "data:text/html,hi"},
        {"verification_uri": None},
        {"expires_in": None},
        {"expires_in": True},
        {"expires_in": "soon"},
        {"expires_in": float("nan")},
        {"expires_in": 0},
    ],
    ids=lambda changes: next(iter(changes)) + "=" + repr(next(iter(changes.values())))[:20],
)
def test_an_answer_without_usable_codes_uri_or_lifetime_is_an_invalid_response(changes: dict[str, Any]) -> None:
    with pytest.raises(ProviderUnavailable) as raised:
        parse_device_authorization(answer({**GOOD, **changes}), NOW)

    assert raised.value.reason == "invalid_response"
    assert DEVICE_CODE not in str(raised.value) and USER_CODE not in str(raised.value)


def test_a_complete_uri_that_is_not_a_web_address_is_dropped_not_shown() -> None:
    parsed = parse_device_authorization(answer({**GOOD, "verification_uri_complete": "javascript:steal()"}), NOW)

    assert parsed.verification_uri_complete is None


@pytest.mark.parametrize(
    ("document", "status", "expected"),
    [
        ({"error": "invalid_client"}, 401, ReauthRequired),
        ({"error": "invalid_scope"}, 400, ProviderRejected),
        ({"error": "server_error"}, 200, ProviderUnavailable),
        (b"<html>busy</html>", 503, ProviderUnavailable),
        (b"<html>" + DEVICE_CODE.encode() + b"</html>", 200, ProviderUnavailable),
        ([GOOD], 200, ProviderUnavailable),
    ],
    ids=["refused-client", "refused-scope", "error-dressed-as-200", "5xx-page", "200-page", "array"],
)
def test_refusals_and_garbage_are_sorted_and_echo_nothing(document: Any, status: int, expected: type) -> None:
    with pytest.raises(expected) as raised:
        parse_device_authorization(answer(document, status=status), NOW)

    assert DEVICE_CODE not in str(raised.value)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), st.none() | st.booleans() | st.integers() | st.text()))
def test_any_answer_is_either_usable_or_a_connvault_error(changes: dict[str, Any]) -> None:
    try:
        parsed = parse_device_authorization(answer({**GOOD, **changes}), NOW)
    except ConnvaultError:
        return
    assert parsed.verification_uri.startswith(("https://", "http://"))
    assert 1 <= parsed.interval <= MAX_INTERVAL_SECONDS and 1 <= parsed.expires_in <= MAX_EXPIRES_IN_SECONDS


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (ProviderRejected("", reason="authorization_pending"), PollOutcome.PENDING),
        (ProviderUnavailable("", reason="slow_down"), PollOutcome.SLOW_DOWN),
        (ReauthRequired("", reason="access_denied"), PollOutcome.DENIED),
        (ProviderRejected("", reason="expired_token"), PollOutcome.EXPIRED),
        (ReauthRequired("", reason="invalid_grant"), PollOutcome.FAILED),
        (ProviderRejected("", reason="invalid_request"), PollOutcome.FAILED),
        (ProviderUnavailable("", reason="server_error"), PollOutcome.RETRY),
        (ProviderUnavailable("", reason="rate_limited"), PollOutcome.RETRY),
    ],
)
def test_what_a_refused_poll_means(failure: Any, outcome: PollOutcome) -> None:
    assert poll_outcome(failure) is outcome
