"""Every function of the built bundle, run by ``sam local invoke`` in a Lambda container, answers its ``events/``
sample against the suite's PostgreSQL and moto (see conftest.py for the image and the network).

The invocations are independent, so one fixture runs them all at once (``PARALLEL_INVOKES`` at a time) and each test
asserts one answer. They share one xdist group: ``make test`` runs them on one worker, once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets as random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest

from connvault import api_keys
from connvault.db.uow import UnitOfWork
from connvault.migrations import SCHEMA_DIR, load_migrations
from connvault.models import ApiKeyCredentials, OAuth2Credentials
from connvault.redacted import Redacted
from connvault.services import connections, tenants, tokens
from devserver.template import load_template
from tests.infrastructure.cfn import Template
from tests.sam_local.sam_cli import Invocation, Invoked, SamLocal, bridge_url
from tests.support.cloudformation import EVENTS, CfnAnswer, ResponseUrlServer, cfn_event
from tests.support.database import remove_tenants
from tests.support.factories import make_connection, oauth_grant
from tests.support.fresh_database import fresh_database
from tests.support.sample_events import at_connection, for_tenant, sample, with_authorization
from tests.support.secrets import SecretRegistry

if TYPE_CHECKING:
    from tests.support.database import TestDatabase

pytestmark = pytest.mark.xdist_group("sam_local")


@dataclass(frozen=True)
class Scene:
    """The rows and endpoints the sample events are pointed at."""

    tenant_id: UUID
    api_key: str
    stranger_key: str
    """A well-formed key no tenant has."""
    oauth_connection_id: UUID
    access_token: str
    seeded_api_key_connection_id: UUID
    response_url: str
    """The migrations event's ResponseURL: the local CloudFormation stand-in, as a container reaches it."""
    empty_database: str


@dataclass(frozen=True)
class Case:
    """One ``sam local invoke``: a function, the ``events/`` sample it is given, and how the sample is pointed at
    the scene."""

    function: str
    event: str
    point: Callable[[dict[str, Any], Scene], dict[str, Any]]
    env: Callable[[Scene], dict[str, str]] = lambda scene: {}


def worker_message(event: dict[str, Any], scene: Scene) -> dict[str, Any]:
    """The sample SQS batch, for the seeded connection (not due), plus a message nobody can read."""
    record = event["Records"][0]
    seeded = {"tenant_id": str(scene.tenant_id), "connection_id": str(scene.oauth_connection_id)}
    body = json.loads(record["body"]) | seeded
    event["Records"] = [{**record, "body": json.dumps(body)}, {**record, "messageId": "unreadable", "body": "{"}]
    return event


CASES: dict[str, Case] = {
    "authorizer admits": Case(
        "AuthorizerFunction", "authorizer", lambda event, s: with_authorization(event, f"Bearer {s.api_key}")
    ),
    "api creates": Case("ApiFunction", "api_create_connection", lambda event, s: for_tenant(event, s.tenant_id)),
    "token": Case(
        "TokenFetchFunction",
        "token_fetch",
        lambda event, s: at_connection(for_tenant(event, s.tenant_id), str(s.oauth_connection_id)),
    ),
    # The sample names a connection the tenant does not have: the proxy answers for it without any provider call.
    "proxy": Case("ProxyFunction", "proxy", lambda event, s: for_tenant(event, s.tenant_id)),
    "callback": Case("OAuthCallbackFunction", "oauth_callback", lambda event, s: event),
    "connect page": Case("ConnectPageFunction", "connect_page", lambda event, s: event),
    "scan": Case("ScheduledRefreshFunction", "scheduled_refresh", lambda event, s: event),
    "worker": Case("RefreshWorkerFunction", "refresh_worker", worker_message),
    # One pass over the outbox: without the drain, a run polls an empty outbox for WebhookDrainSeconds (45 s).
    "webhooks": Case(
        "WebhookDeliveryFunction",
        "webhook_delivery",
        lambda event, s: event,
        env=lambda s: {"CONNVAULT_WEBHOOK_DRAIN_SECONDS": "0"},
    ),
    "device poller": Case("DevicePollerFunction", "device_poller", lambda event, s: event),
    "migrations": Case(
        "MigrationsFunction",
        "migrations_create",
        lambda event, s: event | {"ResponseURL": s.response_url},
        env=lambda s: {"CONNVAULT_DB_NAME": s.empty_database},
    ),
}


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: str


def get(base_url: str, path: str, authorization: str | None) -> HttpAnswer:
    """One GET to ``sam local start-api``; the first request of a route waits for its containers to start."""
    connection = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=300)
    try:
        connection.request("GET", path, headers={"Authorization": authorization} if authorization else {})
        response = connection.getresponse()
        return HttpAnswer(response.status, dict(response.getheaders()), response.read().decode())
    finally:
        connection.close()


# Requests through SAM's emulation of the HTTP API (routes and authorizer from the template): path, Authorization.
API_REQUESTS: dict[str, Callable[[Scene], tuple[str, str | None]]] = {
    "no key": lambda s: ("/connections", None),
    "unknown key": lambda s: ("/connections", f"Bearer {s.stranger_key}"),
    "list": lambda s: ("/connections?provider=openai", f"Bearer {s.api_key}"),
    "token": lambda s: (f"/connections/{s.oauth_connection_id}/token?min_ttl=300", f"Bearer {s.api_key}"),
    "callback": lambda s: ("/oauth/callback?code=unknown-code&state=not-a-state-of-any-session", None),
}


@dataclass(frozen=True)
class Run:
    scene: Scene
    invoked: dict[str, Invoked]
    api: dict[str, HttpAnswer]
    """``API_REQUESTS``' answers."""
    api_log: str
    cfn_answers: list[CfnAnswer]
    migrated_files: int
    """Rows in schema_migrations of the empty database, after the migrations function ran."""
    created_api_key: str | None
    """The API key of the connection the api function created, opened in-process (so sealed through moto KMS)."""
    secrets: tuple[str, ...]
    """Every secret the scene holds or the run made: none may appear in a function's logs."""

    def answer(self, case: str, secrets: SecretRegistry) -> Any:
        """The case's answer, once its logs are checked for every secret of the run."""
        invoked = self.invoked[case]
        secrets.add(*self.secrets)
        secrets.check(invoked.stderr, f"the logs of {case!r}")
        return invoked.answer


@pytest.fixture(scope="module")
def run(sam_local: SamLocal, database: TestDatabase, timings: dict[str, float]) -> Run:
    """Seeds the scene, then invokes every case at once; checks that need the database happen right after."""
    remove_tenants(database)
    tenant = tenants.create_tenant("sam local tenant")
    api_key = tenants.create_api_key(UnitOfWork(tenant.id)).plaintext.reveal()
    stranger = api_keys.mint().plaintext.reveal()
    grant = oauth_grant(SecretRegistry())
    assert isinstance(grant.credentials, OAuth2Credentials) and grant.credentials.refresh_token
    oauth = make_connection(tenant.id, SecretRegistry(), grant=grant)
    seeded_key = f"sk-seeded-{random.token_urlsafe(16)}"
    seeded = connections.create_static_connection(
        UnitOfWork(tenant.id),
        connections.StaticCredentialsInput(provider="openai", end_user_id="user-7", api_key=Redacted(seeded_key)),
    )
    sample_key = json.loads(sample("api_create_connection")["body"])["api_key"]
    known = [api_key, stranger, seeded_key, sample_key, grant.credentials.refresh_token.reveal()]

    with (
        contextlib.ExitStack() as stack,
        fresh_database(database, "connvault_sam_local") as empty,
        ResponseUrlServer() as cfn,
    ):
        request = cfn_event("create", cfn)
        scene = Scene(
            tenant_id=tenant.id,
            api_key=api_key,
            stranger_key=stranger,
            oauth_connection_id=oauth.id,
            access_token=grant.credentials.access_token.reveal(),
            seeded_api_key_connection_id=seeded.id,
            response_url=bridge_url(request["ResponseURL"], sam_local.bridge_host, stack),
            empty_database=empty.target.database,
        )
        started = time.monotonic()
        invoked = sam_local.invoke_all(
            {
                name: Invocation(case.function, case.point(sample(case.event), scene), case.env(scene))
                for name, case in CASES.items()
            }
        )
        timings["all invokes"] = time.monotonic() - started
        timings.update({f"invoke {invoked[name].function}": invoked[name].seconds for name in CASES})
        answers = list(cfn.answers)
        migrated = empty.query("SELECT count(*) FROM schema_migrations")[0][0] if answers else 0
        known += cfn.signatures
    started = time.monotonic()
    with sam_local.start_api() as server:
        api = {name: get(server.url, *request(scene)) for name, request in API_REQUESTS.items()}
    timings["start-api, requests and stop"] = time.monotonic() - started
    created_key = opened_api_key(tenant.id, invoked["api creates"])
    api_log = server.log.read_text(encoding="utf-8")
    return Run(scene, invoked, api, api_log, answers, migrated, created_key, (*known, scene.access_token))


def opened_api_key(tenant_id: UUID, created: Invoked) -> str | None:
    """The API key of the connection the container created, opened here: it was sealed through moto's KMS."""
    if created.returncode != 0 or not created.stdout.strip():
        return None  # test_the_api_stores_... says why
    answer = json.loads(created.stdout)
    if answer.get("statusCode") != 201:
        return None
    credentials = tokens.get_token(tenant_id, UUID(json.loads(answer["body"])["id"])).credentials
    return credentials.api_key.reveal() if isinstance(credentials, ApiKeyCredentials) else None


def test_every_function_in_the_template_has_an_event_and_a_sam_local_case() -> None:
    # A function added to template.yaml needs events/<job>.json (or <job>_<what>.json) and a case here that says
    # what its answer must be; `sam local invoke` then runs it in every `make test`.
    template = Template(load_template())
    for function in template.functions:
        job = template.function_property(function, "CodeUri").strip("/").removeprefix("functions/")
        events = {path.stem for path in EVENTS.glob("*.json") if path.stem == job or path.stem.startswith(f"{job}_")}
        assert events, f"{function} has no sample event: add events/{job}.json"
        cases = [case for case in CASES.values() if case.function == function]
        assert cases, f"{function} is never run by `sam local invoke`: add a case to CASES in {__file__}"
        assert {case.event for case in cases} <= events
    assert {case.function for case in CASES.values()} <= set(template.functions)


def test_the_authorizer_admits_a_tenant_key(run: Run, secrets: SecretRegistry) -> None:
    assert run.answer("authorizer admits", secrets) == {
        "isAuthorized": True,
        "context": {"tenant_id": str(run.scene.tenant_id)},
    }


def test_the_api_stores_the_sample_api_key_sealed_through_kms(run: Run, secrets: SecretRegistry) -> None:
    created = run.answer("api creates", secrets)

    assert created["statusCode"] == 201, created
    body = json.loads(created["body"])
    assert (body["provider"], body["credential_type"], body["status"]) == ("openai", "api_key", "active")
    assert "api_key" not in body
    assert run.created_api_key == json.loads(sample("api_create_connection")["body"])["api_key"]


def test_the_token_route_hands_out_the_seeded_access_token(run: Run, secrets: SecretRegistry) -> None:
    answer = run.answer("token", secrets)

    assert answer["statusCode"] == 200, answer["statusCode"]
    assert answer["headers"]["Cache-Control"] == "no-store"
    body = json.loads(answer["body"])
    assert body["connection_id"] == str(run.scene.oauth_connection_id)
    assert (body["credential_type"], body["token_type"]) == ("oauth2", "Bearer")
    assert body["access_token"] == run.scene.access_token
    assert body["expires_at"]


def test_the_proxy_answers_404_for_a_connection_the_tenant_does_not_have(run: Run, secrets: SecretRegistry) -> None:
    answer = run.answer("proxy", secrets)

    assert answer["statusCode"] == 404, answer
    assert json.loads(answer["body"])["error"]["code"] == "not_found"


def test_the_callback_answers_an_unknown_state_with_the_400_page(run: Run, secrets: SecretRegistry) -> None:
    page = run.answer("callback", secrets)

    assert page["statusCode"] == 400
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "Connection failed" in page["body"]


def test_the_connect_page_answers_an_unknown_link_with_the_404_page(run: Run, secrets: SecretRegistry) -> None:
    page = run.answer("connect page", secrets)

    assert page["statusCode"] == 404
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page["headers"]["Content-Security-Policy"]
    assert "This link is not valid" in page["body"]


def test_the_scheduled_scan_finds_nothing_due(run: Run, secrets: SecretRegistry) -> None:
    report = run.answer("scan", secrets)

    assert (report["claimed"], report["errors"], report["stopped_by_deadline"]) == (0, 0, False)


def test_the_refresh_worker_returns_only_the_unreadable_message(run: Run, secrets: SecretRegistry) -> None:
    assert run.answer("worker", secrets) == {"batchItemFailures": [{"itemIdentifier": "unreadable"}]}


def test_the_webhook_delivery_finds_an_empty_outbox(run: Run, secrets: SecretRegistry) -> None:
    report = run.answer("webhooks", secrets)

    assert (report["claimed"], report["errors"], report["unconfirmed_revoked"]) == (0, 0, 0)


def test_the_device_poller_finds_nothing_pending(run: Run, secrets: SecretRegistry) -> None:
    assert run.answer("device poller", secrets) == {"polled": 0, "completed": 0, "ended": 0, "errors": 0, "lapsed": 0}


def test_the_migrations_function_migrates_an_empty_database_and_answers_cloudformation(
    run: Run, secrets: SecretRegistry
) -> None:
    assert run.answer("migrations", secrets) is None

    (answer,) = run.cfn_answers
    files = len(load_migrations(SCHEMA_DIR))
    assert answer.document["Status"] == "SUCCESS", answer.document
    assert answer.document["Data"]["AppliedCount"] == str(files)
    assert int(answer.document["Data"]["SeededProviders"]) > 0
    assert run.migrated_files == files


def test_start_api_logs_no_secret(run: Run, secrets: SecretRegistry) -> None:
    secrets.add(*run.secrets)
    secrets.check(run.api_log, "the logs of sam local start-api")


def test_start_api_refuses_a_request_without_a_key_or_with_an_unknown_one(run: Run) -> None:
    assert run.api["no key"].status == 401
    assert run.api["unknown key"].status == 403


def test_start_api_routes_a_tenant_key_through_the_authorizer_to_its_connections(run: Run) -> None:
    listed = run.api["list"]

    assert listed.status == 200, listed.body
    ids = {item["id"] for item in json.loads(listed.body)["items"]}
    # The seeded openai connection and the one "api creates" stored before.
    assert str(run.scene.seeded_api_key_connection_id) in ids
    assert len(ids) == 2


def test_start_api_serves_the_token_route_and_the_callback(run: Run) -> None:
    token = run.api["token"]
    assert token.status == 200, token.body
    assert json.loads(token.body)["access_token"] == run.scene.access_token
    assert token.headers.get("Cache-Control") == "no-store"

    callback = run.api["callback"]
    assert callback.status == 400
    assert "Connection failed" in callback.body
