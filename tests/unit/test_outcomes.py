"""The failure table: which provider answers are permanent, which are worth a retry, and what reason
survives into messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from connvault.errors import ClientRejected, ProviderRejected, ProviderUnavailable, ReauthRequired
from connvault.oauth.outcomes import (
    MAX_RETRY_AFTER_SECONDS,
    UNKNOWN_REASON,
    classify_failure,
    parse_retry_after,
    sanitize_reason,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "code", "kind", "reason"),
    [
        (400, "invalid_grant", ReauthRequired, "invalid_grant"),
        (401, "invalid_client", ClientRejected, "invalid_client"),
        (400, "unauthorized_client", ClientRejected, "unauthorized_client"),
        (400, "access_denied", ReauthRequired, "access_denied"),
        (400, "interaction_required", ReauthRequired, "interaction_required"),
        (400, "consent_required", ReauthRequired, "consent_required"),
        (400, "login_required", ReauthRequired, "login_required"),
        (400, "INVALID_GRANT", ReauthRequired, "invalid_grant"),
        (400, "invalid_request", ProviderRejected, "invalid_request"),
        (400, "invalid_scope", ProviderRejected, "invalid_scope"),
        (400, "unsupported_grant_type", ProviderRejected, "unsupported_grant_type"),
        (400, "some_vendor_code_2", ProviderRejected, "some_vendor_code_2"),
        (400, "temporarily_unavailable", ProviderUnavailable, "temporarily_unavailable"),
        (200, "bad_verification_code", ReauthRequired, "bad_verification_code"),
        (200, "invalid_refresh_token", ReauthRequired, "invalid_refresh_token"),
        (200, "ratelimited", ProviderUnavailable, "ratelimited"),
        (429, None, ProviderUnavailable, "rate_limited"),
        (429, "invalid_grant", ProviderUnavailable, "rate_limited"),
        (500, None, ProviderUnavailable, "server_error"),
        (503, "invalid_grant", ProviderUnavailable, "server_error"),
        (408, None, ProviderUnavailable, "timeout"),
        (401, None, ClientRejected, "invalid_client"),
        (403, None, ProviderRejected, "http_403"),
        (404, None, ProviderRejected, "http_404"),
        (302, None, ProviderUnavailable, "unexpected_status"),
        (200, None, ProviderUnavailable, "unexpected_status"),
    ],
)
def test_failures_are_classified_by_code_and_status(
    status: int, code: str | None, kind: type[Exception], reason: str
) -> None:
    failure = classify_failure(status, code, None, NOW)

    assert type(failure) is kind
    assert failure.reason == reason
    assert reason in str(failure)


@pytest.mark.parametrize(
    "code",
    [
        "rt_0123456789abcdefSECRET",
        "invalid grant for token abc",
        "x" * 65,
        "ünïcode",
        "Bearer.Abc",
    ],
)
def test_a_code_that_does_not_look_like_one_becomes_provider_error(code: str) -> None:
    failure = classify_failure(400, code, None, NOW)

    assert failure.reason == UNKNOWN_REASON
    assert code not in str(failure)


def test_a_known_code_in_another_spelling_is_reported_in_the_tables_spelling() -> None:
    failure = classify_failure(400, " Invalid_Grant\n", None, NOW)

    assert isinstance(failure, ReauthRequired)
    assert failure.reason == "invalid_grant"


@pytest.mark.parametrize("code", [42, ["invalid_grant"], {"message": "nope"}, True])
def test_a_non_string_error_falls_back_to_the_status(code: object) -> None:
    failure = classify_failure(400, code, None, NOW)

    assert isinstance(failure, ProviderRejected)
    assert failure.reason == "http_400"


def test_sanitize_reason_only_lets_short_lowercase_codes_through() -> None:
    assert sanitize_reason("invalid_grant") == "invalid_grant"
    assert sanitize_reason("a" * 64) == "a" * 64
    assert sanitize_reason("a" * 65) == UNKNOWN_REASON
    assert sanitize_reason("Invalid_Grant") == UNKNOWN_REASON
    assert sanitize_reason(None) == UNKNOWN_REASON


@pytest.mark.parametrize(
    "code", ["session.expired.reconnect.at.evil-login.example.com", "see-evil.example", "a.b", "consent-required"]
)
def test_a_provider_code_with_dots_or_hyphens_never_reaches_tenants(code: str) -> None:
    """An outside probe had a provider's ``error`` carry a domain name into ``last_error_code`` and webhooks."""
    failure = classify_failure(400, code, None, NOW)

    assert isinstance(failure, ProviderRejected)
    assert failure.reason == UNKNOWN_REASON
    assert sanitize_reason(code) == UNKNOWN_REASON


def test_transient_failures_carry_retry_after_in_seconds() -> None:
    failure = classify_failure(429, None, "17", NOW)

    assert isinstance(failure, ProviderUnavailable)
    assert failure.retry_after == 17.0


def test_permanent_failures_ignore_retry_after() -> None:
    failure = classify_failure(400, "invalid_grant", "17", NOW)

    assert not hasattr(failure, "retry_after")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("1.5", 1.5),
        ("999999999", MAX_RETRY_AFTER_SECONDS),
        ("-3", None),
        ("soon", None),
        ("NaN", None),
        ("", None),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("Sat, 01 Mar 2025 12:00:30 -0000", 30.0),
        ("Fri, 99 Foo 2025 99:99:99 GMT", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
