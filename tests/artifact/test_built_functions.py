"""The built bundle answers: every function of ``sam build``'s output, imported in a fresh Python 3.12 with only
its own directory and the built layer on ``sys.path``, handles a realistic event against the test PostgreSQL and
moto KMS (as a server). The stand-in for ``sam local invoke``; see conftest.py."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from connvault import api_keys
from connvault.migrations import SCHEMA_DIR, load_migrations
from connvault.services import tenants

from devserver.events import authorizer_event, http_event
from tests.support.cloudformation import ResponseUrlServer, cfn_event
from tests.support.fresh_database import fresh_database

if TYPE_CHECKING:
    from tests.artifact.conftest import BuiltFunctions, Invocation
    from tests.infrastructure.cfn import Template
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

SMOKE_TESTED = {
    "AuthorizerFunction",
    "ApiFunction",
    "TokenFetchFunction",
    "OAuthCallbackFunction",
    "MigrationsFunction",
    "ScheduledRefreshFunction",
    "RefreshWorkerFunction",
}


@dataclass(frozen=True)
class Tenant:
    id: UUID
    api_key: str


@pytest.fixture
def tenant(db: TestDatabase, secrets: SecretRegistry) -> Tenant:
    created = tenants.create_tenant("Artifact tenant")
    key = tenants.create_api_key(created.id).plaintext.reveal()
    secrets.add(key)
    return Tenant(created.id, key)


def answered(run: Invocation, secrets: SecretRegistry) -> list[Any]:
    """The handler's answers, once the process exited cleanly and logged no registered secret."""
    assert run.returncode == 0, run.stderr[-4000:]
    secrets.check(run.stdout + run.stderr, "the built function's output")
    return run.results


def test_every_function_in_the_built_template_is_smoke_tested_here(built_template: Template) -> None:
    assert set(built_template.functions) == SMOKE_TESTED


def test_the_built_authorizer_admits_a_tenant_key_and_refuses_an_unknown_one(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    stranger = api_keys.mint().plaintext.reveal()
    secrets.add(stranger)

    run = built.invoke(
        "AuthorizerFunction",
        authorizer_event(f"Bearer {tenant.api_key}"),
        authorizer_event(f"Bearer {stranger}"),
    )

    assert answered(run, secrets) == [
        {"isAuthorized": True, "context": {"tenant_id": str(tenant.id)}},
        {"isAuthorized": False},
    ]


def test_the_built_api_seals_an_api_key_that_the_built_token_fetch_opens(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    # Given an API key for a catalog provider
    provider_key = f"sk-artifact-{uuid.uuid4().hex}"
    secrets.add(provider_key)
    body = {"provider": "openai", "end_user_id": "artifact-user", "api_key": provider_key}

    # When the built api lists providers and stores the connection (sealing it through KMS)
    providers, created = answered(
        built.invoke(
            "ApiFunction",
            http_event("GET", "/providers", tenant_id=str(tenant.id)),
            http_event("POST", "/connections", body=body, tenant_id=str(tenant.id)),
        ),
        secrets,
    )

    # Then the catalog is there and the connection was created
    assert providers["statusCode"] == 200, providers
    assert {"github", "openai"} <= {item["slug"] for item in json.loads(providers["body"])["items"]}
    assert created["statusCode"] == 201, created
    connection_id = json.loads(created["body"])["id"]

    # And another process, the built token_fetch, opens the envelope and hands the key back
    (token,) = answered(
        built.invoke(
            "TokenFetchFunction",
            http_event("GET", f"/connections/{connection_id}/token", tenant_id=str(tenant.id)),
        ),
        secrets,
    )
    assert token["statusCode"] == 200, token["statusCode"]
    assert json.loads(token["body"])["api_key"] == provider_key


def test_the_built_oauth_callback_turns_an_unknown_state_into_a_400_page(
    built: BuiltFunctions, db: TestDatabase, secrets: SecretRegistry
) -> None:
    state, code = f"state-{uuid.uuid4().hex}", f"code-{uuid.uuid4().hex}"
    secrets.add(state, code)

    event = http_event("GET", "/oauth/callback", query={"state": state, "code": code})

    (page,) = answered(built.invoke("OAuthCallbackFunction", event), secrets)

    assert page["statusCode"] == 400
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "Connection failed" in page["body"]


def test_the_built_migrations_function_migrates_an_empty_database_and_answers_success(
    built: BuiltFunctions, database: TestDatabase, secrets: SecretRegistry
) -> None:
    # Given an empty database and CloudFormation waiting at a local ResponseURL
    with fresh_database(database, "connvault_artifact") as fresh, ResponseUrlServer() as cfn:
        event = cfn_event("create", cfn)

        # When the built function handles the Create
        run = built.invoke("MigrationsFunction", event, env={"CONNVAULT_DATABASE_URL": fresh.url})

        # Then it answered SUCCESS, applying every schema file and seeding the catalog the layer carries
        secrets.add(*cfn.signatures)
        assert answered(run, secrets) == [None]
        (answer,) = cfn.wait_for(1)
        assert answer.document["Status"] == "SUCCESS", answer.document
        assert answer.document["Data"]["AppliedCount"] == str(len(load_migrations(SCHEMA_DIR)))
        assert int(answer.document["Data"]["SeededProviders"]) > 0
        assert fresh.query("SELECT count(*) FROM schema_migrations") == [[len(load_migrations(SCHEMA_DIR))]]


def test_the_built_scheduled_refresh_reports_an_empty_due_set(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": now,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/connvault-dev-ScheduledRefreshFunctionScan"],
        "detail": {},
    }

    (report,) = answered(built.invoke("ScheduledRefreshFunction", event), secrets)

    assert report["claimed"] == 0
    assert report["errors"] == 0
    assert report["stopped_by_deadline"] is False


def test_the_built_refresh_worker_consumes_a_message_for_a_connection_that_is_not_due(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    from connvault.services.fanout import DueMessage

    message = DueMessage(connection_id=uuid.uuid4(), tenant_id=tenant.id)
    record = {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEB-artifact-receipt-handle",
        "body": message.to_body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1736849700000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:connvault-dev-RefreshQueue",
        "awsRegion": "us-east-1",
    }

    (result,) = answered(built.invoke("RefreshWorkerFunction", {"Records": [record]}), secrets)

    assert result == {"batchItemFailures": []}


def test_a_function_without_the_layer_fails_to_import(built: BuiltFunctions, tenant: Tenant) -> None:
    # Given the token function's event, but only the function's own directory on sys.path
    event = http_event("GET", f"/connections/{uuid.uuid4()}/token", tenant_id=str(tenant.id))

    # When it is invoked, then the import fails: nothing outside the bundle leaks into the child
    run = built.invoke("TokenFetchFunction", event, with_layer=False)

    assert run.returncode != 0
    assert "ModuleNotFoundError: No module named 'connvault'" in run.stderr
