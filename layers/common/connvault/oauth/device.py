"""The device authorization grant (RFC 8628) at the wire: starting one, and what a poll of the token endpoint
can come back with.

A poll's refusals are not all failures. ``authorization_pending`` means "ask again after the interval",
``slow_down`` means "and wait five seconds longer from now on"; ``access_denied`` and ``expired_token`` end the
session. ``poll_outcome`` sorts the exceptions a token request raises into these, so the service can act on them
without reading error codes itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from connvault.errors import ProviderRejected, ProviderUnavailable, ReauthRequired
from connvault.oauth.outcomes import classify_failure
from connvault.oauth.responses import decode_body, error_code, is_error
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any

    from connvault.oauth.http import HttpResponse

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_SECONDS = 5
"""RFC 8628 §3.2: without ``interval`` the client waits 5 seconds between polls."""
SLOW_DOWN_SECONDS = 5
"""RFC 8628 §3.5: each ``slow_down`` adds 5 seconds to the interval, for this and every later poll."""
MAX_INTERVAL_SECONDS = 3600
MAX_EXPIRES_IN_SECONDS = 1800
"""A longer lifetime a provider declares is cut to this (Google's is 1800 s, GitHub's and Microsoft's 900 s): a
session is polled until it expires, by a poller every tenant shares."""
MAX_CODE_LENGTH = 2048
MAX_URI_LENGTH = 2048
_DIGITS = re.compile(r"\s*[0-9]{1,10}\s*")
_WEB = ("https://", "http://")
"""The URIs are shown to the end user, never called by connvault: a web address is all they need to be."""


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """What the device authorization endpoint answered (RFC 8628 §3.2). The codes are secrets: the device code
    buys the tokens, and the user code (so the complete URI that carries it) lets whoever holds it approve."""

    device_code: Redacted[str]
    user_code: Redacted[str]
    verification_uri: str
    verification_uri_complete: Redacted[str] | None
    expires_in: int
    interval: int


class PollOutcome(StrEnum):
    PENDING = "authorization_pending"
    SLOW_DOWN = "slow_down"
    DENIED = "access_denied"
    EXPIRED = "expired_token"
    FAILED = "failed"
    """Refused for another reason (``invalid_client``, ``invalid_grant``...): the session ends with that code."""
    RETRY = "retry"
    """The provider failed in a retryable way (5xx, 429, unreachable): poll again, later than usual."""


def parse_device_authorization(response: HttpResponse, now: datetime) -> DeviceAuthorization:
    """The answer of a device authorization request, or the ``connvault.errors`` exception it amounts to.

    Read leniently where providers differ: Google says ``verification_url``, and numbers may come as strings.
    A success without a usable device code, user code or URI is ``ProviderUnavailable`` (``invalid_response``).
    """
    document = decode_body(response.content_type, response.body)
    if not 200 <= response.status <= 299 or (document is not None and is_error(document)):
        raise classify_failure(response.status, error_code(document), response.retry_after, now)
    if document is None:
        raise _invalid()
    device_code = _text(document, "device_code", MAX_CODE_LENGTH)
    user_code = _text(document, "user_code", MAX_CODE_LENGTH)
    uri = _text(document, "verification_uri", MAX_URI_LENGTH) or _text(document, "verification_url", MAX_URI_LENGTH)
    if device_code is None or user_code is None or uri is None or not uri.startswith(_WEB):
        raise _invalid()
    complete = _text(document, "verification_uri_complete", MAX_URI_LENGTH)
    expires_in = _seconds(document.get("expires_in"), MAX_EXPIRES_IN_SECONDS)
    if expires_in is None:
        raise _invalid()
    interval = _seconds(document.get("interval"), MAX_INTERVAL_SECONDS) or DEFAULT_INTERVAL_SECONDS
    return DeviceAuthorization(
        device_code=Redacted(device_code),
        user_code=Redacted(user_code),
        verification_uri=uri,
        verification_uri_complete=Redacted(complete) if complete and complete.startswith(_WEB) else None,
        expires_in=expires_in,
        interval=interval,
    )


def poll_outcome(failure: ReauthRequired | ProviderRejected | ProviderUnavailable) -> PollOutcome:
    """What a refused or failed poll means for the session."""
    reason = failure.reason or ""
    if reason in (PollOutcome.PENDING, PollOutcome.SLOW_DOWN, PollOutcome.DENIED, PollOutcome.EXPIRED):
        return PollOutcome(reason)
    if isinstance(failure, ProviderUnavailable):
        return PollOutcome.RETRY
    return PollOutcome.FAILED


def _text(document: Mapping[str, Any], name: str, max_length: int) -> str | None:
    value = document.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length or not value.isprintable():
        return None
    return value


def _seconds(value: object, ceiling: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        return None
    return min(value, ceiling)


def _invalid() -> ProviderUnavailable:
    return ProviderUnavailable("the device authorization response is not usable", reason="invalid_response")
