"""The built bundle answers: every function of ``sam build``'s output, imported in a fresh Python 3.12 with only
its own directory and the built layer on ``sys.path``, handles a realistic event against the test PostgreSQL and
moto KMS (as a server). The stand-in for ``sam local invoke``; see conftest.py."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from connvault import api_keys
from connvault.db.uow import UnitOfWork
from connvault.migrations import SCHEMA_DIR, load_migrations
from connvault.redacted import Redacted
from connvault.services import connections, tenants
from demo_provider import DemoProvider
from tests.support.cloudformation import ResponseUrlServer, cfn_event
from tests.support.factories import owner
from tests.support.fresh_database import fresh_database
from tests.support.sample_events import at_connection, for_tenant, sample, with_authorization

if TYPE_CHECKING:
    from tests.artifact.conftest import BuiltFunctions, Invocation
    from tests.infrastructure.cfn import Template
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

SMOKE_TESTED = {
    "AuthorizerFunction",
    "ApiFunction",
    "TokenFetchFunction",
    "ProxyFunction",
    "OAuthCallbackFunction",
    "ConnectPageFunction",
    "MigrationsFunction",
    "ScheduledRefreshFunction",
    "RefreshWorkerFunction",
    "WebhookDeliveryFunction",
    "DevicePollerFunction",
}


@dataclass(frozen=True)
class Tenant:
    id: UUID
    api_key: str


@pytest.fixture
def tenant(db: TestDatabase, secrets: SecretRegistry) -> Tenant:
    created = tenants.create_tenant("Artifact tenant")
    key = tenants.create_api_key(UnitOfWork(created.id)).plaintext.reveal()
    secrets.add(key)
    return Tenant(created.id, key)


def answered(run: Invocation, secrets: SecretRegistry) -> list[Any]:
    """The handler's answers, once the process exited cleanly and printed no registered secret."""
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
        with_authorization(sample("authorizer"), f"Bearer {tenant.api_key}"),
        with_authorization(sample("authorizer"), f"Bearer {stranger}"),
    )

    assert answered(run, secrets) == [
        {"isAuthorized": True, "context": {"tenant_id": str(tenant.id)}},
        {"isAuthorized": False},
    ]


def test_the_built_api_seals_an_api_key_that_the_built_token_fetch_opens(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    # Given the sample request that stores an API key for a catalog provider
    create = for_tenant(sample("api_create_connection"), tenant.id)
    provider_key = json.loads(create["body"])["api_key"]

    # When the built api stores it (sealing it through KMS) and lists the tenant's connections
    created, listed = answered(
        built.invoke("ApiFunction", create, for_tenant(sample("api_list_connections"), tenant.id)), secrets
    )

    # Then the connection exists
    assert created["statusCode"] == 201, created
    connection_id = json.loads(created["body"])["id"]
    assert listed["statusCode"] == 200, listed
    assert [item["id"] for item in json.loads(listed["body"])["items"]] == [connection_id]

    # And another process, the built token_fetch, opens the envelope and hands the key back
    fetch = at_connection(for_tenant(sample("token_fetch"), tenant.id), connection_id)
    (token,) = answered(built.invoke("TokenFetchFunction", fetch), secrets)
    assert token["statusCode"] == 200, token["statusCode"]
    assert json.loads(token["body"])["api_key"] == provider_key


def test_the_built_proxy_calls_the_providers_api_with_the_connections_key(
    built: BuiltFunctions, tenant: Tenant, db: TestDatabase, secrets: SecretRegistry
) -> None:
    # Given an API-key connection to a provider whose API is the demo provider's, on 127.0.0.1
    key = f"sk-artifact-{uuid4().hex}"
    secrets.add(key)
    with DemoProvider() as provider:
        provider.add_api_key(key)
        with owner(db) as admin:
            admin.run(
                "INSERT INTO providers (slug, display_name, auth_type, api_base_url) VALUES"
                " ('artifact-api', 'Artifact API', 'api_key', :url) ON CONFLICT (slug) WHERE tenant_id IS NULL"
                " DO UPDATE SET api_base_url = EXCLUDED.api_base_url",
                url=f"{provider.base_url}/api",
            )
        created = connections.create_static_connection(
            UnitOfWork(tenant.id),
            connections.StaticCredentialsInput(provider="artifact-api", end_user_id="u", api_key=Redacted(key)),
        )
        event = at_connection(for_tenant(sample("proxy"), tenant.id), str(created.id))
        event["rawPath"] = event["requestContext"]["http"]["path"] = f"/connections/{created.id}/proxy/me"

        # When the built proxy handles the sample request for /me (loopback allowed, as in local development)
        (answer,) = answered(
            built.invoke("ProxyFunction", event, env={"CONNVAULT_ALLOW_INSECURE_LOOPBACK_URLS": "true"}), secrets
        )

        # Then the provider saw the connection's key, and its answer came back whole
        assert answer["statusCode"] == 200, answer
        assert json.loads(base64.b64decode(answer["body"])) == {"id": "demo-account", "name": "Demo account"}
        assert [call.credential for call in provider.stats().api_calls] == [key]


def test_the_built_oauth_callback_turns_an_unknown_state_into_a_400_page(
    built: BuiltFunctions, db: TestDatabase, secrets: SecretRegistry
) -> None:
    (page,) = answered(built.invoke("OAuthCallbackFunction", sample("oauth_callback")), secrets)

    assert page["statusCode"] == 400
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "Connection failed" in page["body"]


def test_the_built_connect_page_turns_an_unknown_link_into_a_404_page(
    built: BuiltFunctions, db: TestDatabase, secrets: SecretRegistry
) -> None:
    (page,) = answered(built.invoke("ConnectPageFunction", sample("connect_page")), secrets)

    assert page["statusCode"] == 404
    assert page["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page["headers"]["Content-Security-Policy"]
    assert "This link is not valid" in page["body"]


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
        files = len(load_migrations(SCHEMA_DIR))
        assert answer.document["Status"] == "SUCCESS", answer.document
        assert answer.document["Data"]["AppliedCount"] == str(files)
        assert int(answer.document["Data"]["SeededProviders"]) > 0
        assert fresh.query("SELECT count(*) FROM schema_migrations") == [[files]]


def test_the_built_scheduled_refresh_reports_an_empty_due_set(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    (report,) = answered(built.invoke("ScheduledRefreshFunction", sample("scheduled_refresh")), secrets)

    assert report["claimed"] == 0
    assert report["errors"] == 0
    assert report["stopped_by_deadline"] is False
    assert report["accounts_purged"] == 0


def test_the_built_webhook_delivery_reports_an_empty_outbox(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    (report,) = answered(built.invoke("WebhookDeliveryFunction", sample("webhook_delivery")), secrets)

    assert report["claimed"] == 0
    assert report["errors"] == 0
    assert report["unconfirmed_revoked"] == 0


def test_the_built_device_poller_returns_at_once_with_nothing_pending(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    (report,) = answered(built.invoke("DevicePollerFunction", sample("device_poller")), secrets)

    assert report == {"polled": 0, "completed": 0, "ended": 0, "errors": 0, "lapsed": 0}


def test_the_built_refresh_worker_consumes_a_message_and_returns_an_unreadable_one(
    built: BuiltFunctions, tenant: Tenant, secrets: SecretRegistry
) -> None:
    # Given the sample message, for a connection of a real tenant that is not due, and one that is garbage
    event = sample("refresh_worker")
    record = event["Records"][0]
    body = json.loads(record["body"]) | {"tenant_id": str(tenant.id)}
    event["Records"] = [{**record, "body": json.dumps(body)}, {**record, "messageId": "unreadable", "body": "{"}]

    # When the built worker takes the batch, then only the unreadable message goes back to the queue
    (result,) = answered(built.invoke("RefreshWorkerFunction", event), secrets)

    assert result == {"batchItemFailures": [{"itemIdentifier": "unreadable"}]}


def test_a_function_without_the_layer_fails_to_import(built: BuiltFunctions) -> None:
    # Given the token function's sample event, but only the function's own directory on sys.path
    # When it is invoked, then the import fails: nothing outside the bundle leaks into the child
    run = built.invoke("TokenFetchFunction", sample("token_fetch"), with_layer=False)

    assert run.returncode != 0
    assert "ModuleNotFoundError: No module named 'connvault'" in run.stderr
