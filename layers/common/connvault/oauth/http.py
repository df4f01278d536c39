"""A deliberately small HTTP transport for calls to tenant-influenced URLs, on the urllib3 that already ships
with botocore (kept-alive connections) and on ``http.client`` (token calls, a connection each), with every
connection made through the egress guard (``connvault.egress``).

Why not requests/httpx: they add cold-start import time for nothing we need. What this adds on top of
urllib3 is policy: the egress guard (public addresses only, resolved once), one total deadline per call however
slowly the bytes arrive, no retries and no redirects (a retried token request can burn a rotating refresh
token; a redirected one can send credentials elsewhere), a cap on the body we read, and failures turned into
``ProviderUnavailable`` whose message is "blocked address" or "could not reach the provider", never which
network condition it was (no port-scan oracle), never a URL or a body.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http.client import HTTPException
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import parse_url

from connvault.egress import (
    BLOCKED_MESSAGE,
    UNREACHABLE_MESSAGE,
    BlockedAddress,
    Destination,
    EgressPolicy,
    GuardedConnection,
    Unreachable,
    check_url,
    deadline,
    guarded_pool_manager,
    guarded_tls_context,
)
from connvault.errors import ProviderUnavailable

MAX_BODY_BYTES = 1024 * 1024
"""A token response is a few KiB; anything past this is not one, and is not worth buffering."""

DEFAULT_POOL_SIZE = 10
UNREACHABLE_REASON = "unreachable"
"""Timed out, refused, reset, TLS failed: one reason, as the message is one (see ``connvault.egress``). A call
that ended so may have been answered by the provider after all (a rotated refresh token that never arrived)."""
_USER_AGENT = "connvault/0.1"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The parts of a provider's answer that the OAuth code reads."""

    status: int
    content_type: str
    retry_after: str | None
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    """Every header as sent, a repeated one once per value (the proxy passes most of them on)."""


class HttpTransport:
    """One connection pool per instance; share an instance between threads, not between processes.

    ``deadline_seconds`` bounds a whole call (connect, TLS, send, headers, body); ``CONNVAULT_HTTP_TIMEOUT_SECONDS``
    is that deadline in production, and the refresh lease must outlast it (checked in config).
    ``maxsize`` is the number of connections kept per host for calls that reuse them (discovery, the proxy,
    webhooks); token calls never do (``post_form``).
    """

    def __init__(
        self,
        deadline_seconds: float,
        *,
        connect_timeout_seconds: float | None = None,
        maxsize: int = DEFAULT_POOL_SIZE,
        max_body_bytes: int = MAX_BODY_BYTES,
        policy: EgressPolicy | None = None,
        ca_certs: str | None = None,
    ) -> None:
        self._deadline = deadline_seconds
        self._connect_timeout = connect_timeout_seconds if connect_timeout_seconds is not None else deadline_seconds
        self._timeout = urllib3.Timeout(connect=self._connect_timeout, read=deadline_seconds)
        self._max_body_bytes = max_body_bytes
        self._policy = policy or EgressPolicy.from_settings()
        self._tls = guarded_tls_context(ca_certs)
        self._pool = guarded_pool_manager(self._policy, maxsize=maxsize, timeout=self._timeout, tls=self._tls)

    def post_form(self, url: str, fields: Mapping[str, str], headers: Mapping[str, str] | None = None) -> HttpResponse:
        """POST ``fields`` as ``application/x-www-form-urlencoded``, the only body OAuth endpoints take, on a
        connection of its own.

        Token answers carry no trace of the request they answer: on a kept-alive connection, a second answer that
        a broken provider or a proxy in front of it sent to an earlier request is read as the answer to the next
        one, which may be another end user's refresh or another tenant's (a provider's host is shared by every
        tenant using it). So no request follows this one on its connection, whatever the server says, and the
        server is asked to close it too; the cost is a TCP and TLS handshake per token call."""
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", "Connection": "close", **(headers or {})}
        return self.request("POST", url, body=urlencode(fields).encode(), headers=all_headers, reuse=False)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        deadline_seconds: float | None = None,
        decode_content: bool = True,
        body_matters: bool = True,
        reuse: bool = True,
    ) -> HttpResponse:
        """Send one request and read its answer within the deadline; any status is returned, only transport
        failures raise.

        ``deadline_seconds`` shortens this call's deadline (the proxy's time left); ``decode_content=False`` keeps
        a compressed body as it came (the proxy passes it on with its ``Content-Encoding``); ``body_matters=False``
        (a webhook receiver's answer, whose status alone counts) answers an oversized body as an empty one;
        ``reuse=False`` sends the request on a connection of its own, closed after this answer.
        Raises ``ProviderUnavailable`` with reason ``blocked_address``, ``unreachable`` or
        ``response_too_large``. The cause is dropped (``from None``) because urllib3's messages quote the
        full URL and the network condition, and tracebacks end up in logs.
        """
        try:
            destination = check_url(url, self._policy)
            with deadline(self._deadline if deadline_seconds is None else min(deadline_seconds, self._deadline)):
                sent_headers = {"User-Agent": _USER_AGENT, **(headers or {})}
                if reuse:
                    answer = self._send_pooled(method, url, body, sent_headers, decode_content)
                else:
                    answer = self._send_alone(method, destination, url, body, sent_headers, decode_content)
        except BlockedAddress:
            raise ProviderUnavailable(BLOCKED_MESSAGE, reason="blocked_address") from None
        except (Unreachable, HTTPError, HTTPException, OSError, zlib.error):
            raise ProviderUnavailable(UNREACHABLE_MESSAGE, reason=UNREACHABLE_REASON) from None
        if len(answer.body) > self._max_body_bytes:
            if body_matters:
                raise ProviderUnavailable("the provider sent an oversized response", reason="response_too_large")
            return replace(answer, body=b"")
        return answer

    def _send_pooled(
        self, method: str, url: str, body: bytes | None, headers: Mapping[str, str], decode_content: bool
    ) -> HttpResponse:
        """The request on a kept-alive connection of the guarded pool; its body read up to one byte past the cap."""
        response = self._pool.request(
            method,
            url,
            body=body,
            headers=headers,
            redirect=False,
            retries=False,
            timeout=self._timeout,
            preload_content=False,
        )
        try:
            if response.status < 200:
                # An interim answer (103 Early Hints, 102) returned as the answer: the final one is still to come on
                # this connection, and pooled it would be read as the next call's, another tenant's included. Closed
                # before its (empty) body is read, as urllib3 puts a connection back once its answer is read.
                response.close()
            data = response.read(amt=self._max_body_bytes + 1, decode_content=decode_content)
            if len(data) > self._max_body_bytes:
                response.close()  # unread bytes remain: the connection cannot go back to the pool in a usable state
        except BaseException:
            response.close()  # a half-read answer leaves the connection unusable
            raise
        finally:
            response.release_conn()
        return HttpResponse(
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            retry_after=response.headers.get("Retry-After"),
            body=data,
            headers=tuple(response.headers.iteritems()),
        )

    def _send_alone(
        self,
        method: str,
        destination: Destination,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        decode_content: bool,
    ) -> HttpResponse:
        """The request on ``http.client``'s own connection through the guard (``GuardedConnection``), closed once
        its answer is read, so nothing is ever sent or read on it after this answer. The request is the one the
        pool sends (same target, headers and body); a body sent compressed although ``identity`` was asked for is
        decoded as urllib3 decodes it (gzip, deflate), within the same cap."""
        connection = GuardedConnection(destination, self._policy, connect_timeout=self._connect_timeout, tls=self._tls)
        try:
            connection.request(method, _request_target(url), body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(self._max_body_bytes + 1)
            encoding = response.getheader("Content-Encoding")
            if decode_content and encoding is not None:
                data = _decoded(data, encoding, self._max_body_bytes + 1)
            return HttpResponse(
                status=response.status,
                content_type=response.getheader("Content-Type", ""),
                retry_after=response.getheader("Retry-After"),
                body=data,
                headers=tuple(response.getheaders()),
            )
        finally:
            connection.close()

    def close(self) -> None:
        """Close pooled connections (tests and the dev server; Lambdas keep theirs for warm calls)."""
        self._pool.clear()


@functools.lru_cache(maxsize=1024)
def _request_target(url: str) -> str:
    """The path and query the request line names, spelled as urllib3 spells them (``parse_url`` percent-encodes
    what may not appear there); kept per URL, as token calls go to a handful of endpoints."""
    return parse_url(url).request_uri


def _decoded(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decoded for a ``Content-Encoding`` urllib3 decodes without optional packages (gzip, deflate), at most
    ``limit`` bytes of it; any other encoding is left as it came, as urllib3 leaves it. ``data`` already at ``limit``
    as it came is past the cap whatever it decodes to, and is returned as it is (read no further, it could only be
    decoded in part). A malformed body, or one whose stream ends early, raises ``zlib.error``."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate") or len(data) >= limit:
        return data
    decoder = zlib.decompressobj(zlib.MAX_WBITS if encoding == "deflate" else 16 + zlib.MAX_WBITS)
    try:
        decoded = decoder.decompress(data, limit)
    except zlib.error:
        if encoding != "deflate":
            raise
        decoder = zlib.decompressobj(-zlib.MAX_WBITS)  # deflate without its zlib wrapper, as some servers send it
        decoded = decoder.decompress(data, limit)
    if len(decoded) < limit and not decoder.eof:
        raise zlib.error("a compressed body that ends early")
    return decoded
