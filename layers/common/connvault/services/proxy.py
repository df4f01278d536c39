"""The proxy: call a connection's provider API with its credential, so that the credential never leaves the vault.

One request in, one provider answer out. The credential comes from token fetch (``services.tokens``), refreshed
there when it is due. A provider answering 401 gets one forced refresh (the single flight of
``services.refresh``) and one retry: the whole request is in memory, so it can be sent again. Idempotent requests
may also be retried on 429/502/503/504 or a lost connection when the caller asks (``Connvault-Proxy-Retries``),
never sooner than the provider's ``Retry-After`` and always inside one total deadline.

Every call goes through the transport's egress guard, to the provider's API base URL for this connection (its
``connection_config`` filled in), with the path checked in every decoding (``connvault.proxy.paths``). Logs and
metrics name the provider, the method, the status and the time taken; never the path, the query or a body.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from connvault import wiring
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.connection_config import TemplateError, fill, parse_keys
from connvault.db.fast_reads import get_fast_reads
from connvault.errors import (
    ConnvaultError,
    InvalidInput,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    ResponseTooLarge,
)
from connvault.models import ApiAuthStyle, AuthType, OAuth2Credentials
from connvault.oauth.http import UNREACHABLE_REASON
from connvault.oauth.outcomes import parse_retry_after
from connvault.observability import MetricName, logger, metrics
from connvault.proxy import credentials, headers, paths
from connvault.proxy.limits import MAX_RESPONSE_HEADER_BYTES
from connvault.services import tokens

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.fast_reads import FastReads, ProxyTarget
    from connvault.models import ApiAuth
    from connvault.oauth.client import OAuthClient
    from connvault.oauth.http import HttpResponse, HttpTransport
    from connvault.services.refresh import RefreshPolicy
    from connvault.services.tokens import IssuedCredential

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FINAL_STATUSES = range(200, 600)
"""What the proxy passes on as the provider's answer: anything else is 502 `provider_error`."""
MAX_RETRIES = 3
_RETRIES = re.compile(r"[0-9]{1,3}")
RETRY_BASE_SECONDS = 0.25
RETRY_CAP_SECONDS = 8.0


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """What the tenant sent to ``/connections/{id}/proxy/{path}``: method, path and query as received."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Lower-cased names."""
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    """The provider's answer as it goes back: its status, the headers that may cross, its body's bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def forward(
    tenant_id: UUID,
    connection_id: UUID,
    request: ProxyRequest,
    *,
    reads: FastReads | None = None,
    transport: HttpTransport | None = None,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    policy: RefreshPolicy | None = None,
    now: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> ProxyResponse:
    """Send ``request`` to the connection's provider API with its credential; the provider's answer.

    Raises InvalidInput (the method, path, query or a header), NotFound, ReauthRequired, ConnectionRevoked,
    CredentialsExpired, ProviderUnavailable (unreachable, blocked or out of time, or a refresh backing off),
    ResponseTooLarge, ProviderRejected (an answer without a final status, or a refresh after a 401 that the provider
    refused without saying the grant is dead: counted and retried with backoff like an outage, ``services.refresh``).
    """
    started = time.monotonic()
    method = request.method.upper()
    if method not in METHODS:
        raise InvalidInput("the proxy forwards GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS", field="method")
    path, query = paths.safe_path(request.path), paths.safe_query(request.query)
    retries = _retries(request.headers, method)
    reads = reads or get_fast_reads()
    target = reads.read_proxy_target(tenant_id, connection_id)
    if target is None:
        raise NotFound(f"connection {connection_id} not found")
    auth = credentials.effective(credentials.parse_api_auth(target.api_auth), AuthType(target.snapshot.credential_type))
    if auth.style is ApiAuthStyle.QUERY and any(name == auth.name for name, _ in parse_qsl(query)):
        # Two credentials on one request, one of them the caller's: refused, whichever the provider would read.
        raise InvalidInput(f"the query must not carry {auth.name}; connvault adds it", field="query")
    call = _Call(
        tenant_id=tenant_id,
        connection_id=connection_id,
        method=method,
        url=_url(target, path, query),
        headers=headers.request_headers(
            request.headers, credential_header=auth.name if auth.style is ApiAuthStyle.HEADER else None
        ),
        auth=auth,
        body=request.body,
        retries=retries,
        deadline=started + get_settings().proxy_deadline_seconds,
        fetch={"reads": reads, "oauth": oauth, "sealer": sealer, "policy": policy, "now": now},
        transport=transport or wiring.get_proxy_transport(),
        sleep=sleep,
    )
    status: int | None = None
    error: str | None = "internal_error"
    try:
        answer = call.run(target, now)
        if answer.status not in FINAL_STATUSES:
            # An interim (1xx) or invented status is no answer to pass on: a client would wait for the final one,
            # or take a 101 for a switched protocol; API Gateway takes none outside 100-599.
            raise ProviderRejected("the provider's answer has no final status", reason="no_final_status")
        status, error = answer.status, None
    except ConnvaultError as exc:
        error = exc.code
        raise
    finally:
        _observe(target.provider_slug, method, status, error, started, call)
    returned = headers.response_headers(answer.headers, secrets=call.marks)
    # Counted as they travel in the Lambda answer: JSON, where a quote or a backslash doubles and a character past
    # ASCII takes up to six bytes (counted as characters, escaped headers took a full-size answer past 6 MB).
    if len(json.dumps(returned)) > MAX_RESPONSE_HEADER_BYTES:
        raise ResponseTooLarge("the provider's answer has more headers than the proxy can return")
    return ProxyResponse(answer.status, returned, answer.body)


@dataclass
class _Call:
    """One proxied request and its attempts: who, where, with what, and until when."""

    tenant_id: UUID
    connection_id: UUID
    method: str
    url: str
    headers: dict[str, str]
    auth: ApiAuth
    body: bytes | None
    retries: int
    deadline: float
    fetch: dict[str, Any]
    transport: HttpTransport
    sleep: Callable[[float], None]
    attempts: int = 0
    refreshed: bool = False
    marks: set[str] = field(default_factory=set)
    """Every spelling of every credential sent (see ``credentials.Injection.marks``)."""

    def run(self, target: ProxyTarget, now: Clock) -> HttpResponse:
        credential = tokens.get_token(self.tenant_id, self.connection_id, snapshot=target.snapshot, **self.fetch)
        while True:
            try:
                answer = self.send(credential)
            except ProviderUnavailable as exc:
                if exc.reason == "response_too_large":
                    raise ResponseTooLarge("the provider's answer is larger than the proxy can return") from None
                # A blocked address stays blocked; only a call that could not get through may go again.
                if exc.reason == UNREACHABLE_REASON and self.may_retry(exc.retry_after):
                    continue
                raise
            if (
                answer.status == 401
                and not self.refreshed
                and self.can_refresh()
                and _refreshable(credential, target, now)
            ):
                # The provider no longer takes this token (revoked, expired early): one forced refresh, one retry.
                credential = tokens.get_token(self.tenant_id, self.connection_id, force_refresh=True, **self.fetch)
                self.refreshed = True
                continue
            if answer.status in RETRY_STATUSES and self.may_retry(parse_retry_after(answer.retry_after, now())):
                continue
            return answer

    def can_refresh(self) -> bool:
        """Whether a forced refresh (its provider call, then the statement storing the answer) fits in what is left
        of the deadline. One that would not is not started and the provider's 401 is passed on: the call must end
        inside the deadline (API Gateway gives up at 30 s), and the next call refreshes."""
        return self.deadline - time.monotonic() >= get_settings().refresh_lease_floor_seconds

    def send(self, credential: IssuedCredential) -> HttpResponse:
        self.attempts += 1
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ProviderUnavailable("the provider did not answer in time", reason="deadline")
        try:
            injection = credentials.inject(self.auth, credential.credentials)
        except credentials.CredentialMismatch:
            raise InvalidInput(
                "this connection's credential cannot be sent the way its provider's API takes it",
                field="connection_id",
            ) from None
        self.marks |= injection.marks
        url = self.url
        if injection.query is not None:
            url += ("&" if "?" in url else "?") + injection.query
        sent = dict(self.headers)
        if injection.header is not None:
            sent[injection.header[0]] = injection.header[1]
        return self.transport.request(
            self.method, url, body=self.body, headers=sent, deadline_seconds=left, decode_content=False
        )

    def may_retry(self, retry_after: float | None) -> bool:
        """Whether to try again, after sleeping the backoff (never less than ``retry_after``). Never for a method
        that is not idempotent, nor past the retries the caller allowed, nor when the wait outlasts the deadline."""
        used = self.attempts - 1 - int(self.refreshed)
        if used >= self.retries:
            return False
        ceiling = RETRY_BASE_SECONDS * 2**used
        delay = max(retry_after or 0.0, random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not a secret
        if delay > RETRY_CAP_SECONDS or time.monotonic() + delay >= self.deadline:
            return False
        self.sleep(delay)
        return True


def _url(target: ProxyTarget, path: str, query: str) -> str:
    if target.api_base_url is None:
        raise InvalidInput(f"provider {target.provider_slug!r} has no api_base_url to proxy to", field="connection_id")
    try:
        base = fill(target.api_base_url, parse_keys(target.config_keys), target.connection_config)
    except TemplateError:
        raise InvalidInput(
            "the connection's configuration no longer fits its provider", field="connection_id"
        ) from None
    return paths.join(base, path, query)


def _retries(received: Mapping[str, str], method: str) -> int:
    """How many retries the caller allows (``Connvault-Proxy-Retries``, default none); only idempotent methods.

    The digits are counted before ``int`` reads them: past 4,300 ``int`` raises ``ValueError`` (a 500).
    """
    raw = received.get(headers.RETRIES_HEADER)
    field_name = f"headers.{headers.RETRIES_HEADER}"
    if raw is None:
        return 0
    if not _RETRIES.fullmatch(raw) or int(raw) > MAX_RETRIES:
        raise InvalidInput(f"{headers.RETRIES_HEADER} must be 0 to {MAX_RETRIES}", field=field_name)
    if int(raw) and method not in IDEMPOTENT:
        raise InvalidInput(f"{method} is not idempotent and is never retried", field=field_name)
    return int(raw)


def _refreshable(credential: IssuedCredential, target: ProxyTarget, now: Clock) -> bool:
    """An OAuth token with a refresh token, not refreshed within the cooldown (see the setting)."""
    oauth = credential.credentials
    if not isinstance(oauth, OAuth2Credentials) or oauth.refresh_token is None:
        return False
    cooldown = timedelta(seconds=get_settings().proxy_refresh_cooldown_seconds)
    return target.last_refresh_at is None or now() - target.last_refresh_at >= cooldown


def _observe(provider: str, method: str, status: int | None, error: str | None, started: float, call: _Call) -> None:
    """One log line and one set of metrics per proxied request: ids, provider, method, status, time; no path, no
    query, no header, no body."""
    elapsed_ms = (time.monotonic() - started) * 1000
    metrics.add_dimension(name="provider", value=provider)
    metrics.add_metric(name=MetricName.PROXY_REQUEST, unit="Count", value=1)
    metrics.add_metric(name=MetricName.PROXY_LATENCY, unit="Milliseconds", value=elapsed_ms)
    if call.refreshed:
        metrics.add_metric(name=MetricName.PROXY_REFRESHED, unit="Count", value=1)
    logger.info(
        "proxied",
        extra={
            "connection_id": str(call.connection_id),
            "provider": provider,
            "method": method,
            "status": status,
            "error_code": error,
            "attempts": call.attempts,
            "refreshed": call.refreshed,
            "latency_ms": round(elapsed_ms, 1),
        },
    )
