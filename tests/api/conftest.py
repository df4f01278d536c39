"""Fixtures for driving the real Lambda handlers with API Gateway v2 events against a local provider."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3

from devserver.demo_setup import DEMO_RETURN_URL, DemoTenant, create_demo_tenant, install_demo_provider
from devserver.events import authorizer_event, http_event
from devserver.provider import DemoProvider
from tests.support.database import TestDatabase
from tests.support.secrets import SecretRegistry

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


class _Context:
    function_name = "test"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(job: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """``functions/<job>/app.py``'s ``handler``, imported the way Lambda imports it (as module ``app``)."""
    name = f"connvault_fn_{job}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FUNCTIONS / job / "app.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].handler


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
        decision = load_handler("authorizer")(authorizer_event(presented, method=method, path=path), _Context())
        if not decision["isAuthorized"]:
            return Answer(401, {}, json.dumps({"message": "Unauthorized"}))
        tenant_id = decision["context"]["tenant_id"]
        job = "token_fetch" if path.endswith("/token") else "api"
        event = http_event(method, path, query=query, body=body, tenant_id=tenant_id)
        return self._invoke(job, event)

    def callback(self, query: str) -> Answer:
        return self._invoke("oauth_callback", http_event("GET", "/oauth/callback", query=query))

    def _invoke(self, job: str, event: dict[str, Any]) -> Answer:
        raw = load_handler(job)(event, _Context())
        answer = Answer(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")
        if answer.status >= 400:
            self.secrets.check(answer.body, "an HTTP error body")
        return answer


@pytest.fixture
def provider() -> Iterator[DemoProvider]:
    with DemoProvider() as demo:
        yield demo


@pytest.fixture
def api(db: TestDatabase, provider: DemoProvider, secrets: SecretRegistry) -> Api:
    install_demo_provider(db.owner_target, provider)
    tenant = create_demo_tenant(provider)
    secrets.add(tenant.api_key.reveal(), provider.settings.client_secret)
    return Api(tenant, secrets)


def follow_authorize(authorize_url: str, secrets: SecretRegistry) -> str:
    """Play the browser at the provider: its redirect back to us, as the callback's raw query string."""
    http = urllib3.PoolManager()
    answer = http.request("GET", authorize_url, redirect=False, timeout=5)
    assert answer.status == 302, answer.status
    location = answer.headers["Location"]
    query = urlsplit(location).query
    for value in parse_qs(query).values():
        secrets.add(*value)
    return query


__all__ = ["DEMO_RETURN_URL", "Answer", "Api", "follow_authorize", "load_handler"]
