"""Tenants without any integration, a demo provider to serve as their own identity server, and a tiny
server for metadata documents the demo provider would never send (too large, not JSON).

The API helpers (``Api``, ``follow_authorize``) are the ones ``tests/api`` drives the real handlers with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connvault.db.uow import UnitOfWork
from connvault.services import tenants
from demo_provider import DemoProvider
from devserver.demo_setup import DEMO_RETURN_URL, DemoTenant
from tests.api.conftest import Answer, Api, follow_authorize
from tests.support.database import TestDatabase
from tests.support.secrets import SecretRegistry

SLUG = "acme-idp"
OIDC_PATH = "/.well-known/openid-configuration"


@pytest.fixture
def idp(secrets: SecretRegistry) -> Iterator[DemoProvider]:
    """The tenant's own identity server. Every token it issued is registered as a secret at the end."""
    with DemoProvider() as provider:
        secrets.add(provider.settings.client_secret)
        yield provider
        stats = provider.stats()
        secrets.add(*stats.access_tokens, *stats.live_refresh_tokens, *stats.revoked)


@pytest.fixture
def new_tenant(db: TestDatabase, secrets: SecretRegistry) -> Callable[[str], Api]:
    """``new_tenant("A")``: a tenant with an API key and nothing else, as an ``Api``."""

    def make(name: str) -> Api:
        tenant = tenants.create_tenant(name)
        key = tenants.create_api_key(UnitOfWork(tenant.id)).plaintext
        secrets.add(key.reveal())
        return Api(DemoTenant(tenant.id, key), secrets)

    return make


@pytest.fixture
def tenant_a(new_tenant: Callable[[str], Api]) -> Api:
    return new_tenant("Tenant A")


@pytest.fixture
def tenant_b(new_tenant: Callable[[str], Api]) -> Api:
    return new_tenant("Tenant B")


def discovery_url(idp: DemoProvider, path: str = OIDC_PATH) -> str:
    return idp.base_url + path


def define(api: Api, idp: DemoProvider, slug: str = SLUG, *, client_secret: bool = True, **custom: Any) -> Answer:
    """``PUT /integrations/<slug>`` with the demo provider's client and a custom provider definition
    (default: its OpenID discovery URL; keyword arguments replace or add definition fields)."""
    settings = idp.settings
    body: dict[str, Any] = {
        "client_id": settings.client_id,
        "scopes": ["read"],
        "allowed_return_urls": [DEMO_RETURN_URL],
        "custom_provider": {"discovery_url": discovery_url(idp), **custom},
    }
    if client_secret and settings.client_secret:
        body["client_secret"] = settings.client_secret
    return api.call("PUT", f"/integrations/{slug}", body=body)


def start_connect(api: Api, slug: str = SLUG) -> Answer:
    """``POST /connect-sessions``; the state in the authorize URL is registered as a secret."""
    started = api.call(
        "POST", "/connect-sessions", body={"provider": slug, "end_user_id": "user-1", "return_url": DEMO_RETURN_URL}
    )
    if started.status == 201:
        api.secrets.add(*parse_qs(urlsplit(started.json()["authorize_url"]).query).get("state", []))
    return started


def connect(api: Api, slug: str = SLUG) -> str:
    """The whole connect flow with the browser played; the new connection's id."""
    started = start_connect(api, slug)
    assert started.status == 201, started.body
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))
    assert landed.status == 302, landed.body
    query = parse_qs(urlsplit(landed.headers["Location"]).query)
    assert "connection_id" in query, query
    return query["connection_id"][0]


@dataclass(frozen=True)
class Document:
    status: int
    content_type: str
    body: bytes
    retry_after: str | None = None


class DocumentServer:
    """Serves fixed answers by path on 127.0.0.1 and counts the requests, for metadata no real server sends."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.requests = 0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests += 1
                document = served.documents.get(urlsplit(self.path).path, Document(404, "text/plain", b"not found"))
                self.send_response(document.status)
                self.send_header("Content-Type", document.content_type)
                self.send_header("Content-Length", str(len(document.body)))
                if document.retry_after is not None:
                    self.send_header("Retry-After", document.retry_after)
                self.end_headers()
                self.wfile.write(document.body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        status: int = 200,
        retry_after: str | None = None,
    ) -> str:
        """Answer ``path`` with ``body`` from now on; the URL to fetch it."""
        self.documents[path] = Document(status, content_type, body, retry_after)
        return self.base_url + path

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def documents() -> Iterator[DocumentServer]:
    server = DocumentServer()
    yield server
    server.stop()


__all__ = ["DEMO_RETURN_URL", "OIDC_PATH", "SLUG", "Api", "DocumentServer", "connect", "define", "start_connect"]
