"""The harness every test stands on: real PostgreSQL (migrated by the real runner), moto KMS, a clean
database per test, and a guard that fails any test whose logs, captured output or failure shows a secret it
registered (``tests/support/secrets.py``).

The directories below are levels first (what a test runs against: ``unit``, ``integration``, ``api``, ``artifact``…),
then features that need a harness of their own on one level (``webhooks``, ``scheduler``…); ``tests/README.md``
lists them and says where a new test goes."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from devserver.local_env import LOCAL_ENV
from tests.support.database import TestDatabase, remove_tenants, start_database, stop_database
from tests.support.secrets import SecretRegistry, activate, register_kms_data_keys

# Fixtures shared by tests/artifact and tests/sam_local: the built bundle, and moto as a server.
pytest_plugins = ["tests.support.sam_build", "tests.support.moto_server"]

# Settings the whole suite shares; set before any connvault module reads them.
os.environ.update(
    {
        **LOCAL_ENV,
        "POWERTOOLS_DEV": "false",
        "CONNVAULT_CALLBACK_URL": "http://127.0.0.1:3000/oauth/callback",
    }
)
# Before any boto3 session exists, so that every KMS client made by the suite reports its data keys.
register_kms_data_keys()
_REGISTRY = pytest.StashKey[SecretRegistry]()


@pytest.fixture(scope="session")
def aws() -> Iterator[None]:
    """One moto for the whole session: KMS keys made here live until the end."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def kms_key_id(aws: None) -> str:
    key = boto3.client("kms", region_name="us-east-1").create_key(Description="connvault test key")
    return key["KeyMetadata"]["Arn"]


@pytest.fixture(scope="session")
def database(kms_key_id: str) -> Iterator[TestDatabase]:
    """A migrated, seeded database; the environment points connvault at it and at the moto KMS key."""
    from connvault import wiring
    from connvault.migrations import migrate

    workdir = Path(tempfile.mkdtemp(prefix="connvault-pg-"))
    db = start_database(workdir)
    migrate(db.owner_target)
    os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
    os.environ["CONNVAULT_KMS_KEY_ID"] = kms_key_id
    wiring.reset()
    yield db
    wiring.reset()
    stop_database(workdir)


@pytest.fixture
def db(database: TestDatabase) -> TestDatabase:
    """The database, emptied of tenants (and so of everything they own) before the test."""
    remove_tenants(database)
    return database


@pytest.fixture(autouse=True)
def secrets(request: pytest.FixtureRequest) -> Iterator[SecretRegistry]:
    """Register every secret a test makes; the test fails if any of them reached a log record, its captured
    output or its failure (``pytest_runtest_makereport`` below). KMS data keys register themselves."""
    # Powertools' Logger, when first built, adds a filter to every handler then on the root logger that drops
    # the service's own records. Built here, before the recorder is attached, it cannot blind the recorder.
    import connvault.observability  # noqa: F401

    registry = SecretRegistry()
    request.node.stash[_REGISTRY] = registry
    handler = registry.log_handler()
    watched = [logging.getLogger(), logging.getLogger("connvault")]
    for logger in watched:
        logger.addHandler(handler)
    activate(registry)
    try:
        yield registry
    finally:
        activate(None)
        for logger in watched:
            logger.removeHandler(handler)
    registry.assert_no_leaks()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Scan what each phase captured (stdout, stderr, logs) and any failure for the test's secrets."""
    report = yield
    registry = item.stash.get(_REGISTRY, None)
    if registry is not None:
        registry.scan_report(report, call)
    return report
