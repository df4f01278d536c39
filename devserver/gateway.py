"""A local stand-in for the HTTP API: each request becomes an API Gateway v2 event for the function its route
names in template.yaml, behind the same Lambda authorizer.

The route table is read from template.yaml itself, so the devserver cannot serve a route the deployment does
not (or miss one it does). What API Gateway does around the functions is imitated where a client can see it:
the most specific route wins, a request without an ``Authorization`` header gets 401 without the authorizer
being called, a denial gets 403, an unmatched route 404 and a failing function 500, each with API Gateway's
``{"message": ...}`` body; responses are mapped from the function's dict (base64 bodies, headers, cookies).

Request log lines name the method, the path, the status and the duration. Never the query string: the
OAuth callback's query carries the authorization code and the state.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devserver import handlers
from devserver.events import authorizer_event, http_event, joined
from devserver.template import TEMPLATE_PATH, load_template

DEMO_DONE_PATH = "/demo/done"
_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml", "+json", "+xml")
_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's HTTP API payload limit

logger = logging.getLogger("devserver.gateway")

type Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    """An HTTP method, or ``ANY``."""
    path: str
    """The template path, e.g. ``/connections/{connection_id}/token``; a last ``{name+}`` takes the rest of the path."""
    job: str
    """The function's directory under ``functions/``."""
    authorized: bool
    """False only where the template sets ``Auth: {Authorizer: NONE}``."""

    @property
    def key(self) -> str:
        """API Gateway's ``routeKey``."""
        return f"{self.method} {self.path}"

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sorts literal segments before ``{parameters}`` before a greedy ``{name+}``, position by position, and a
        method before ``ANY``, as API Gateway prefers them."""
        ranks = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in self.segments)
        return (*ranks, int(self.method == "ANY"))

    def match(self, method: str, segments: tuple[str, ...]) -> dict[str, str] | None:
        """The path parameters when ``method`` and ``segments`` fall on this route, else None."""
        if method != self.method and self.method != "ANY":
            return None
        greedy = self.segments[-1].endswith("+}")
        if greedy and len(segments) >= len(self.segments):
            rest = "/".join(segments[len(self.segments) - 1 :])
            segments = (*segments[: len(self.segments) - 1], rest)
        if len(segments) != len(self.segments):
            return None
        parameters = {}
        for pattern, segment in zip(self.segments, segments, strict=True):
            if pattern.startswith("{"):
                if not segment:
                    return None
                parameters[pattern.strip("{}+")] = unquote(segment)
            elif pattern != segment:
                return None
        return parameters


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...]
    authorizer_job: str

    @classmethod
    def from_template(cls, path: Path = TEMPLATE_PATH) -> RouteTable:
        """The HTTP API's routes and default authorizer as template.yaml declares them."""
        document = load_template(path)
        resources: dict[str, Any] = document["Resources"]
        functions = {
            name: resource["Properties"]
            for name, resource in resources.items()
            if resource["Type"] == "AWS::Serverless::Function"
        }

        def job_of(function: str) -> str:
            return Path(functions[function]["CodeUri"]).name

        api = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::Serverless::HttpApi")
        default = api["Auth"]["Authorizers"][api["Auth"]["DefaultAuthorizer"]]
        authorizer_function = default["FunctionArn"]["Fn::GetAtt"][0]
        routes = [
            Route(
                method=event["Properties"]["Method"].upper(),
                path=event["Properties"]["Path"],
                job=job_of(name),
                authorized=event["Properties"].get("Auth", {}).get("Authorizer") != "NONE",
            )
            for name, properties in functions.items()
            for event in properties.get("Events", {}).values()
            if event["Type"] == "HttpApi"
        ]
        routes.sort(key=lambda route: route.specificity)
        return cls(tuple(routes), job_of(authorizer_function))

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segments = tuple(path.strip("/").split("/"))
        for route in self.routes:
            parameters = route.match(method, segments)
            if parameters is not None:
                return route, parameters
        return None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def gateway_message(cls, status: HTTPStatus) -> Reply:
        """API Gateway's own answer (no function involved): ``{"message": "Forbidden"}`` and the like."""
        body = json.dumps({"message": status.phrase}).encode()
        return cls(status.value, (("Content-Type", "application/json"),), body)

    @classmethod
    def from_lambda(cls, result: dict[str, Any]) -> Reply:
        """A payload 2.0 function response, as API Gateway turns it into HTTP."""
        headers = [
            (name, str(value))
            for name, value in (result.get("headers") or {}).items()
            if name.lower() != "content-length"
        ]
        headers += [("Set-Cookie", cookie) for cookie in result.get("cookies") or ()]
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return cls(int(result["statusCode"]), tuple(headers), data)


class Gateway(ThreadingHTTPServer):
    """The local HTTP API on ``address``; ``invoke`` runs a function (``devserver.handlers.invoke``)."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], routes: RouteTable | None = None, invoke: Invoke = handlers.invoke
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.routes = routes or RouteTable.from_template()
        self.invoke = invoke

    @property
    def authority(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.authority}"

    def handle_request_for(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None
    ) -> Reply:
        """Everything API Gateway does for one request: route, authorize, build the event, call, map."""
        if method == "GET" and path == DEMO_DONE_PATH:
            return demo_done_page(parse_qs(query), self.base_url)
        found = self.routes.find(method, path)
        if found is None:
            return Reply.gateway_message(HTTPStatus.NOT_FOUND)
        route, parameters = found
        authorizer: dict[str, str] | None = None
        if route.authorized:
            authorization = headers.get("authorization")
            if not authorization:
                return Reply.gateway_message(HTTPStatus.UNAUTHORIZED)
            try:
                event = authorizer_event(authorization, method=method, path=path)
                decision = self.invoke(self.routes.authorizer_job, event)
            except Exception as error:
                logger.error("authorizer failed: %s", type(error).__name__)
                return Reply.gateway_message(HTTPStatus.INTERNAL_SERVER_ERROR)
            if decision.get("isAuthorized") is not True:
                return Reply.gateway_message(HTTPStatus.FORBIDDEN)
            authorizer = {name: str(value) for name, value in (decision.get("context") or {}).items()}
        event = http_event(
            method,
            path,
            route_key=route.key,
            query=query,
            body=_event_body(body, headers.get("content-type", "")),
            headers=headers,
            authorizer=authorizer,
            path_parameters=parameters,
            domain=self.authority,
        )
        try:
            return Reply.from_lambda(self.invoke(route.job, event))
        except Exception as error:
            logger.error("function %s failed: %s", route.job, type(error).__name__)
            return Reply.gateway_message(HTTPStatus.INTERNAL_SERVER_ERROR)


def _event_body(body: bytes | None, content_type: str) -> str | bytes | None:
    """Text bodies go into the event as they are; anything else base64-encoded, as API Gateway does."""
    if not body:
        return None
    if any(kind in content_type.lower() for kind in _TEXT_TYPES):
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body
    return body


class _RequestHandler(BaseHTTPRequestHandler):
    server: Gateway
    server_version = "connvault-devserver"

    def _serve(self) -> None:
        started = time.perf_counter()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            reply = Reply.gateway_message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else None
            reply = self.server.handle_request_for(self.command, parts.path, parts.query, self._headers(), body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s %d %.1f ms", self.command, parts.path, reply.status, elapsed_ms)
        self._send(reply)

    def __getattr__(self, name: str) -> Any:
        """The base class dispatches on ``do_<METHOD>`` and answers any other method with its own 501 HTML page;
        API Gateway routes every method the same way (one it has no route for, TRACE say, is its JSON 404)."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _headers(self) -> dict[str, str]:
        """Lower-cased names; repeated headers joined with commas, as in API Gateway's v2 events."""
        return joined((name.lower(), value) for name, value in self.headers.items())

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class logs the request line, query string included. ``_serve`` logs instead."""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 44rem; margin: 4rem auto">
<h1>{title}</h1>{content}</body></html>
"""


def demo_done_page(query: dict[str, list[str]], base_url: str) -> Reply:
    """Where the demo's connect sessions return: the connection id and how to fetch its token, or the error.

    The curl line reads the API key from ``$CONNVAULT_API_KEY`` (printed at start), so the page holds no secret.
    """
    connection_id = _uuid_or_none((query.get("connection_id") or [""])[0])
    error = (query.get("error") or [""])[0][:100]
    if connection_id is not None:
        curl = f'curl -s -H "Authorization: Bearer $CONNVAULT_API_KEY" {base_url}/connections/{connection_id}'
        title = "Connected"
        content = (
            f"<p>connection_id <code>{connection_id}</code></p><p>Fetch its access token:</p>"
            f"<pre>{escape(curl)}/token</pre><p>Call the provider's API with it, through the proxy:</p>"
            f"<pre>{escape(curl)}/proxy/me</pre>"
        )
    elif error:
        title = "Connection failed"
        content = f"<p>error <code>{escape(error)}</code></p><p>Start a new connect session and try again.</p>"
    else:
        title = "connvault demo"
        content = "<p>Connect sessions started with this page as their <code>return_url</code> come back here.</p>"
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
    )
    return Reply(HTTPStatus.OK.value, headers, _PAGE.format(title=title, content=content).encode())


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
