"""API Gateway HTTP API (payload 2.0) events, built the way API Gateway builds them.

``make run`` turns each local HTTP request into one of these; the tests use the same builder, so both drive
the handlers exactly as a deployment does.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

DOMAIN = "127.0.0.1:3000"


def http_event(
    method: str,
    path: str,
    *,
    route_key: str | None = None,
    query: dict[str, str] | str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    tenant_id: str | None = None,
    authorizer: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    domain: str = DOMAIN,
) -> dict[str, Any]:
    """An HTTP API v2 event; ``authorizer`` is the Lambda authorizer's context as API Gateway passes it on
    (``tenant_id`` is the short form of the usual one)."""
    raw_query = query if isinstance(query, str) else urlencode(query or {})
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    all_headers = {k.lower(): v for k, v in (headers or {}).items()}
    raw_body: str | None = None
    is_base64 = False
    if body is not None:
        if isinstance(body, bytes):
            raw_body, is_base64 = base64.b64encode(body).decode(), True
        else:
            raw_body = body if isinstance(body, str) else json.dumps(body)
        all_headers.setdefault("content-type", "application/json")
    now = time.time()
    context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": all_headers.get("user-agent", "connvault-devserver"),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key or f"{method} {path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if tenant_id is not None:
        authorizer = {"tenant_id": tenant_id, **(authorizer or {})}
    if authorizer is not None:
        context["authorizer"] = {"lambda": authorizer}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": context,
        "isBase64Encoded": is_base64,
    }
    if "cookie" in all_headers:  # API Gateway moves the Cookie header into the event's cookies list
        event["cookies"] = [c.strip() for c in all_headers.pop("cookie").split(";") if c.strip()]
    if pairs:
        event["queryStringParameters"] = joined(pairs)
    if path_parameters:
        event["pathParameters"] = path_parameters
    if raw_body is not None:
        event["body"] = raw_body
    return event


def joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each name once, a repeated name's values joined with commas in order: v2 events have no multi-value fields,
    so API Gateway carries repeated query parameters and headers this way (``?state=S&state=S`` is ``S,S``), and a
    handler must see what it would see deployed, not the last value alone."""
    result: dict[str, str] = {}
    for name, value in pairs:
        result[name] = f"{result[name]},{value}" if name in result else value
    return result


def authorizer_event(authorization: str | None, *, method: str = "GET", path: str = "/connections") -> dict[str, Any]:
    """The event a REQUEST authorizer (payload 2.0) receives."""
    event = http_event(method, path, headers={"authorization": authorization} if authorization else {})
    event["type"] = "REQUEST"
    event["routeArn"] = f"arn:aws:execute-api:us-east-1:123456789012:local/$default/{method}{path}"
    event["identitySource"] = [authorization] if authorization else []
    return event
