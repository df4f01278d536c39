"""The demo provider's HTTP server: requests parsed, faults and delays applied, answers written; the logic of each
endpoint is ``DemoProvider``'s."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from demo_provider.credentials import api_credential
from demo_provider.errors import TokenError
from demo_provider.records import ApiCall

if TYPE_CHECKING:
    from demo_provider.faults import Fault
    from demo_provider.provider import DemoProvider
    from demo_provider.records import Headers
    from demo_provider.settings import DemoSettings

_MAX_API_BODY_BYTES = 8 * 1024 * 1024
_MAX_REQUEST_BYTES = 64 * 1024


class DemoServer(ThreadingHTTPServer):
    """A thread per connection, each handing requests to the one ``DemoProvider`` it serves."""

    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once; the default backlog is 5

    def __init__(self, address: tuple[str, int], handler: type[RequestHandler], provider: DemoProvider) -> None:
        super().__init__(address, handler)
        self.provider = provider


class RequestHandler(BaseHTTPRequestHandler):
    """One connection's requests: parsed, faults and delays applied, then the provider's answer written."""

    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    timeout = 10  # idle keep-alive connections give their thread back
    # TCP_NODELAY: headers and body go out in two writes, and with Nagle on the client's delayed ACK adds ~40 ms
    # to every answer.
    disable_nagle_algorithm = True

    @property
    def provider(self) -> DemoProvider:
        return cast("DemoServer", self.server).provider

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry codes and states."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/api/"):
            self._api()
        elif url.path == "/demo/stats":
            stats = self.provider.stats()
            self._send_json(
                HTTPStatus.OK,
                {
                    "token_calls": dict(stats.token_calls),
                    "refresh_token_reuse": stats.refresh_token_reuse,
                    "code_reuse": stats.code_reuse,
                    "api_calls": len(stats.api_calls),
                },
            )
        elif url.path == "/authorize":
            status, target = self.provider.authorize(params)
            if status == HTTPStatus.FOUND:
                self._send(status, b"", "text/plain", (("Location", target),))
            else:
                self._send(status, target.encode(), "text/plain")
        elif url.path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            self._send_json(HTTPStatus.OK, self.provider.metadata())
        elif url.path == "/device":
            decide = self.provider.deny_device if params.get("deny") == "1" else self.provider.approve_device
            if decide(params.get("user_code", "")):
                self._send(HTTPStatus.OK, b"done: you can close this page", "text/plain")
            else:
                self._send(HTTPStatus.BAD_REQUEST, b"unknown or used code", "text/plain")
        elif url.path == "/userinfo":
            info = self.provider.userinfo(self.headers.get("Authorization"))
            if info is None:
                self._send_json(
                    HTTPStatus.UNAUTHORIZED,
                    {"error": "invalid_token"},
                    (("WWW-Authenticate", 'Bearer error="invalid_token"'),),
                )
            else:
                self._send_json(HTTPStatus.OK, info)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/api/"):
            self._api()
            return
        if path == "/demo/expire-access-tokens":
            self.provider.expire_access_tokens()
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
            return
        form = self._read_form()
        if path == "/token":
            self._token(form)
        elif path == "/device_authorization":
            self._device_authorization(form)
        elif path == "/revoke":
            self._revoke(form)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _api(self) -> None:
        """Any method under ``/api/``: faults first, then latency, then the provider's answer."""
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_API_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"", "text/plain")
            return
        body = self.rfile.read(length) if length else b""
        provider = self.provider
        fault = provider.take_fault(url.path)
        if not provider.sleep_unless_stopped(
            provider.settings.api_latency_seconds + (fault.delay_seconds if fault else 0.0)
        ):
            self.close_connection = True
            return
        if fault is not None and (fault.drop_connection or fault.status is not None):
            self._send_fault(fault)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        via, credential = api_credential(headers, url.query)
        call = ApiCall(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={k: v for k, v in headers.items() if k not in ("authorization", "x-demo-key")},
            body=body,
            credential_via=via,
            credential=credential,
        )
        status, document, extra = provider.api(call)
        if isinstance(document, bytes):
            self._send(status, document, "application/octet-stream", extra)
        else:
            self._send(status, json.dumps(document).encode(), "application/json", extra)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _api  # noqa: N815 - the API takes any method

    def _token(self, form: Mapping[str, str] | None) -> None:
        """The call counts as in flight until its answer is decided, not until it is written: a client that has
        read the answer may send its next request before this thread would have left, which would count two
        calls the client never had in flight together."""
        provider = self.provider
        settings = provider.settings
        grant_type = form.get("grant_type", "missing") if form is not None else "malformed"
        fault = provider.enter_token_call(grant_type)
        try:
            if not provider.sleep_unless_stopped(settings.latency_seconds + (fault.delay_seconds if fault else 0.0)):
                self.close_connection = True
                return
            if fault is not None and (fault.drop_connection or fault.status is not None):
                answer: Callable[[], None] = functools.partial(self._send_fault, fault)
            else:
                try:
                    if form is None:
                        raise TokenError("invalid_request")
                    document = provider.token(form, self.headers.get("Authorization"))
                except TokenError as error:
                    answer = functools.partial(self._send_token_error, settings, error)
                else:
                    answer = functools.partial(self._send_document, settings, HTTPStatus.OK, document)
        finally:
            provider.leave_token_call()
        answer()

    def _device_authorization(self, form: Mapping[str, str] | None) -> None:
        fault = self.provider.take_fault("/device_authorization")
        if fault is not None:
            self._send_fault(fault)
            return
        try:
            if form is None:
                raise TokenError("invalid_request")
            document = self.provider.device_authorization(form, self.headers.get("Authorization"))
        except TokenError as error:
            self._send_json(error.status, {"error": error.code})
        else:
            self._send_json(HTTPStatus.OK, document)

    def _revoke(self, form: Mapping[str, str] | None) -> None:
        fault = self.provider.take_fault("/revoke")
        if fault is not None:
            if self.provider.sleep_unless_stopped(fault.delay_seconds):
                self._send_fault(fault)
            else:
                self.close_connection = True
            return
        try:
            if form is None:
                raise TokenError("invalid_request")
            self.provider.revoke(form, self.headers.get("Authorization"))
        except TokenError as error:
            self._send_json(error.status, {"error": error.code})
        else:
            self._send(HTTPStatus.OK, b"", "text/plain")

    def _read_form(self) -> dict[str, str] | None:
        """The urlencoded body, or None if malformed or with a repeated parameter (RFC 6749 §3.2)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST_BYTES:
            self.close_connection = True
            return None
        pairs = parse_qsl(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        return form if len(form) == len(pairs) else None

    def _send_token_error(self, settings: DemoSettings, error: TokenError) -> None:
        document: dict[str, Any] = {"error": error.code}
        if settings.nested_authed_user:
            document = {"ok": False, **document}
        status = HTTPStatus.OK if settings.errors_as_200 else error.status
        headers = (("WWW-Authenticate", 'Basic realm="demo"'),) if status == HTTPStatus.UNAUTHORIZED else ()
        self._send_document(settings, status, document, headers)

    def _send_document(
        self, settings: DemoSettings, status: int, document: Mapping[str, Any], headers: Headers = ()
    ) -> None:
        if settings.form_encoded:
            body = urlencode({key: str(value) for key, value in document.items()}).encode()
            self._send(status, body, "application/x-www-form-urlencoded", headers)
        else:
            self._send_json(status, document, headers)

    def _send_fault(self, fault: Fault) -> None:
        if fault.drop_connection:
            self.close_connection = True  # nothing written: the client sees the connection end
            return
        self._send(fault.status or HTTPStatus.OK, fault.body, fault.content_type, fault.headers)

    def _send_json(self, status: int, document: Mapping[str, Any], headers: Headers = ()) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: Headers = ()) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout fired)
