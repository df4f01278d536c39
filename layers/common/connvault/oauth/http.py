"""A deliberately small HTTP transport for provider calls, on the urllib3 that already ships with botocore.

Why not requests/httpx: they add cold-start import time for nothing we need. What this adds on top of
urllib3 is policy: a timeout on every call, no retries and no redirects (a retried token request can burn
a rotating refresh token; a redirected one can send credentials elsewhere), a cap on the body we read,
and failures turned into ``ProviderUnavailable`` whose messages name the host only, never a URL's query
or a body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from connvault.errors import ProviderUnavailable

MAX_BODY_BYTES = 1024 * 1024
"""A token response is a few KiB; anything past this is not one, and is not worth buffering."""

DEFAULT_POOL_SIZE = 10
_USER_AGENT = "connvault/0.1"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """The parts of a provider's answer that the OAuth code reads."""

    status: int
    content_type: str
    retry_after: str | None
    body: bytes


class HttpTransport:
    """One connection pool per instance; share an instance between threads, not between processes.

    ``maxsize`` is the number of connections kept per host; the scheduler sets it to its thread count
    so that concurrent refreshes against one provider do not open and drop connections.
    """

    def __init__(
        self,
        timeout_seconds: float,
        *,
        connect_timeout_seconds: float | None = None,
        maxsize: int = DEFAULT_POOL_SIZE,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._timeout = urllib3.Timeout(
            connect=connect_timeout_seconds if connect_timeout_seconds is not None else timeout_seconds,
            read=timeout_seconds,
        )
        self._max_body_bytes = max_body_bytes
        self._pool = urllib3.PoolManager(maxsize=maxsize, retries=False, timeout=self._timeout)

    def post_form(self, url: str, fields: Mapping[str, str], headers: Mapping[str, str] | None = None) -> HttpResponse:
        """POST ``fields`` as ``application/x-www-form-urlencoded``, the only body OAuth endpoints take."""
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return self.request("POST", url, body=urlencode(fields).encode(), headers=all_headers)

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """Send one request and read its answer; any status is returned, only transport failures raise.

        Raises ``ProviderUnavailable`` with reason ``timeout``, ``connection_error`` or
        ``response_too_large``. The cause is dropped (``from None``) because urllib3's messages quote the
        full URL, and tracebacks end up in logs.
        """
        host = urlsplit(url).hostname or "provider"
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers={"User-Agent": _USER_AGENT, **(headers or {})},
                redirect=False,
                retries=False,
                timeout=self._timeout,
                preload_content=False,
            )
            try:
                data = response.read(amt=self._max_body_bytes + 1)
                too_large = len(data) > self._max_body_bytes
                if too_large:
                    # Unread bytes remain: the connection cannot go back to the pool in a usable state.
                    response.close()
            finally:
                response.release_conn()
        except NewConnectionError:  # before the timeout clause: urllib3 makes it a ConnectTimeoutError
            raise ProviderUnavailable(f"could not connect to {host}", reason="connection_error") from None
        except Urllib3Timeout:
            raise ProviderUnavailable(f"{host} did not answer in time", reason="timeout") from None
        except (HTTPError, OSError):
            raise ProviderUnavailable(f"connection to {host} failed", reason="connection_error") from None
        if too_large:
            raise ProviderUnavailable(f"{host} sent an oversized response", reason="response_too_large")
        return HttpResponse(
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            retry_after=response.headers.get("Retry-After"),
            body=data,
        )

    def close(self) -> None:
        """Close pooled connections (tests and the dev server; Lambdas keep theirs for warm calls)."""
        self._pool.clear()
