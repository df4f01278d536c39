"""Envelope encryption end to end: Sealer + DataKeys against moto KMS, with every KMS call counted through
botocore's event system, and tenant salts read from the real database (so crypto-shredding is real too)."""

from __future__ import annotations

import secrets as random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import Stubber

from connvault.credentials import OAuth2Credentials
from connvault.crypto.data_keys import DataKeys
from connvault.crypto.envelope import Envelope, SealContext
from connvault.crypto.sealer import Sealer
from connvault.db.sealed_credentials import OpenedCredentials, open_sealed_credentials, seal_credentials
from connvault.db.uow import UnitOfWork
from connvault.errors import DecryptionFailed, KeyServiceUnavailable
from connvault.redacted import Redacted
from connvault.services import leases, tenants
from connvault.wiring import tenant_key_salt
from tests.support.factories import make_connection, make_tenant, oauth_grant, owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

FIELD = "connections.credentials"


@dataclass
class KmsCalls:
    """Names of the KMS operations a client made, in order."""

    names: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)

    def take(self) -> list[str]:
        taken, self.names = self.names, []
        return taken


@dataclass
class Clock:
    """A monotonic clock that moves only when told."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms_calls() -> KmsCalls:
    return KmsCalls()


@pytest.fixture
def kms(database: TestDatabase, kms_calls: KmsCalls) -> Any:
    client = boto3.client("kms", region_name="us-east-1")
    client.meta.events.register("before-call.kms.*", kms_calls)
    return client


@pytest.fixture
def new_sealer(kms: Any, kms_key_id: str) -> Callable[..., Sealer]:
    """A Sealer with its own, empty data-key cache: what a freshly started process has."""

    def build(**options: Any) -> Sealer:
        return Sealer(DataKeys(kms, kms_key_id, tenant_key_salt, **options))

    return build


@pytest.fixture
def tenant(db: TestDatabase) -> uuid.UUID:
    return make_tenant()


@pytest.fixture
def plaintext(secrets: SecretRegistry) -> bytes:
    value = random.token_urlsafe(700).encode()[:1024]
    secrets.add(value)
    return value


def here(tenant: uuid.UUID, row: uuid.UUID | None = None, field: str = FIELD) -> SealContext:
    return SealContext(tenant, field, row or uuid.UUID(int=1))


def test_an_envelope_opens_to_what_was_sealed(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes
) -> None:
    sealer = new_sealer()

    blob = sealer.seal(plaintext, here(tenant))

    assert sealer.open(blob, here(tenant)) == plaintext
    assert new_sealer().open(blob, here(tenant)) == plaintext
    assert plaintext not in blob


def test_sealing_the_same_plaintext_twice_uses_a_fresh_nonce_each_time(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes
) -> None:
    sealer = new_sealer()

    first, second = (Envelope.from_bytes(sealer.seal(plaintext, here(tenant))) for _ in range(2))

    assert first.wrapped_key == second.wrapped_key
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_flipping_any_bit_of_any_byte_makes_the_envelope_fail_to_open(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, secrets: SecretRegistry, cache: str
) -> None:
    sealer = new_sealer()
    blob = sealer.seal(b"a short secret", here(tenant))
    secrets.add(b"a short secret")
    opened = []

    for index in range(len(blob)):
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        try:
            (sealer if cache == "warm" else new_sealer()).open(bytes(tampered), here(tenant))
        except DecryptionFailed:
            continue
        opened.append(index)

    assert opened == []


@pytest.mark.parametrize("moved_to", ["another row", "another tenant", "another field"])
@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_an_envelope_copied_anywhere_else_fails_to_open(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, moved_to: str, cache: str
) -> None:
    sealer = new_sealer()
    original = here(tenant, uuid.uuid4())
    blob = sealer.seal(plaintext, original)
    elsewhere = {
        "another row": SealContext(tenant, FIELD, uuid.uuid4()),
        "another tenant": SealContext(make_tenant("Other"), FIELD, original.row_id),
        "another field": SealContext(tenant, "integrations.client_secret", original.row_id),
    }[moved_to]
    opener = sealer if cache == "warm" else new_sealer()

    with pytest.raises(DecryptionFailed):
        opener.open(blob, elsewhere)


def test_with_a_warm_cache_sealing_and_opening_make_no_kms_call(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, kms_calls: KmsCalls
) -> None:
    sealer = new_sealer()
    first = sealer.seal(plaintext, here(tenant))
    warm_up = kms_calls.take()

    blobs = [sealer.seal(plaintext, here(tenant, uuid.UUID(int=i))) for i in range(50)]
    for i, blob in enumerate(blobs):
        sealer.open(blob, here(tenant, uuid.UUID(int=i)))
    sealer.open(first, here(tenant))

    assert warm_up == ["GenerateDataKey"]
    assert kms_calls.take() == []


def test_a_fresh_process_unwraps_a_data_key_once_and_then_serves_it_from_memory(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, kms_calls: KmsCalls
) -> None:
    writer = new_sealer()
    blobs = [writer.seal(plaintext, here(tenant)) for _ in range(5)]
    kms_calls.take()
    reader = new_sealer()

    for blob in blobs:
        reader.open(blob, here(tenant))

    assert kms_calls.take() == ["Decrypt"]


def test_after_its_max_age_a_new_data_key_is_generated_once_and_old_envelopes_still_open(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, kms_calls: KmsCalls
) -> None:
    clock = Clock()
    sealer = new_sealer(max_age_seconds=300, monotonic=clock)
    old = sealer.seal(plaintext, here(tenant))
    kms_calls.take()

    clock.now += 301
    new = [sealer.seal(plaintext, here(tenant)) for _ in range(10)]
    calls_for_new = kms_calls.take()

    assert calls_for_new == ["GenerateDataKey"]
    assert Envelope.from_bytes(new[0]).wrapped_key != Envelope.from_bytes(old).wrapped_key
    assert sealer.open(old, here(tenant)) == plaintext
    assert all(sealer.open(blob, here(tenant)) == plaintext for blob in new)


def test_a_data_key_retires_after_max_uses_seals(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, kms_calls: KmsCalls
) -> None:
    sealer = new_sealer(max_uses=3)

    wrapped = [Envelope.from_bytes(sealer.seal(plaintext, here(tenant))).wrapped_key for _ in range(7)]

    assert kms_calls.take() == ["GenerateDataKey"] * 3
    assert len(set(wrapped[:3])) == len(set(wrapped[3:6])) == 1
    assert len(set(wrapped)) == 3


def test_each_tenant_gets_its_own_data_key(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes
) -> None:
    sealer = new_sealer()
    other = make_tenant("Other")

    mine = Envelope.from_bytes(sealer.seal(plaintext, here(tenant)))
    theirs = Envelope.from_bytes(sealer.seal(plaintext, here(other)))

    assert mine.wrapped_key != theirs.wrapped_key


def throttled(kms_key_id: str, operation: str) -> Sealer:
    client = boto3.client("kms", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        operation, service_error_code="ThrottlingException", service_message="Rate exceeded", http_status_code=400
    )
    stubber.activate()
    return Sealer(DataKeys(client, kms_key_id, tenant_key_salt))


def test_kms_throttling_while_sealing_is_a_retryable_key_service_error_that_names_no_secret(
    kms_key_id: str, tenant: uuid.UUID, plaintext: bytes, secrets: SecretRegistry
) -> None:
    with pytest.raises(KeyServiceUnavailable) as error:
        throttled(kms_key_id, "generate_data_key").seal(plaintext, here(tenant))

    assert "ThrottlingException" in str(error.value)
    secrets.check(f"{error.value!s} {error.value!r}", "the error")
    assert error.value.__cause__ is None


def test_kms_throttling_while_opening_is_not_mistaken_for_a_broken_envelope(
    new_sealer: Callable[..., Sealer], kms_key_id: str, tenant: uuid.UUID, plaintext: bytes, secrets: SecretRegistry
) -> None:
    blob = new_sealer().seal(plaintext, here(tenant))

    with pytest.raises(KeyServiceUnavailable) as error:
        throttled(kms_key_id, "decrypt").open(blob, here(tenant))

    secrets.check(f"{error.value!s} {error.value!r}", "the error")


def test_once_its_tenant_is_deleted_no_new_process_can_open_its_envelopes(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes
) -> None:
    sealer = new_sealer()
    blob = sealer.seal(plaintext, here(tenant))

    assert tenants.delete_tenant(UnitOfWork(tenant, sealer=sealer))

    with pytest.raises(DecryptionFailed):
        new_sealer().open(blob, here(tenant))
    with pytest.raises(DecryptionFailed):
        sealer.open(blob, here(tenant))


def test_without_the_tenant_salt_kms_refuses_to_unwrap_even_with_the_wrapped_key_in_hand(
    kms: Any, kms_key_id: str, new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes
) -> None:
    """What a stolen dump plus KMS access gets after shredding: the salt can only be guessed, and guesses fail."""
    blob = new_sealer().seal(plaintext, here(tenant))
    guessing = Sealer(DataKeys(kms, kms_key_id, lambda _tenant: uuid.uuid4()))

    with pytest.raises(DecryptionFailed):
        guessing.open(blob, here(tenant))


def test_without_a_configured_key_envelopes_still_open_and_only_sealing_refuses(db, kms_key_id) -> None:
    from connvault.config import Settings
    from connvault.crypto.data_keys import DataKeys
    from connvault.crypto.envelope import SealContext
    from connvault.crypto.sealer import Sealer
    from connvault.wiring import get_kms_client, get_sealer, tenant_key_salt
    from tests.support.factories import make_tenant

    tenant = make_tenant()
    context = SealContext(tenant, "test.field", tenant)
    sealed = get_sealer().seal(b"payload", context)
    keyless = Sealer(DataKeys.from_settings(Settings(kms_key_id=None), get_kms_client(), tenant_key_salt))

    assert keyless.open(sealed, context) == b"payload"
    with pytest.raises(KeyServiceUnavailable):
        keyless.seal(b"payload", context)


# -- data keys retire on every seal path; the decrypt cache holds a working set (issue 23, item 7) -------------


def test_refreshed_tokens_are_sealed_under_counted_data_keys_that_retire(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, secrets: SecretRegistry, kms_calls: KmsCalls
) -> None:
    # Given a process whose data keys retire after 3 seals, and a connection it sealed
    sealer = new_sealer(max_uses=3)
    connection = make_connection(tenant, secrets, sealer=sealer)

    # When the connection is refreshed twenty times
    for _ in range(20):
        now = datetime.now(UTC)
        with UnitOfWork(tenant, sealer=sealer) as uow:
            lease = uow.connections.acquire_lease(connection.id, now, now + timedelta(seconds=30))
            assert lease is not None
            uow.commit()
        leases.store(UnitOfWork(tenant, sealer=sealer), lease, oauth_grant(secrets), now=now)

    # Then every seal counted: 21 seals under keys of 3 uses each are 7 data keys, not the first one forever
    assert kms_calls.take().count("GenerateDataKey") == 7


WORKING_SET = 1_100
"""More distinct data keys than the decrypt cache used to hold (1,024); bench/crypto_bench.py measures more."""


def test_a_warm_process_opens_a_realistic_working_set_of_data_keys_with_no_kms_call(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, kms_calls: KmsCalls
) -> None:
    # Given envelopes each under a data key of its own (as many writers, each with its own key, leave them)
    working_set = WORKING_SET
    writer = new_sealer(max_uses=1)
    blobs = [writer.seal(plaintext, here(tenant, uuid.UUID(int=i))) for i in range(working_set)]
    reader = new_sealer()
    for i, blob in enumerate(blobs):
        reader.open(blob, here(tenant, uuid.UUID(int=i)))
    kms_calls.take()

    # When a warm process reads them all again
    for i, blob in enumerate(blobs):
        reader.open(blob, here(tenant, uuid.UUID(int=i)))

    # Then KMS is not asked once
    assert kms_calls.take() == []


# -- deleting a tenant shreds in warm processes within a stated time (issue 23, item 8) -----------------------


def test_a_warm_process_can_no_longer_open_a_deleted_tenants_envelopes_after_the_data_key_max_age(
    new_sealer: Callable[..., Sealer], tenant: uuid.UUID, plaintext: bytes, db: TestDatabase
) -> None:
    # Given a warm process that opened the tenant's envelopes, and a second envelope it unwraps late
    clock = Clock()
    warm = new_sealer(max_age_seconds=300, monotonic=clock)
    first = warm.seal(plaintext, here(tenant))
    assert warm.open(first, here(tenant)) == plaintext
    clock.now += 299
    late = new_sealer().seal(plaintext, here(tenant, uuid.UUID(int=2)))
    assert warm.open(late, here(tenant, uuid.UUID(int=2))) == plaintext

    # When another process deletes the tenant (this one is never told)
    with owner(db) as sql:
        sql.run("DELETE FROM tenants WHERE id = :t", t=tenant)

    # Then within max_age of its salt being read, this process opens nothing of the tenant's any more
    clock.now += 2
    for blob, row in ((first, here(tenant)), (late, here(tenant, uuid.UUID(int=2)))):
        with pytest.raises(DecryptionFailed):
            warm.open(blob, row)


# -- token fetch's opened credentials (db/sealed_credentials.OpenedCredentials) --------------------------------


class CountingSealer(Sealer):
    """A sealer that counts the envelopes it opened."""

    opened = 0

    def open(self, blob: bytes, context: SealContext) -> bytes:
        self.opened += 1
        return super().open(blob, context)


@pytest.fixture
def counting_sealer(kms: Any, kms_key_id: str) -> Callable[[], CountingSealer]:
    return lambda: CountingSealer(DataKeys(kms, kms_key_id, tenant_key_salt))


def sealed_token(sealer: Sealer, tenant: uuid.UUID, connection: uuid.UUID, secrets: SecretRegistry) -> bytes:
    token = f"at-{random.token_urlsafe(16)}"
    secrets.add(token)
    return seal_credentials(sealer, tenant, connection, OAuth2Credentials(access_token=Redacted(token)))


def test_the_same_envelope_again_is_handed_what_was_opened(
    counting_sealer: Callable[[], CountingSealer], tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    sealer, connection = counting_sealer(), uuid.uuid4()
    blob = sealed_token(sealer, tenant, connection, secrets)
    opened = OpenedCredentials(max_entries=8, max_age_seconds=300)

    first = opened.open(sealer, tenant, connection, blob)
    assert opened.open(sealer, tenant, connection, blob) is first
    assert sealer.opened == 1


def test_a_new_envelope_of_the_connection_is_opened(
    counting_sealer: Callable[[], CountingSealer], tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    """Every write seals anew: a refresh, a rotation or an update is a new envelope, never the old credentials."""
    sealer, connection = counting_sealer(), uuid.uuid4()
    opened = OpenedCredentials(max_entries=8, max_age_seconds=300)
    old = opened.open(sealer, tenant, connection, sealed_token(sealer, tenant, connection, secrets))
    blob = sealed_token(sealer, tenant, connection, secrets)

    new = opened.open(sealer, tenant, connection, blob)

    assert new == open_sealed_credentials(sealer, tenant, connection, blob)
    assert new != old
    assert sealer.opened == 3


def test_an_envelope_that_fails_to_open_is_refused_though_its_connection_was_opened(
    counting_sealer: Callable[[], CountingSealer], tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    """The same envelope read for another tenant (its associated data differs), or changed by one byte, is opened
    again and refused; so is one handed in with another sealer (another key), which opens it itself."""
    sealer, connection = counting_sealer(), uuid.uuid4()
    blob = sealed_token(sealer, tenant, connection, secrets)
    opened = OpenedCredentials(max_entries=8, max_age_seconds=300)
    opened.open(sealer, tenant, connection, blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])

    with pytest.raises(DecryptionFailed):
        opened.open(sealer, make_tenant("Other"), connection, blob)
    with pytest.raises(DecryptionFailed):
        opened.open(sealer, tenant, connection, tampered)
    other = counting_sealer()
    opened.open(other, tenant, connection, blob)
    assert other.opened == 1


def test_opened_credentials_live_no_longer_than_a_data_key(
    counting_sealer: Callable[[], CountingSealer], tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    sealer, connection, clock = counting_sealer(), uuid.uuid4(), Clock()
    blob = sealed_token(sealer, tenant, connection, secrets)
    opened = OpenedCredentials(max_entries=8, max_age_seconds=300, clock=clock)
    opened.open(sealer, tenant, connection, blob)

    clock.now += 299
    opened.open(sealer, tenant, connection, blob)
    assert sealer.opened == 1
    clock.now += 1
    opened.open(sealer, tenant, connection, blob)
    assert sealer.opened == 2


def test_the_least_recently_opened_connection_is_forgotten_first(
    counting_sealer: Callable[[], CountingSealer], tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    sealer = counting_sealer()
    connections = [uuid.uuid4() for _ in range(3)]
    blobs = {connection: sealed_token(sealer, tenant, connection, secrets) for connection in connections}
    opened = OpenedCredentials(max_entries=2, max_age_seconds=300)
    for connection in connections:
        opened.open(sealer, tenant, connection, blobs[connection])

    opened.open(sealer, tenant, connections[2], blobs[connections[2]])
    assert sealer.opened == 3
    opened.open(sealer, tenant, connections[0], blobs[connections[0]])
    assert sealer.opened == 4
