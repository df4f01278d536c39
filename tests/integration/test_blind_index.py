"""Blind indexes on real PostgreSQL and moto KMS: the per-tenant key is made once, stored only sealed, agreed on by
concurrent first users, never made by a search or a rolled-back write, made without GenerateDataKey by a refresh
(token fetch's rights), useless in another tenant, and shredded with its tenant."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from connvault import wiring
from connvault.config import get_settings
from connvault.crypto.blind_index import KEY_BYTES, blind_index, key_context
from connvault.crypto.data_keys import DataKeys
from connvault.crypto.sealer import Sealer
from connvault.db.connections import PROVIDER_ACCOUNT_ID_FIELD
from connvault.db.uow import UnitOfWork
from connvault.errors import DecryptionFailed
from connvault.redacted import Redacted
from connvault.services import connections, leases, tenants
from tests.support.factories import as_tenant, make_connection, make_tenant, oauth_grant, owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry


def sealed_key(db: TestDatabase, tenant: uuid.UUID) -> bytes | None:
    with owner(db) as sql:
        return sql.run("SELECT blind_index_key FROM tenants WHERE id = :t", t=tenant)[0][0]


def stored_index(db: TestDatabase, connection_id: uuid.UUID) -> bytes | None:
    with owner(db) as sql:
        return sql.run("SELECT provider_account_id_bidx FROM connections WHERE id = :c", c=connection_id)[0][0]


def set_account_id(tenant: uuid.UUID, connection_id: uuid.UUID, value: str) -> None:
    connections.update_connection(UnitOfWork(tenant), connection_id, provider_account_id=Redacted(value))


def found(tenant: uuid.UUID, value: str) -> list[uuid.UUID]:
    page = connections.list_connections(UnitOfWork(tenant), connections.ConnectionFilter(provider_account_id=value))
    return [c.id for c in page.items]


def test_the_key_is_made_on_first_use_and_kept_only_sealed(db: TestDatabase, secrets: SecretRegistry) -> None:
    tenant = make_tenant()
    connection = make_connection(tenant, secrets)
    before = sealed_key(db, tenant)

    set_account_id(tenant, connection.id, "acct-1")

    sealed = sealed_key(db, tenant)
    assert before is None
    assert sealed is not None
    assert sealed.startswith(b"CV")  # an envelope, not the key
    key = wiring.get_sealer().open(sealed, key_context(tenant))
    assert len(key) == KEY_BYTES
    assert key not in sealed
    assert stored_index(db, connection.id) == blind_index(key, PROVIDER_ACCOUNT_ID_FIELD, "acct-1")


def test_an_id_finds_its_rows_in_its_tenant_only(db: TestDatabase, secrets: SecretRegistry) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    in_a = make_connection(a, secrets, end_user_id="u1")
    also_in_a = make_connection(a, secrets, end_user_id="u2")
    in_b = make_connection(b, secrets, end_user_id="u1")
    other_in_a = make_connection(a, secrets, end_user_id="u3")
    for tenant, connection_id in ((a, in_a.id), (a, also_in_a.id), (b, in_b.id)):
        set_account_id(tenant, connection_id, "shared-id")
    set_account_id(a, other_in_a.id, "other-id")

    assert sorted(found(a, "shared-id")) == sorted([in_a.id, also_in_a.id])
    assert found(b, "shared-id") == [in_b.id]
    assert found(a, "nobody") == []
    # The same id is another index in another tenant: A's index value, even if it leaked, finds nothing in B.
    assert stored_index(db, in_a.id) == stored_index(db, also_in_a.id) != stored_index(db, in_b.id)
    with as_tenant(db, b) as sql:
        matches = sql.run(
            "SELECT count(*) FROM connections WHERE provider_account_id_bidx = :i", i=stored_index(db, in_a.id)
        )[0][0]
    assert matches == 0


def test_a_search_never_makes_a_key(db: TestDatabase) -> None:
    tenant = make_tenant()

    assert found(tenant, "anything") == []
    assert sealed_key(db, tenant) is None


def test_a_key_made_by_a_write_that_rolled_back_is_gone_with_it(db: TestDatabase, secrets: SecretRegistry) -> None:
    tenant = make_tenant()
    connection = make_connection(tenant, secrets)
    with UnitOfWork(tenant) as uow:
        uow.connections.update_details(
            connection.id, alias=None, metadata=None, provider_account_id=Redacted("acct-1")
        )  # no commit

    after_rollback = sealed_key(db, tenant)
    set_account_id(tenant, connection.id, "acct-1")

    assert after_rollback is None
    key = wiring.get_sealer().open(sealed_key(db, tenant) or b"", key_context(tenant))
    assert stored_index(db, connection.id) == blind_index(key, PROVIDER_ACCOUNT_ID_FIELD, "acct-1")


def test_concurrent_first_uses_agree_on_one_key(db: TestDatabase, secrets: SecretRegistry) -> None:
    tenant = make_tenant()
    pair = [make_connection(tenant, secrets, end_user_id=f"u{n}") for n in range(2)]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def first_use(connection_id: uuid.UUID) -> None:
        start.wait()
        try:
            set_account_id(tenant, connection_id, "same-id")
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=first_use, args=(c.id,)) for c in pair]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert failures == []
    assert stored_index(db, pair[0].id) == stored_index(db, pair[1].id) is not None
    assert sorted(found(tenant, "same-id")) == sorted(c.id for c in pair)


def test_a_refresh_stores_and_indexes_the_account_id_it_saw(db: TestDatabase, secrets: SecretRegistry) -> None:
    # Given a connection stored before the tenant had a blind-index key
    tenant = make_tenant()
    connection = make_connection(tenant, secrets)
    now = datetime.now(UTC)
    with UnitOfWork(tenant) as uow:
        lease = uow.connections.acquire_lease(connection.id, now, now + timedelta(seconds=30))
        uow.commit()
    assert lease is not None

    # When it stores a refresh whose token response named the account
    grant = replace(oauth_grant(secrets), provider_account_id=Redacted("acct-from-refresh"))
    stored = leases.store(UnitOfWork(tenant), lease, grant, now=now)

    # Then the tokens, the sealed id and the new key are stored, and the id finds the connection
    assert stored.provider_account_id is not None
    assert stored.provider_account_id.reveal() == "acct-from-refresh"
    assert sealed_key(db, tenant) is not None
    assert found(tenant, "acct-from-refresh") == [connection.id]
    assert connections.get_connection(UnitOfWork(tenant), connection.id).provider_account_id == Redacted(
        "acct-from-refresh"
    )


def test_deleting_the_tenant_shreds_its_blind_index_key(db: TestDatabase, secrets: SecretRegistry) -> None:
    tenant = make_tenant()
    connection = make_connection(tenant, secrets)
    set_account_id(tenant, connection.id, "acct-1")
    copy = sealed_key(db, tenant)
    assert copy is not None

    assert tenants.delete_tenant(UnitOfWork(tenant))

    # Neither this process (its cache was dropped) nor a new one can open a copy of the key kept elsewhere
    with pytest.raises(DecryptionFailed):
        wiring.get_blind_index_keys().open(wiring.get_sealer(), tenant, copy)
    fresh = Sealer(DataKeys.from_settings(get_settings(), wiring.get_kms_client(), wiring.tenant_key_salt))
    with pytest.raises(DecryptionFailed):
        fresh.open(copy, key_context(tenant))
