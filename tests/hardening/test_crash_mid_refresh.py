"""A worker killed between the provider's answer and the commit: the next run finds the stale lease and leaves the
connection consistent. With a rotating provider the stored refresh token died with the crash, so the connection
ends ``needs_reauth`` with ``refresh_interrupted``; with a provider that does not rotate it is simply refreshed.
Never ``active`` with a dead refresh token.

The crash is a real one: a child process (``crash_child.py``) holding the lease exits with ``os._exit``. It reaches
the same database, and the session's moto KMS through a moto server on a loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from moto.server import ThreadedMotoServer

from connvault.services.refresh import STALE_LEASE_REASON
from demo_provider import DemoProvider
from tests.api.conftest import Api, connect_account
from tests.hardening.crash_child import CRASH_EXIT
from tests.hardening.support import fetch, make_due, row, run_scheduler, stored_refresh_token
from tests.support.factories import owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3
"""Short, yet longer than the child's provider deadline plus its statement timeout, as settings require."""


@pytest.fixture(scope="module")
def kms_endpoint(aws: None) -> Iterator[str]:
    """The session's moto KMS (same keys: the server shares the in-process backend) on a loopback port."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def crash_mid_refresh(api: Api, connection_id: str, kms_endpoint: str) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_KMS": kms_endpoint,
        "CONNVAULT_REFRESH_LEASE_SECONDS": str(LEASE_SECONDS),
        "CONNVAULT_HTTP_TIMEOUT_SECONDS": "0.5",
        "CONNVAULT_DB_STATEMENT_TIMEOUT_MS": "2000",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
    }
    child = subprocess.run(
        [sys.executable, "-m", "tests.hardening.crash_child", str(api.tenant.tenant_id), connection_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == CRASH_EXIT, child.stderr[-2000:]


def wait_for_lease_to_run_out(db: TestDatabase, connection_id: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with owner(db) as sql:
            held = sql.run(
                "SELECT refresh_lease_until > now() FROM connections WHERE id = CAST(:i AS uuid)", i=connection_id
            )[0][0]
        if not held:
            return
        time.sleep(0.1)
    raise AssertionError("the crashed worker's lease never ran out")


def next_run(path: str, api: Api, db: TestDatabase, connection_id: str) -> None:
    if path == "token_fetch":
        fetch(api, connection_id)
    else:
        make_due(db, connection_id)
        run_scheduler()


@pytest.mark.parametrize("path", ["token_fetch", "scheduler"])
def test_a_crash_after_a_rotating_provider_answered_ends_needs_reauth_refresh_interrupted(
    api: Api, provider: DemoProvider, db: TestDatabase, kms_endpoint: str, path: str
) -> None:
    # Given a worker that died holding the lease, after the provider rotated the refresh token
    connection_id = connect_account(api)
    before = row(db, connection_id)
    old_refresh_token = stored_refresh_token(db, connection_id)
    crash_mid_refresh(api, connection_id, kms_endpoint)
    crashed = row(db, connection_id)
    assert crashed.leased and crashed.status == "active"
    assert crashed.credentials == before.credentials
    assert old_refresh_token not in provider.stats().live_refresh_tokens

    # When the next refresh comes after the lease ran out
    wait_for_lease_to_run_out(db, connection_id)
    next_run(path, api, db, connection_id)

    # Then the connection says what happened instead of looking healthy with a dead refresh token
    after = row(db, connection_id)
    assert (after.status, after.last_error_code) == ("needs_reauth", STALE_LEASE_REASON)
    assert not after.leased
    answer = fetch(api, connection_id, force=False)
    assert answer.status == 409, answer.body
    assert answer.json()["error"]["code"] == "needs_reauth"


@pytest.mark.parametrize("path", ["token_fetch", "scheduler"])
def test_a_crash_with_a_provider_that_does_not_rotate_is_healed_by_the_next_refresh(
    api: Api, provider: DemoProvider, db: TestDatabase, kms_endpoint: str, path: str
) -> None:
    provider.configure(rotate_refresh_tokens=False)
    connection_id = connect_account(api)
    crash_mid_refresh(api, connection_id, kms_endpoint)
    assert row(db, connection_id).leased

    wait_for_lease_to_run_out(db, connection_id)
    next_run(path, api, db, connection_id)

    after = row(db, connection_id)
    assert (after.status, after.last_error_code, after.leased) == ("active", None, False)
    answer = fetch(api, connection_id, force=False)
    assert answer.status == 200, answer.body
    assert provider.access_token_is_active(answer.json()["access_token"])
    assert provider.stats().refresh_token_reuse == 0
