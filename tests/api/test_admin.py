"""``python -m connvault.admin``: the operator's tenant and API-key commands.

The lifecycle runs as a real subprocess against the test database. That works although moto's KMS lives in
this process only, because none of these commands seals anything: the test proves it, since a KMS call from
the child would go to real AWS with fake credentials and fail. The error paths run ``main`` in-process.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from connvault.admin import main
from connvault.db.uow import UnitOfWork
from connvault.errors import Unauthorized
from connvault.services.auth import authenticate
from connvault.services.tenants import create_api_key, create_tenant
from tests.support.factories import owner

REPO = Path(__file__).resolve().parents[2]


def admin(*args: str) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO / "layers" / "common"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, "-m", "connvault.admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def tenant_exists(db, tenant_id: uuid.UUID) -> bool:
    with owner(db) as connection:
        return bool(connection.run("SELECT 1 FROM tenants WHERE id = :t", t=tenant_id))


def test_tenant_and_key_lifecycle_through_the_command(db, secrets) -> None:
    created = admin("create-tenant", "Acme Corp")
    assert created.returncode == 0, created.stderr
    tenant_id = uuid.UUID(created.stdout.strip())
    assert tenant_exists(db, tenant_id)

    minted = admin("create-api-key", str(tenant_id))
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    secrets.add(key)
    assert minted.stdout == key + "\n"
    assert key not in minted.stderr
    key_id = key.split("_")[1]
    assert f"key id {key_id}" in minted.stderr
    assert authenticate(f"Bearer {key}") == tenant_id

    revoked = admin("revoke-api-key", str(tenant_id), key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {key_id}" in revoked.stdout
    with pytest.raises(Unauthorized):
        authenticate(f"Bearer {key}")

    deleted = admin("delete-tenant", str(tenant_id), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not tenant_exists(db, tenant_id)


def test_unknown_tenant_or_key_is_a_clear_error(db) -> None:
    nobody = uuid.uuid4()
    tenant_id = create_tenant("Acme").id

    assert run_main("create-api-key", str(nobody)) == (1, "", f"error: tenant {nobody} not found\n")
    assert run_main("revoke-api-key", str(tenant_id), "z" * 16) == (1, "", f"error: API key {'z' * 16} not found\n")
    assert run_main("delete-tenant", str(nobody), "--yes") == (1, "", f"error: tenant {nobody} not found\n")


def test_a_tenant_cannot_revoke_another_tenants_key(db, secrets) -> None:
    mine, theirs = create_tenant("Mine").id, create_tenant("Theirs").id
    key = create_api_key(UnitOfWork(theirs))
    secrets.add(key.plaintext.reveal())

    code, _, err = run_main("revoke-api-key", str(mine), key.record.key_id)

    assert (code, err) == (1, f"error: API key {key.record.key_id} not found\n")
    assert authenticate(f"Bearer {key.plaintext.reveal()}") == theirs


def test_delete_tenant_wants_yes(db) -> None:
    tenant_id = create_tenant("Acme").id

    code, out, err = run_main("delete-tenant", str(tenant_id))

    assert (code, out) == (1, "")
    assert "--yes" in err
    assert tenant_exists(db, tenant_id)


def test_invalid_name_is_refused(db) -> None:
    code, out, err = run_main("create-tenant", "   ")

    assert (code, out) == (1, "")
    assert err == "error: tenant name must be 1 to 200 characters\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["create-api-key", "not-a-uuid"],
        ["revoke-api-key", "5b0c8f1e-2d4a-4e6b-9c7d-0a1b2c3d4e5f"],  # no key id
        ["launch-missiles"],
    ],
)
def test_malformed_command_lines_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert "usage: python -m connvault.admin" in capsys.readouterr().err


def test_an_unreachable_database_is_named_without_its_url(db, reconfigure) -> None:
    reconfigure(database_url="postgresql+pg8000://operator:hunter2-password@127.0.0.1:9/connvault")

    code, out, err = run_main("create-tenant", "Acme")

    assert (code, out) == (1, "")
    assert err.startswith("error: database error (")
    assert "hunter2" not in err
    assert "127.0.0.1" not in err


@pytest.mark.parametrize("name", ["Acme\nInc", "Acme\x1b[31m", "Acme\x00", "Acme\u2028\x7f"])
def test_a_tenant_name_with_control_characters_is_refused(db, name: str) -> None:
    """Issue 23.9: a name is one line of text; it reaches operators' terminals and listings."""
    code, out, err = run_main("create-tenant", name)

    assert (code, out) == (1, "")
    assert err == "error: name must not contain control characters\n"


def test_deleting_a_tenant_revokes_its_grants_at_the_providers(api, provider) -> None:
    """Issue 23.9: delete-tenant removed the rows and left every grant live at the providers."""
    from connvault.services.tenants import delete_tenant
    from tests.api.conftest import connect_account

    connect_account(api, end_user_id="alice")
    connect_account(api, end_user_id="bob")
    assert len(provider.stats().live_refresh_tokens) == 2

    assert delete_tenant(UnitOfWork(api.tenant.tenant_id))

    stats = provider.stats()
    assert stats.live_refresh_tokens == frozenset()
    assert len(stats.revoked) == 2


def test_deleting_a_tenant_revokes_the_grants_it_parked_for_confirmation(api, provider, db) -> None:
    """Probe 2026-11-30 (F2): the cascade dropped a parked grant out of the sweep's reach, its refresh token live."""
    from connvault.services.tenants import delete_tenant
    from tests.api.conftest import connect_account
    from tests.api.test_confirmed_connect import park

    # Given a grant parked for confirmation beside a connection
    connect_account(api, end_user_id="alice")
    live_connection = provider.stats().live_refresh_tokens
    park(api)
    parked = provider.stats().live_refresh_tokens - live_connection
    assert len(parked) == 1

    # When the tenant is deleted
    assert delete_tenant(UnitOfWork(api.tenant.tenant_id))

    # Then neither grant is live at the provider, and nothing is left parked for the sweep
    stats = provider.stats()
    assert stats.live_refresh_tokens == frozenset()
    assert parked <= stats.revoked
    with owner(db) as sql:
        assert sql.run("SELECT count(*) FROM connect_confirmations")[0][0] == 0


def test_a_provider_that_is_down_does_not_keep_a_tenant_with_parked_grants_from_being_deleted(
    api, provider, db, caplog
) -> None:
    from connvault.services.tenants import delete_tenant
    from demo_provider import Fault
    from tests.api.conftest import connect_account
    from tests.api.test_confirmed_connect import park

    # Given a parked grant and a connection, and a provider failing the first revocation (the parked grant's)
    connect_account(api, end_user_id="alice")
    connection_grant = provider.stats().live_refresh_tokens
    park(api)
    provider.inject(Fault.server_error(), path="/revoke")

    # When the tenant is deleted
    assert delete_tenant(UnitOfWork(api.tenant.tenant_id))

    # Then it is gone, the connection's grant revoked after the failure, the parked one's failure said by ids
    assert not tenant_exists(db, api.tenant.tenant_id)
    assert connection_grant <= provider.stats().revoked
    dropped = [record for record in caplog.records if record.getMessage() == "unconfirmed grant dropped unrevoked"]
    assert [record.tenant_id for record in dropped] == [str(api.tenant.tenant_id)]


def test_every_sealed_table_holds_no_grant_or_is_walked_by_a_tenants_deletion() -> None:
    """A new table holding grants at a provider would be dropped by the tenant's cascade unrevoked: whoever adds
    one (``SEALED_COLUMNS`` must name every envelope column: ``tests/integration/test_rotation.py``) decides here
    which it is, and a walked one gets a test like the two above."""
    from connvault.db.envelope_columns import SEALED_COLUMNS

    revoked_before_the_cascade = {"connections", "connect_confirmations"}
    hold_no_grant = {
        "tenants": "the blind-index key: connvault's own",
        "integrations": "the tenant's app's client secret: the tenant's own, not an end user's grant",
        "oauth_sessions": "PKCE verifiers: the code they go with is spent at the callback, or never",
        "device_sessions": "device and user codes: no token exists until a poll stores it as a connection",
        "webhook_endpoints": "connvault's own signing secrets",
        "accounts": "provider ids, not credentials",
    }

    assert {column.table for column in SEALED_COLUMNS} == revoked_before_the_cascade | hold_no_grant.keys()


class _StoringWhileRevoking:
    """The production OAuth client, but the first revocation first lets the tenant store a grant (``store``), as
    a callback or a confirmation committing while the deletion walks the tenant's rows would."""

    def __init__(self, store) -> None:
        from connvault import wiring

        self._real = wiring.get_oauth_client()
        self._store = store
        self.stored = False

    def revoke(self, *args):
        if not self.stored:
            self.stored = True
            self._store()
        return self._real.revoke(*args)


@pytest.mark.parametrize("stored", ["a parked grant", "a connection"])
def test_a_grant_stored_while_a_tenants_deletion_walks_is_revoked_too_before_the_row_goes(
    api, provider, db, stored: str
) -> None:
    """After its walk, the deletion had dropped whatever the tenant stored meanwhile with the cascade, unrevoked."""
    from connvault.services.tenants import delete_tenant
    from tests.api.conftest import connect_account
    from tests.api.test_confirmed_connect import park

    # Given a connection, and a grant the tenant stores while the deletion revokes that connection's
    connect_account(api, end_user_id="alice")
    racing = _StoringWhileRevoking(
        (lambda: park(api)) if stored == "a parked grant" else (lambda: connect_account(api, end_user_id="bob"))
    )

    # When the tenant is deleted
    assert delete_tenant(UnitOfWork(api.tenant.tenant_id), oauth=racing)

    # Then the grant stored meanwhile was revoked as well, and the tenant is gone
    assert racing.stored
    stats = provider.stats()
    assert stats.live_refresh_tokens == frozenset()
    assert len(stats.revoked) == 2
    assert not tenant_exists(db, api.tenant.tenant_id)


def test_a_tenant_storing_grants_during_its_deletion_cannot_keep_it_from_finishing(api, provider, db) -> None:
    """Each round revokes what the tenant held when it began; after ``DELETE_ROUNDS`` the row goes whatever is
    left (an outside probe held the deletion open for as long as it kept adding connections)."""
    from connvault.services.tenants import DELETE_ROUNDS, delete_tenant
    from tests.api.conftest import connect_account

    class _AlwaysStoring:
        def __init__(self) -> None:
            from connvault import wiring

            self._real, self.rounds = wiring.get_oauth_client(), 0

        def revoke(self, *args):
            self.rounds += 1
            for more in range(2):  # faster than it is revoked
                connect_account(api, end_user_id=f"user-{self.rounds}-{more}")
            return self._real.revoke(*args)

    connect_account(api, end_user_id="alice")

    assert delete_tenant(UnitOfWork(api.tenant.tenant_id), oauth=_AlwaysStoring()) is True

    assert not tenant_exists(db, api.tenant.tenant_id)
    assert DELETE_ROUNDS == 3
    assert len(provider.stats().revoked) == 1 + 2 + 4  # each round, what the tenant held when it began
