"""Classifies a failed token or revocation response as permanent or transient, by table.

Three outcomes, three exception types:

* ``ReauthRequired``: the grant or refresh token is dead; retrying cannot help and the end user must connect
  again. Its subclass ``ClientRejected``: the tenant's app (client id or secret) was refused, which no end
  user can fix; the integration is at fault.
* ``ProviderRejected``: the provider refused this request for good (bad request, bad scope...), but
  nothing says the connection itself is dead.
* ``ProviderUnavailable``: worth retrying later (429, 5xx, the provider's own "try again" codes).

A provider's error code is copied into ``reason`` only if it looks like a code (lowercase letters, digits and
``_``, as every code of RFC 6749, OpenID Connect and connvault's own are); anything else becomes
``provider_error``, because error bodies can echo what was sent (tokens, codes, secrets), and the reason reaches
tenants (``last_error_code``, webhooks): with dots and hyphens a provider could put a domain name there
(``session.expired.reconnect.at.evil-login.example.com``). No other part of a body ever reaches a message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connvault.errors import ClientRejected, ProviderRejected, ProviderUnavailable, ReauthRequired

type Failure = ReauthRequired | ProviderRejected | ProviderUnavailable
type FailureKind = type[ReauthRequired] | type[ClientRejected] | type[ProviderRejected] | type[ProviderUnavailable]

UNKNOWN_REASON = "provider_error"
MAX_RETRY_AFTER_SECONDS = 86_400.0
_REASON = re.compile(r"[a-z0-9_]{1,64}")
_DELAY_SECONDS = re.compile(r"\d{1,10}(\.\d{1,6})?")

ERROR_CODES: Mapping[str, FailureKind] = {
    # RFC 6749 §5.2: the grant or the client is dead.
    "invalid_grant": ReauthRequired,
    "invalid_client": ClientRejected,
    "unauthorized_client": ClientRejected,
    "access_denied": ReauthRequired,
    # OpenID Connect Core §3.1.2.6: the end user must act (sign in, consent, pass a policy); Microsoft's token
    # endpoint answers a refresh so. Without these a refresh would be retried for ever, the grant never usable.
    "interaction_required": ReauthRequired,
    "login_required": ReauthRequired,
    "consent_required": ReauthRequired,
    # RFC 6749 §4.1.2.1 and RFC 8628: the provider asks us to come back later.
    "server_error": ProviderUnavailable,
    "temporarily_unavailable": ProviderUnavailable,
    "slow_down": ProviderUnavailable,
    # GitHub's dialect (sent with HTTP 200).
    "bad_verification_code": ReauthRequired,
    "bad_refresh_token": ReauthRequired,
    "incorrect_client_credentials": ClientRejected,
    # Slack's dialect (sent with HTTP 200 and "ok": false).
    "invalid_code": ReauthRequired,
    "invalid_refresh_token": ReauthRequired,
    "token_revoked": ReauthRequired,
    "token_expired": ReauthRequired,
    "invalid_client_id": ClientRejected,
    "bad_client_secret": ClientRejected,
    "ratelimited": ProviderUnavailable,
}
"""Error codes whose meaning is not "this request was refused": every other code is ``ProviderRejected``."""

TRANSIENT_STATUSES: Mapping[int, str] = {408: "timeout", 425: "too_early", 429: "rate_limited"}
"""Statuses that are transient whatever the body says; 5xx are added by range as ``server_error``."""

CODELESS_STATUSES: Mapping[int, tuple[FailureKind, str]] = {401: (ClientRejected, "invalid_client")}
"""Statuses with a meaning of their own when the body names no error code."""

_MESSAGES: Mapping[FailureKind, str] = {
    ReauthRequired: "the provider refused the grant ({reason}); the user must reconnect",
    ClientRejected: "the provider refused the integration's client credentials ({reason})",
    ProviderRejected: "the provider rejected the request ({reason})",
    ProviderUnavailable: "the provider is unavailable ({reason}); retry later",
}


def sanitize_reason(raw: object) -> str:
    """``raw`` if it looks like an error code, else ``provider_error``: the reason is logged and returned."""
    return raw if isinstance(raw, str) and _REASON.fullmatch(raw) else UNKNOWN_REASON


def classify_failure(status: int, error_code: object, retry_after: str | None, now: datetime) -> Failure:
    """The exception for a failed answer: HTTP ``status``, the body's ``error`` (or None), ``Retry-After``.

    Precedence: a transient status wins over any body; then a known or unknown body code; then the
    status alone.
    """
    kind, reason = _classify(status, error_code)
    message = _MESSAGES[kind].format(reason=reason)
    if kind is ProviderUnavailable:
        return ProviderUnavailable(message, retry_after=parse_retry_after(retry_after, now), reason=reason)
    return kind(message, reason=reason)


def _classify(status: int, error_code: object) -> tuple[FailureKind, str]:
    if status in TRANSIENT_STATUSES:
        return ProviderUnavailable, TRANSIENT_STATUSES[status]
    if 500 <= status <= 599:
        return ProviderUnavailable, "server_error"
    if isinstance(error_code, str) and error_code:
        canonical = error_code.strip().lower()
        if canonical in ERROR_CODES:
            # The table's own key, not the body's spelling of it.
            return ERROR_CODES[canonical], canonical
        return ProviderRejected, sanitize_reason(error_code)
    if status in CODELESS_STATUSES:
        return CODELESS_STATUSES[status]
    if 400 <= status <= 499:
        return ProviderRejected, f"http_{status}"
    return ProviderUnavailable, "unexpected_status"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), capped at one day.

    A value that is neither form is ignored rather than trusted.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; RFC 9110 dates are always GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else None
