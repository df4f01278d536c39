"""The one logger, tracer and metrics of connvault, and every metric name, defined once.

Log ids, slugs, outcome codes, counts and durations. Never log events, headers, query strings, provider
bodies or the text of exceptions raised by HTTP or database libraries.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.shared.functions import powertools_dev_is_set

from connvault.json_text import log_json
from connvault.once import once

if TYPE_CHECKING:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
    from aws_lambda_powertools.utilities.typing import LambdaContext

    Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

SERVICE = "connvault"
NAMESPACE = "connvault"


def _message_as_written(message: object) -> str:
    """Powertools' formatter tries to read every string message as JSON, to log it as structure; connvault's
    messages are fixed phrases (values go in ``extra``), so none is read, and a phrase never turns into another
    type. Refusing at once spares each line the failed parse: the access line, one per token handed out, cost
    47.5 µs with it and 42 µs without."""
    raise ValueError("log messages are logged as written")


logger = Logger(
    service=SERVICE,
    json_deserializer=_message_as_written,
    # Powertools' own text, by orjson when it is the same (``json_text``); indented under POWERTOOLS_DEV as before.
    json_serializer=None if powertools_dev_is_set() else log_json,
)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def tracing_enabled() -> bool:
    """Powertools' own rule: off when ``POWERTOOLS_TRACE_DISABLED`` says so, outside Lambda, and under SAM local.

    Building a ``Tracer`` imports ``aws_xray_sdk``, which builds a botocore client at import (~200 ms of cold
    start) even when tracing is off; so with tracing off no tracer is built at all.
    """
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on")
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return in_lambda and not disabled


@once
def get_tracer() -> Tracer:
    """The one tracer, built on first use (see ``tracing_enabled``)."""
    return Tracer(service=SERVICE)


def http_entry(handler: Handler) -> Handler:
    """``handler`` as the Lambda entry point of a function behind the HTTP API, with the safe Powertools defaults
    they share: the Lambda context in every log line, state cleared per request, no event logged, the API
    Gateway request id as the correlation id, EMF printed only when a metric was recorded, and a tracer (without
    responses or error text) only when tracing is on.

    Metrics are flushed only when one was recorded: ``log_metrics`` warns on every request that recorded none."""

    def entry(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        _start_request(event, context)
        try:
            return handler(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()

    if tracing_enabled():
        return get_tracer().capture_lambda_handler(entry, capture_response=False, capture_error=False)
    return entry


_cold_start = True


def _start_request(event: dict[str, Any], context: LambdaContext) -> None:
    """The log keys of a new request, as ``Logger.inject_lambda_context(clear_state=True)`` followed by
    ``set_correlation_id`` leave them (``tests/unit/test_http_entry.py`` compares the two, order included), in one
    pass.

    Powertools looks the formatter up again and merges the keys anew in each of those steps, and reads the
    correlation id through a JMESPath query (21 µs of a warm token fetch on its own); read here directly, it is
    what ``correlation_paths.API_GATEWAY_HTTP`` selects. The keys that stay for the function's life are merged
    once (``_function_keys``); a request copies them and sets its own three."""
    global _cold_start
    cold_start, _cold_start = _cold_start, False
    if cold_start and os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
        cold_start = False  # Powertools' rule: an initialised instance waited for its first request
    formatter = cast("LambdaPowertoolsFormatter", logger.registered_formatter)  # the logger's own (built above)
    keys = _function_keys(
        formatter,
        logger.service,
        logger.sampling_rate,
        context.function_name,
        context.memory_limit_in_mb,
        context.invoked_function_arn,
    ).copy()
    keys["cold_start"] = cold_start
    keys["function_request_id"] = context.aws_request_id
    keys["correlation_id"] = (event.get("requestContext") or {}).get("requestId")
    formatter.log_format = keys
    formatter.thread_safe_clear_keys()
    if logger.sampling_rate and not cold_start:
        logger.refresh_sample_rate_calculation()


@functools.lru_cache(maxsize=16)
def _function_keys(
    formatter: LambdaPowertoolsFormatter, service: str, sampling_rate: object, name: str, memory_size: int, arn: str
) -> dict[str, Any]:
    """What ``formatter.clear_state()`` and then ``append_keys`` of the function's keys leave, in their order; the
    request's own keys are there, to be set, so that they keep Powertools' place."""
    formatter.clear_state()
    formatter.append_keys(
        service=service,
        sampling_rate=sampling_rate,
        cold_start=None,
        function_name=name,
        function_memory_size=memory_size,
        function_arn=arn,
        function_request_id=None,
        correlation_id=None,
    )
    return dict(formatter.log_format)


def info_line(message: str, fields: dict[str, Any]) -> None:
    """``logger.info(message, extra=fields)`` for a line written on every request (the access line), written
    straight to the logger's stream: the same JSON, keys in the same order, as Powertools' formatter writes for
    that call (``tests/unit/test_info_line.py`` compares the two line for line), without what a line through
    ``logging`` costs besides its JSON: a ``LogRecord``, the walk up the stack for the caller, and the formatter
    merging every record attribute with the keys. 25 µs a line in a loop against 47-77 µs through
    ``logger.info``: on a warm token fetch at INFO the access line cost more than the rest of the handler.

    Only what ``logger.info`` would write: nothing below the logger's level; a line that cannot be serialized or
    written goes the standard way (``logging`` reports it on stderr and the request goes on)."""
    if logger.log_level > logging.INFO:
        return
    caller = sys._getframe(1)  # what Powertools' ``location`` names: the function that logged, and the line
    formatter = cast("LambdaPowertoolsFormatter", logger.registered_formatter)
    now = _Instant.now()
    line = {
        **formatter.log_format,
        "level": "INFO",
        "location": f"{caller.f_code.co_name}:{caller.f_lineno}",
        "message": message,
        "timestamp": formatter.formatTime(cast("logging.LogRecord", now)),
        **logger.thread_safe_get_current_keys(),
        **fields,
        "xray_trace_id": formatter._get_latest_trace_id(),
    }
    handler = cast("logging.StreamHandler[Any]", logger.registered_handler)
    handler.acquire()
    try:  # as ``Handler.handle`` and ``StreamHandler.emit``: formatted, written and flushed under the lock
        text = formatter.serialize({key: value for key, value in line.items() if value is not None})
        handler.stream.write(text + handler.terminator)
        handler.flush()
    except Exception:
        logger.info(message, extra=fields, stacklevel=2)  # through ``logging``, which reports its own failures
    finally:
        handler.release()


class _Instant(NamedTuple):
    """A moment as a ``LogRecord`` carries it, which is all ``formatter.formatTime`` reads of one."""

    created: float
    msecs: float

    @classmethod
    def now(cls) -> _Instant:
        created = time.time()
        return cls(created, int((created - int(created)) * 1000) + 0.0)  # as ``LogRecord.__init__`` (gh-89047)


def __getattr__(name: str) -> Any:
    """``observability.tracer``: the jobs whose handlers are traced name it; others never build it."""
    if name == "tracer":
        return get_tracer()
    raise AttributeError(name)


class MetricName:
    """EMF metric names: one per outcome."""

    TOKEN_SERVED = "TokenServed"
    CREDENTIAL_ISSUED = "CredentialIssued"
    """One per credential handed out, dimensioned by tenant_id (the access log's metric)."""
    TOKEN_REFRESHED_ON_READ = "TokenRefreshedOnRead"
    CONNECT_STARTED = "ConnectStarted"
    CONNECT_COMPLETED = "ConnectCompleted"
    CONNECT_FAILED = "ConnectFailed"
    CONNECT_PARKED = "ConnectAwaitingConfirmation"
    CONNECT_CONFIRMED = "ConnectConfirmed"
    CONNECT_UNCONFIRMED_REVOKED = "ConnectUnconfirmedRevoked"
    """Grants of sessions that expired unconfirmed, revoked at the provider (or dropped) by the sweep."""
    CONNECT_LINK_OPENED = "ConnectLinkOpened"
    CONNECT_PAGE_REFUSED = "ConnectPageRefused"
    """A connect page request for a link that is unknown, expired or used up."""
    CREDENTIAL_CHECK_ACCEPTED = "CredentialCheckAccepted"
    CREDENTIAL_CHECK_REFUSED = "CredentialCheckRefused"
    CREDENTIAL_CHECK_UNAVAILABLE = "CredentialCheckUnavailable"
    REFRESHED = "Refreshed"
    REFRESH_PERMANENT_FAILURE = "RefreshPermanentFailure"
    REFRESH_TRANSIENT_FAILURE = "RefreshTransientFailure"
    REFRESH_SKIPPED = "RefreshSkipped"
    REFRESH_INTEGRATION_REFUSED = "RefreshIntegrationRefused"
    """The provider refused an integration's client credentials; its connections wait for new ones."""
    REFRESH_ERROR = "RefreshError"
    """A refresh failed on our side (database, KMS, an unreadable row), not the provider's."""
    REFRESH_PARKED = "RefreshParked"
    """A connection parked after failing the same way on our side too often; see its last_error_code."""
    REFRESH_ENQUEUED = "RefreshEnqueued"
    REFRESH_DUE_BACKLOG = "RefreshDueBacklog"
    REFRESH_RUN_DURATION = "RefreshRunDuration"
    REVOCATION_FAILED = "RevocationFailed"
    CONNECT_SESSIONS_PURGED = "ConnectSessionsPurged"
    WEBHOOK_DELIVERED = "WebhookDelivered"
    WEBHOOK_RETRYING = "WebhookRetrying"
    """An attempt failed; the delivery is scheduled again."""
    WEBHOOK_FAILED = "WebhookFailed"
    """A delivery's retry window ended without a 2xx: it is listed as failed and can be redelivered."""
    WEBHOOK_ERROR = "WebhookError"
    """Sending failed on our side (database, KMS); the lease runs out and the delivery is sent again."""
    WEBHOOK_EXPIRED = "WebhookExpired"
    """Deliveries still pending CONNVAULT_WEBHOOK_MAX_PENDING_SECONDS after their event, ended as expired."""
    ACCOUNTS_PURGED = "AccountsPurged"
    """Soft-deleted accounts past their retention, deleted by the scheduled purge."""
    PROXY_REQUEST = "ProxyRequest"
    """A proxied request that reached its end (any status, or an error), dimensioned by provider."""
    PROXY_LATENCY = "ProxyLatency"
    PROXY_REFRESHED = "ProxyRefreshedOn401"

    CONNECTIONS_IMPORTED = "ConnectionsImported"
    DEVICE_SESSION_STARTED = "DeviceSessionStarted"
    DEVICE_POLLS = "DevicePolls"
    """Polls of a token endpoint for device sessions made by one run of the scheduled poller."""
    CREDENTIALS_REFUSED = "CredentialsRefused"
    """A new connection's credentials (an imported grant, a client, a service-account key) refused at creation."""
    AUTH_DENIED = "AuthDenied"
    RATE_LIMITED = "RateLimited"
    """A request refused with 429 because its tenant was over its request rate."""
    CLIENT_ERROR = "ClientError"
    SERVER_ERROR = "ServerError"
    PROVIDER_ERROR = "ProviderError"
    """A request answered 502: the provider's answer could not be used (refused, too large); not ours to fix."""
    DATABASE_UNAVAILABLE = "DatabaseUnavailable"
    """A request answered 503 because the database refused a connection, lost it, or could not be reached."""
