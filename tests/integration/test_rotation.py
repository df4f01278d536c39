"""Key rotation end to end: envelopes sealed under key A, re-wrapped under key B, readable with A disabled."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from sqlalchemy import text

from connvault import wiring
from connvault.crypto.data_keys import DataKeys
from connvault.crypto.envelope import Envelope
from connvault.crypto.sealer import Sealer
from connvault.db.envelope_columns import SEALED_COLUMNS
from connvault.db.tenants import list_tenant_ids
from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput
from connvault.services import leases, rotation
from connvault.services.rotation import rewrap_all
from connvault.wiring import tenant_key_salt
from tests.support.factories import (
    make_connection,
    make_integration,
    make_oauth_session,
    make_tenant,
    oauth_grant,
    owner,
)

if TYPE_CHECKING:
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

ENVELOPES = {
    "connections": "credentials",
    "integrations": "client_secret",
    "oauth_sessions": "code_verifier",
}


@dataclass
class Keys:
    a: str
    b: str
    kms: Any
    reencrypts: list[str]

    def sealer(self, key: str, **options: Any) -> Sealer:
        """A sealer with an empty cache, as in a freshly started process configured with ``key``."""
        return Sealer(DataKeys(self.kms, key, tenant_key_salt, **options))


@pytest.fixture
def keys(database: TestDatabase) -> Keys:
    kms = boto3.client("kms", region_name="us-east-1")
    reencrypts: list[str] = []
    kms.meta.events.register("before-call.kms.ReEncrypt", lambda model, **_: reencrypts.append(model.name))
    a, b = (kms.create_key(Description=f"rotation {name}")["KeyMetadata"]["Arn"] for name in "ab")
    return Keys(a, b, kms, reencrypts)


def all_envelopes(db: TestDatabase) -> dict[tuple[str, uuid.UUID], bytes]:
    with owner(db) as sql:
        return {
            (table, row_id): blob
            for table, column in ENVELOPES.items()
            for row_id, blob in sql.run(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")
        }


@dataclass
class Sealed:
    tenants: list[uuid.UUID]
    connections: dict[uuid.UUID, Any]
    integrations: dict[uuid.UUID, Any]
    sessions: dict[uuid.UUID, Any]


@pytest.fixture
def sealed_under_a(db: TestDatabase, keys: Keys, secrets: SecretRegistry) -> Sealed:
    """Two tenants, each with connections, an integration and a pending connect, all sealed under key A by
    a writer whose data keys retire every 2 seals, so each tenant has several data keys."""
    writer = keys.sealer(keys.a, max_uses=2)
    sealed = Sealed([], {}, {}, {})
    for name in ("A", "B"):
        tenant = make_tenant(name)
        sealed.tenants.append(tenant)
        for i in range(3):
            connection = make_connection(
                tenant, secrets, end_user_id=f"user-{i}", grant=oauth_grant(secrets), sealer=writer
            )
            sealed.connections[connection.id] = connection
        integration = make_integration(tenant, secrets, sealer=writer)
        sealed.integrations[integration.id] = integration
        pending, state_sha256 = make_oauth_session(tenant, secrets, sealer=writer)
        sealed.sessions[pending.id] = (pending, state_sha256)
    return sealed


def test_rotation_rewraps_every_envelope_under_the_new_key_and_leaves_payloads_untouched(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed
) -> None:
    before = all_envelopes(db)
    old_data_keys = {Envelope.from_bytes(blob).wrapped_key for blob in before.values()}

    report = rewrap_all(
        keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms, batch_size=2
    )
    after = all_envelopes(db)

    assert report.tenants == 2
    assert report.envelopes_rewrapped == len(before) == 10
    assert report.envelopes_already_current == report.envelopes_unreadable == 0
    assert report.distinct_data_keys == len(old_data_keys) > 2
    assert report.reencrypt_calls == len(keys.reencrypts) == len(old_data_keys)
    assert after.keys() == before.keys()
    for place, blob in after.items():
        old, new = Envelope.from_bytes(before[place]), Envelope.from_bytes(blob)
        assert new.key_id == keys.b, place
        assert (new.nonce, new.ciphertext) == (old.nonce, old.ciphertext), place
        assert new.wrapped_key != old.wrapped_key, place


def test_after_rotation_every_secret_opens_with_the_old_key_disabled(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed
) -> None:
    rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms)

    keys.kms.disable_key(KeyId=keys.a.rsplit("/", 1)[1])  # moto wants the bare key id here
    reader = keys.sealer(keys.b)
    for tenant in sealed_under_a.tenants:
        with UnitOfWork(tenant, sealer=reader) as uow:
            for connection in uow.connections.list_by_tenant().items:
                opened = uow.connections.get(connection.id)
                assert opened.credentials == sealed_under_a.connections[connection.id].credentials
            for integration in uow.integrations.list_all():
                assert integration.client_secret == sealed_under_a.integrations[integration.id].client_secret
    for pending, state_sha256 in sealed_under_a.sessions.values():
        with UnitOfWork(pending.tenant_id, sealer=reader) as uow:
            assert uow.oauth_sessions.consume(state_sha256) == pending


def test_a_second_rotation_run_finds_nothing_to_do_and_calls_kms_for_nothing(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed
) -> None:
    rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms)
    keys.reencrypts.clear()
    before = all_envelopes(db)

    again = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms)

    assert (again.envelopes_rewrapped, again.envelopes_already_current, again.reencrypt_calls) == (0, 10, 0)
    assert keys.reencrypts == []
    assert all_envelopes(db) == before


def test_envelopes_sealed_after_the_switch_are_already_under_the_new_key(
    db: TestDatabase, keys: Keys, secrets: SecretRegistry, sealed_under_a: Sealed
) -> None:
    make_connection(sealed_under_a.tenants[0], secrets, end_user_id="late", sealer=keys.sealer(keys.b))

    report = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms)

    assert (report.envelopes_rewrapped, report.envelopes_already_current) == (10, 1)


def test_rotation_refuses_to_run_while_the_configured_sealing_key_is_still_the_old_one(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed
) -> None:
    before = all_envelopes(db)

    with pytest.raises(InvalidInput) as error:
        rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.a), kms=keys.kms)

    assert error.value.field == "kms_key_id"
    assert all_envelopes(db) == before


@pytest.mark.parametrize(
    "make_key",
    [
        lambda keys: "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        lambda keys: keys.kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"],
    ],
    ids=["unknown key", "signing key"],
)
def test_rotation_to_a_key_that_cannot_wrap_data_keys_is_refused_before_touching_a_row(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed, make_key: Callable[[Keys], str]
) -> None:
    new_key = make_key(keys)
    before = all_envelopes(db)

    with pytest.raises(InvalidInput) as error:
        rewrap_all(new_key, sealed_under_a.tenants, sealer=keys.sealer(new_key), kms=keys.kms)

    assert error.value.field == "new_kms_key_id"
    assert all_envelopes(db) == before


def test_an_unreadable_envelope_is_counted_and_skipped_and_the_rest_rotate(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed
) -> None:
    broken = next(iter(sealed_under_a.connections))
    with owner(db) as sql:
        sql.run("UPDATE connections SET credentials = :junk WHERE id = :id", junk=b"not an envelope", id=broken)

    report = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=keys.sealer(keys.b), kms=keys.kms)

    assert (report.envelopes_rewrapped, report.envelopes_unreadable) == (9, 1)


@pytest.fixture
def configured_for_b(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The deployment's environment after step 2: CONNVAULT_KMS_KEY_ID names the new key."""
    monkeypatch.setenv("CONNVAULT_KMS_KEY_ID", keys.b)
    wiring.reset()
    yield
    wiring.reset()


@pytest.mark.usefixtures("configured_for_b")
def test_the_rotation_command_lists_tenants_as_owner_and_reports_its_counts(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    code = rotation.main([keys.b, "--batch-size", "1"])
    output = capsys.readouterr()

    assert code == 0, output.err
    assert "tenants=2 rewrapped=10 already_current=0 unreadable=0" in output.out
    assert {Envelope.from_bytes(blob).key_id for blob in all_envelopes(db).values()} == {keys.b}


def test_rotation_knows_every_envelope_column_in_the_schema(db: TestDatabase) -> None:
    """A new sealed column that rotation does not walk would keep its data keys under the retired key."""
    with owner(db) as sql:
        binary = sql.run(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.data_type = 'bytea'"
            " AND c.column_name NOT LIKE '%sha256'"
            " AND c.column_name NOT LIKE '%\\_bidx'"  # blind indexes: HMACs, not envelopes; views store nothing
        )

    assert {(table, column) for table, column in binary} == {(sealed.table, sealed.column) for sealed in SEALED_COLUMNS}


# -- rotation and live refreshes (issue 13, item 9; issue 23, item 4) -----------------------------------------


def test_a_refresh_that_read_its_row_before_rotation_stores_under_the_new_key_and_rotation_ends_with_none_left(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed, secrets: SecretRegistry
) -> None:
    # Given a refresh that took its lease (and read its row) while everything was under key A
    tenant = sealed_under_a.tenants[0]
    connection_id = next(c.id for c in sealed_under_a.connections.values() if c.tenant_id == tenant)
    deployed = keys.sealer(keys.b)  # the deployment after step 2: it seals under B
    now = datetime.now(UTC)
    with UnitOfWork(tenant, sealer=deployed) as uow:
        lease = uow.connections.acquire_lease(connection_id, now, now + timedelta(seconds=30))
        uow.commit()
    assert lease is not None

    # When rotation runs while the provider answers, and the refresh stores its tokens afterwards
    report = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=deployed, kms=keys.kms)
    leases.store(UnitOfWork(tenant, sealer=deployed), lease, oauth_grant(secrets), now=datetime.now(UTC))

    # Then nothing is under key A, so A can be disabled; a second run finds nothing left to do
    assert report.left_under_old_keys == 0
    assert {Envelope.from_bytes(blob).key_id for blob in all_envelopes(db).values()} == {keys.b}
    again = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=deployed, kms=keys.kms)
    assert (again.envelopes_rewrapped, again.left_under_old_keys) == (0, 0)


class _StoreDuringReEncrypt:
    """A KMS client that, the first time rotation asks it to re-wrap, lets a refresh write the row meanwhile
    (with a short lock timeout: it must not wait for rotation)."""

    def __init__(self, kms: Any, write: Callable[[], None]) -> None:
        self._kms = kms
        self._write = write
        self.wrote = False

    def re_encrypt(self, **kwargs: Any) -> Any:
        if not self.wrote:
            self.wrote = True
            self._write()
        return self._kms.re_encrypt(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kms, name)


def test_rotation_holds_no_row_lock_while_kms_re_wraps_and_keeps_what_a_refresh_stored_meanwhile(
    db: TestDatabase, keys: Keys, sealed_under_a: Sealed, secrets: SecretRegistry
) -> None:
    # Given a refresh that stores new tokens while rotation is inside its first KMS call, for the row that call
    # is for (rotation walks tenants and rows by id)
    tenant = min(sealed_under_a.tenants)
    connection_id = min(c.id for c in sealed_under_a.connections.values() if c.tenant_id == tenant)
    deployed = keys.sealer(keys.b)
    stored: list[bytes] = []

    def refresh_meanwhile() -> None:
        now = datetime.now(UTC)
        with UnitOfWork(tenant, sealer=deployed) as uow:
            uow.session.execute(text("SET LOCAL lock_timeout = '500ms'"))
            lease = uow.connections.acquire_lease(connection_id, now, now + timedelta(seconds=30))
            assert lease is not None
            uow.commit()
        leases.store(UnitOfWork(tenant, sealer=deployed), lease, oauth_grant(secrets), now=now)
        with owner(db) as sql:
            stored.append(sql.run("SELECT credentials FROM connections WHERE id = :i", i=connection_id)[0][0])

    slow_kms = _StoreDuringReEncrypt(keys.kms, refresh_meanwhile)
    rotating = Sealer(DataKeys(slow_kms, keys.b, tenant_key_salt))

    # When rotation runs
    report = rewrap_all(keys.b, list_tenant_ids(db.owner_target), sealer=rotating, kms=keys.kms)

    # Then the refresh was not blocked, its tokens were kept, and nothing is left under key A
    assert slow_kms.wrote and stored
    assert all_envelopes(db)[("connections", connection_id)] == stored[0]
    assert report.left_under_old_keys == 0
    assert {Envelope.from_bytes(blob).key_id for blob in all_envelopes(db).values()} == {keys.b}
