"""The ``Custom::DatabaseMigrations`` handler speaking the real CloudFormation protocol: every request gets one
answer, PUT to a local server playing the pre-signed ResponseURL, against a real PostgreSQL per test."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from connvault import wiring
from connvault.custom_resource import DEADLINE_MARGIN_MS, MAX_REASON_LENGTH
from connvault.migrations import ADVISORY_LOCK_KEY, SCHEMA_DIR, load_migrations
from devserver.handlers import InvocationContext, load_handler
from tests.support.cloudformation import ResponseUrlServer, cfn_event
from tests.support.fresh_database import FreshDatabase, fresh_database

if TYPE_CHECKING:
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

PHYSICAL_ID = "connvault-dev-DatabaseMigrations"
SCHEMA_FILES = [[migration.name] for migration in load_migrations(SCHEMA_DIR)]


@pytest.fixture
def cfn(secrets: SecretRegistry) -> Iterator[ResponseUrlServer]:
    with ResponseUrlServer() as server:
        yield server
        # The ResponseURL's signature is a credential: none may have reached a log record.
        secrets.add(*server.signatures)


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Points the handler's settings at another database URL; the suite's is back after the test."""

    def use(url: str) -> None:
        monkeypatch.setenv("CONNVAULT_DATABASE_URL", url)
        wiring.reset()

    yield use
    monkeypatch.undo()
    wiring.reset()


@pytest.fixture
def fresh(database: TestDatabase, use_database: Callable[[str], None]) -> Iterator[FreshDatabase]:
    """An empty database that the handler's settings point at."""
    with fresh_database(database, "connvault_cfn") as fresh:
        use_database(fresh.url)
        yield fresh


def invoke(event: dict[str, object], context: InvocationContext | None = None) -> None:
    load_handler("migrations")(event, context or InvocationContext(remaining_ms=300_000))


def test_create_applies_the_schema_and_answers_success_as_cloudformation_expects(
    fresh: FreshDatabase, cfn: ResponseUrlServer
) -> None:
    # Given a stack Create against an empty database
    event = cfn_event("create", cfn)

    # When the handler runs
    invoke(event)

    # Then one answer arrived, PUT with the empty Content-Type the pre-signed URL is signed for
    (answer,) = cfn.wait_for(1)
    assert answer.content_type == ""
    assert answer.path.startswith(f"/cfn/{event['RequestId']}?")
    # And it echoes the request's ids, names a physical id, and reports what was applied
    document = answer.document
    assert document["Status"] == "SUCCESS", document
    assert document["PhysicalResourceId"] == PHYSICAL_ID
    assert {k: document[k] for k in ("StackId", "RequestId", "LogicalResourceId")} == {
        k: event[k] for k in ("StackId", "RequestId", "LogicalResourceId")
    }
    assert document["Data"]["AppliedCount"] == str(len(SCHEMA_FILES))
    assert int(document["Data"]["SeededProviders"]) > 0
    # And the database is migrated and seeded
    assert fresh.query("SELECT name FROM schema_migrations ORDER BY version") == SCHEMA_FILES
    assert fresh.query("SELECT count(*) > 0 FROM providers WHERE tenant_id IS NULL") == [[True]]


def test_an_update_with_a_new_schema_hash_succeeds_under_the_physical_id_of_the_create(
    fresh: FreshDatabase, cfn: ResponseUrlServer
) -> None:
    # Given a created resource
    invoke(cfn_event("create", cfn))
    (created,) = cfn.wait_for(1)

    # When CloudFormation sends the Update that a new layer version (SchemaHash) causes
    update = cfn_event("update", cfn, PhysicalResourceId=created.document["PhysicalResourceId"])
    assert update["ResourceProperties"]["SchemaHash"] != update["OldResourceProperties"]["SchemaHash"]
    invoke(update)

    # Then it succeeds with nothing left to apply, and the physical id did not change (no replacement)
    _, updated = cfn.wait_for(2)
    assert updated.document["Status"] == "SUCCESS", updated.document
    assert updated.document["PhysicalResourceId"] == created.document["PhysicalResourceId"] == PHYSICAL_ID
    assert updated.document["Data"]["AppliedCount"] == "0"


def test_the_rollback_of_a_release_that_added_a_migration_succeeds_and_leaves_the_schema_alone(
    fresh: FreshDatabase, cfn: ResponseUrlServer
) -> None:
    # Given a database that a newer release migrated further than this release knows
    invoke(cfn_event("create", cfn))
    (created,) = cfn.wait_for(1)
    fresh.query("CREATE TABLE later (id integer)")
    fresh.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ('9001', '9001_later.sql', 'x')")

    # When CloudFormation rolls the failed release back: an Update through this (the previous) release's function
    rollback = cfn_event("update", cfn, PhysicalResourceId=created.document["PhysicalResourceId"])
    invoke(rollback)

    # Then it succeeds without touching the schema, and says which versions it found newer than itself
    _, answer = cfn.wait_for(2)
    assert answer.document["Status"] == "SUCCESS", answer.document
    assert answer.document["Data"] == {"AppliedCount": "0", "SeededProviders": "0", "NewerInDatabase": "9001_later.sql"}
    assert fresh.query("SELECT name FROM schema_migrations ORDER BY version") == [*SCHEMA_FILES, ["9001_later.sql"]]
    assert fresh.query("SELECT to_regclass('later') IS NOT NULL") == [[True]]


def test_delete_answers_success_and_leaves_schema_and_data_alone(fresh: FreshDatabase, cfn: ResponseUrlServer) -> None:
    # Given a migrated database holding a tenant
    invoke(cfn_event("create", cfn))
    cfn.wait_for(1)
    fresh.query("INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'kept')")

    # When the stack is deleted
    invoke(cfn_event("delete", cfn))

    # Then the Delete succeeds under the same id, and the tenant and the migration history are still there
    _, deleted = cfn.wait_for(2)
    assert deleted.document["Status"] == "SUCCESS", deleted.document
    assert deleted.document["PhysicalResourceId"] == PHYSICAL_ID
    assert fresh.query("SELECT name FROM tenants") == [["kept"]]
    assert fresh.query("SELECT name FROM schema_migrations ORDER BY version") == SCHEMA_FILES


def test_delete_succeeds_without_even_reaching_the_database(
    use_database: Callable[[str], None], cfn: ResponseUrlServer
) -> None:
    # Given a database that cannot be reached (the rollback of a Create that never got to it)
    use_database("postgresql://connvault_owner@127.0.0.1:9/connvault")

    # When the Delete arrives, then it answers SUCCESS
    invoke(cfn_event("delete", cfn))

    assert cfn.wait_for(1)[0].document["Status"] == "SUCCESS"


def test_an_unreachable_database_answers_failed_with_a_short_reason_that_holds_no_secret(
    use_database: Callable[[str], None],
    cfn: ResponseUrlServer,
    secrets: SecretRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given settings whose database refuses connections, with a password in the URL
    password = f"pw-{uuid.uuid4().hex}"
    secrets.add(password)
    use_database(f"postgresql://connvault_owner:{password}@127.0.0.1:9/connvault")

    # When CloudFormation creates the resource
    invoke(cfn_event("create", cfn))

    # Then it hears FAILED with a short reason naming the error type and where to look, nothing from the driver
    (answer,) = cfn.wait_for(1)
    document = answer.document
    assert document["Status"] == "FAILED"
    assert document["PhysicalResourceId"] == PHYSICAL_ID
    assert len(document["Reason"]) <= MAX_REASON_LENGTH
    assert document["Reason"] == "migration_failed: could not connect to the database (InterfaceError)"
    assert "127.0.0.1" not in document["Reason"]
    # And neither the password nor the ResponseURL's signature is in the answer or on stdout (Powertools' logs)
    output = capsys.readouterr().out
    secrets.add(*cfn.signatures)
    secrets.check(json.dumps(document), "the FAILED answer")
    secrets.check(output, "stdout")


def test_a_failing_migration_answers_failed_naming_the_file(fresh: FreshDatabase, cfn: ResponseUrlServer) -> None:
    # Given a database where the first migration cannot run: a table of the same name is already there
    fresh.query("CREATE TABLE tenants (id integer)")

    # When CloudFormation creates the resource
    invoke(cfn_event("create", cfn))

    # Then it hears FAILED, and the reason names the file and the server's error (schema text, no values)
    (answer,) = cfn.wait_for(1)
    assert answer.document["Status"] == "FAILED"
    reason = answer.document["Reason"]
    assert reason.startswith("migration_failed: 0001_init.sql failed: 42P07 ")
    assert len(reason) <= MAX_REASON_LENGTH
    # And the file was rolled back as a whole
    assert fresh.query("SELECT to_regclass('schema_migrations') IS NOT NULL") == [[True]]
    assert fresh.query("SELECT count(*) FROM schema_migrations") == [[0]]


def test_the_watchdog_answers_failed_before_the_deadline_when_the_migrations_hang(
    fresh: FreshDatabase, cfn: ResponseUrlServer
) -> None:
    # Given another runner holding the migration lock, and a Lambda with 1.5 s to spare beyond the margin
    holder = fresh.target.connect()
    holder.run("SELECT pg_advisory_lock(:key)", key=ADVISORY_LOCK_KEY)
    context = InvocationContext(remaining_ms=DEADLINE_MARGIN_MS + 1500)
    event = cfn_event("create", cfn)
    worker = threading.Thread(target=invoke, args=(event, context))

    try:
        # When the handler blocks on that lock
        worker.start()

        # Then FAILED arrives on its own while the migrations still wait, well before Lambda's deadline
        (answer,) = cfn.wait_for(1, timeout=10)
        assert worker.is_alive()
        assert answer.document["Status"] == "FAILED"
        assert answer.document["Reason"].startswith(
            "timeout: Create did not finish 30 s before the function's deadline"
        )
        assert answer.document["PhysicalResourceId"] == PHYSICAL_ID
        assert answer.received_at < context.deadline - DEADLINE_MARGIN_MS / 1000 / 2
    finally:
        holder.run("SELECT pg_advisory_unlock(:key)", key=ADVISORY_LOCK_KEY)
        holder.close()
        worker.join(timeout=30)

    # And when the migrations finish after all, no second answer contradicts the first
    assert not worker.is_alive()
    assert len(cfn.answers) == 1


def test_an_unknown_request_type_answers_failed(fresh: FreshDatabase, cfn: ResponseUrlServer) -> None:
    invoke(cfn_event("create", cfn, RequestType="Replace"))

    (answer,) = cfn.wait_for(1)
    assert answer.document["Status"] == "FAILED"
    assert answer.document["Reason"] == "validation_error: RequestType must be Create, Update or Delete"
    assert fresh.query("SELECT to_regclass('schema_migrations') IS NULL") == [[True]]


def test_an_event_without_a_response_url_is_logged_and_left_unanswered(cfn: ResponseUrlServer) -> None:
    # An invocation that did not come from CloudFormation: nobody to answer, and nothing raised for Lambda to retry
    invoke({"RequestType": "Create", "LogicalResourceId": "DatabaseMigrations"})

    assert cfn.answers == []
