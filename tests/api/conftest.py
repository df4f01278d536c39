"""Fixtures for driving the real Lambda handlers with API Gateway v2 events against a local provider."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest
import urllib3
from sqlalchemy import text

from connvault import wiring
from connvault.crypto.envelope import SealContext
from connvault.db.oauth_sessions import VERIFIER_FIELD
from connvault.db.uow import UnitOfWork
from connvault.models import Connection
from demo_provider import DemoProvider
from devserver.demo_setup import DEMO_RETURN_URL, DemoTenant, create_demo_tenant, install_demo_provider
from devserver.events import authorizer_event, http_event
from devserver.gateway import RouteTable
from devserver.handlers import InvocationContext, load_handler
from tests.support.database import TestDatabase
from tests.support.factories import owner
from tests.support.secrets import SecretRegistry


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    """Calls the API as API Gateway would: the authorizer first, then the route's function."""

    tenant: DemoTenant
    secrets: SecretRegistry

    def call(
        self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None, key: str | None = None
    ) -> Answer:
        presented = f"Bearer {key if key is not None else self.tenant.api_key.reveal()}"
        decision = self.authorize(presented, method=method, path=path)
        if not decision["isAuthorized"]:
            return Answer(401, {}, json.dumps({"message": "Unauthorized"}))
        tenant_id = decision["context"]["tenant_id"]
        event = http_event(method, path, query=query, body=body, tenant_id=tenant_id)
        return self.invoke(job_for(method, path), event)

    def authorize(self, authorization: str | None, *, method: str = "GET", path: str = "/connections") -> Any:
        """The authorizer's decision for an ``Authorization`` header (``None``: no header at all)."""
        event = authorizer_event(authorization, method=method, path=path)
        return load_handler("authorizer")(event, InvocationContext())

    def callback(self, query: str) -> Answer:
        return self.invoke("oauth_callback", http_event("GET", "/oauth/callback", query=query))

    def invoke_raw(self, job: str, event: dict[str, Any]) -> dict[str, Any]:
        """``functions/<job>``'s answer as the Lambda returns it (cookies included)."""
        return load_handler(job)(event, InvocationContext())

    def invoke(self, job: str, event: dict[str, Any]) -> Answer:
        """Run ``functions/<job>``'s handler on an event as it stands (no authorizer in front)."""
        raw = self.invoke_raw(job, event)
        answer = Answer(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")
        if answer.status >= 400:
            self.secrets.check(answer.body, "an HTTP error body")
        if "Location" in answer.headers:
            self.secrets.check(answer.headers["Location"], "a Location header")
        return answer


ROUTES = RouteTable.from_template()


def job_for(method: str, path: str) -> str:
    """The function the template routes ``method path`` to (``api`` for a path no route takes: its 404)."""
    found = ROUTES.find(method, path)
    return found[0].job if found is not None else "api"


@pytest.fixture
def provider() -> Iterator[DemoProvider]:
    with DemoProvider() as demo:
        yield demo


@pytest.fixture
def api(db: TestDatabase, provider: DemoProvider, secrets: SecretRegistry) -> Iterator[Api]:
    """A tenant with an integration for the demo provider. Every token the provider issued during the test
    is registered as a secret at the end, so a token in any log record fails the test."""
    install_demo_provider(db.owner_target, provider)
    tenant = create_demo_tenant(provider)
    secrets.add(tenant.api_key.reveal(), provider.settings.client_secret)
    yield Api(tenant, secrets)
    stats = provider.stats()
    secrets.add(*stats.access_tokens, *stats.live_refresh_tokens, *stats.revoked)


@pytest.fixture
def reconfigure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``reconfigure(http_timeout_seconds=0.5)``: set ``CONNVAULT_*`` for this test and rebuild every cached
    collaborator from it; the environment and the collaborators are restored afterwards."""

    def apply(**settings: object) -> None:
        for name, value in settings.items():
            monkeypatch.setenv(f"CONNVAULT_{name.upper()}", str(value))
        wiring.reset()

    yield apply
    monkeypatch.undo()
    wiring.reset()


def start_connect(api: Api, **fields: Any) -> Answer:
    """``POST /connect-sessions`` for the demo provider (fields override the defaults); the state and PKCE
    verifier it made are registered as secrets."""
    body = {"provider": "demo", "end_user_id": "user-1", "return_url": DEMO_RETURN_URL, **fields}
    started = api.call("POST", "/connect-sessions", body={k: v for k, v in body.items() if v is not None})
    if started.status == 201:
        api.secrets.add(*parse_qs(urlsplit(started.json()["authorize_url"]).query).get("state", []))
        api.secrets.add(*pending_verifiers(api.tenant.tenant_id))
    return started


def connect_account(api: Api, **fields: Any) -> str:
    """The whole connect flow, browser included; the new (or reconnected) connection's id."""
    started = start_connect(api, **fields)
    assert started.status == 201, started.body
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))
    assert landed.status == 302, landed.body
    return parse_qs(urlsplit(landed.headers["Location"]).query)["connection_id"][0]


def pending_verifiers(tenant_id: UUID) -> list[str]:
    """The PKCE verifiers of the tenant's pending connects, opened the way the callback opens them."""
    with UnitOfWork(tenant_id) as uow:
        rows = uow.session.execute(text("SELECT id, code_verifier FROM oauth_sessions")).all()
    sealer = wiring.get_sealer()
    return [
        sealer.open(bytes(sealed), SealContext(tenant_id, VERIFIER_FIELD, ident)).decode()
        for ident, sealed in rows
        if sealed is not None
    ]


def stored_connection(db: TestDatabase, connection_id: str) -> Connection:
    """The connection as stored, credentials opened: what the vault holds, not what an API answer says."""
    with owner(db) as connection:
        rows = connection.run("SELECT tenant_id FROM connections WHERE id = CAST(:i AS uuid)", i=connection_id)
    with UnitOfWork(rows[0][0]) as uow:
        return uow.connections.get(UUID(connection_id))


def db_state(db: TestDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Every row connvault writes for tenants (as the owner, past RLS), to show that a request changed
    nothing: compare the value before and after."""
    queries = {
        "connections": "SELECT id, tenant_id, alias, status, metadata::text, credentials, expires_at,"
        " last_error_code, refresh_failures, updated_at FROM connections ORDER BY id",
        "integrations": "SELECT id, tenant_id, client_id, client_secret, scopes, allowed_return_urls, updated_at"
        " FROM integrations ORDER BY id",
        "oauth_sessions": "SELECT id, tenant_id, expires_at FROM oauth_sessions ORDER BY id",
        "tenant_api_keys": "SELECT id, tenant_id, revoked_at FROM tenant_api_keys ORDER BY id",
        "accounts": "SELECT id, tenant_id, connection_id, external_id, baas_id, display_name, metadata::text,"
        " deleted_at, updated_at FROM accounts ORDER BY id",
        "tenants": "SELECT id, blind_index_key FROM tenants ORDER BY id",
    }
    with owner(db) as connection:
        return {table: [tuple(row) for row in connection.run(sql)] for table, sql in queries.items()}


def follow_authorize(authorize_url: str, secrets: SecretRegistry) -> str:
    """Play the browser at the provider: its redirect back to us, as the callback's raw query string."""
    http = urllib3.PoolManager()
    answer = http.request("GET", authorize_url, redirect=False, timeout=5)
    assert answer.status == 302, answer.status
    location = answer.headers["Location"]
    query = urlsplit(location).query
    params = parse_qs(query)
    secrets.add(*params.get("code", []), *params.get("state", []))  # not error or iss: those are no secrets
    return query


__all__ = [
    "DEMO_RETURN_URL",
    "Answer",
    "Api",
    "connect_account",
    "db_state",
    "follow_authorize",
    "job_for",
    "load_handler",
    "pending_verifiers",
    "start_connect",
    "stored_connection",
]
