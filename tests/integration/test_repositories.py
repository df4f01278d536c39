"""Repositories through the UnitOfWork on real PostgreSQL (as the app role, RLS in force) and moto KMS.

Set-up goes through the factories; where a test needs to see what is really stored (sealed columns, lease
columns) it reads with raw SQL as the owner.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from connvault.db.connections import NewCredentials, SavedGrant
from connvault.db.fast_reads import get_fast_reads
from connvault.db.refresh_statements import get_refresh_statements
from connvault.db.uow import UnitOfWork
from connvault.errors import Conflict, InvalidInput, NotFound
from connvault.models import ConnectionStatus, OAuth2Credentials
from connvault.redacted import Redacted
from connvault.services import leases
from tests.support.factories import (
    APP_ROLE,
    global_provider_id,
    make_connection,
    make_custom_provider,
    make_integration,
    make_oauth_session,
    make_tenant,
    oauth_grant,
    owner,
)

if TYPE_CHECKING:
    from connvault.models import Connection
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry


@pytest.fixture
def tenant(db: TestDatabase) -> uuid.UUID:
    return make_tenant()


def access_token(grant: NewCredentials) -> str:
    assert isinstance(grant.credentials, OAuth2Credentials)
    return grant.credentials.access_token.reveal()


def stored(db: TestDatabase, sql: str, **params: object) -> list[list[object]]:
    with owner(db) as connection:
        return connection.run(sql, **params)


# -- providers -------------------------------------------------------------------------------------------


def test_a_provider_is_found_by_slug_and_an_unknown_slug_is_not_found(tenant: uuid.UUID) -> None:
    with UnitOfWork(tenant) as uow:
        github = uow.providers.get_by_slug("github")
        with pytest.raises(NotFound):
            uow.providers.get_by_slug("no-such-provider")

    assert (github.slug, github.is_custom) == ("github", False)
    assert github.token_url


def test_a_tenant_lists_the_global_catalog_and_its_own_custom_providers_only(
    db: TestDatabase, tenant: uuid.UUID
) -> None:
    other = make_tenant("Other")
    make_custom_provider(db, tenant, "mine")
    make_custom_provider(db, other, "theirs")
    globals_ = stored(db, "SELECT count(*) FROM providers WHERE tenant_id IS NULL")[0][0]

    with UnitOfWork(tenant) as uow:
        everything = [p.slug for p in uow.providers.list_all()]
        catalog_only = uow.providers.list_all(include_custom=False)
        with pytest.raises(NotFound):
            uow.providers.get_by_slug("theirs")

    assert "mine" in everything
    assert "theirs" not in everything
    assert len(everything) == globals_ + 1
    assert len(catalog_only) == globals_
    assert everything == sorted(everything)


def test_a_custom_provider_with_a_global_slug_does_not_shadow_the_global_entry(
    db: TestDatabase, tenant: uuid.UUID
) -> None:
    make_custom_provider(db, tenant, "github")

    with UnitOfWork(tenant) as uow:
        github = uow.providers.get_by_slug("github")

    assert github.id == global_provider_id(db, "github")


# -- connections: add, get, find ------------------------------------------------------------------------


def test_a_connection_is_stored_sealed_and_read_back_opened(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    grant = oauth_grant(secrets)

    added = make_connection(tenant, secrets, grant=grant)
    with UnitOfWork(tenant) as uow:
        read = uow.connections.get(added.id)
    raw, has_refresh_token = stored(
        db, "SELECT credentials, has_refresh_token FROM connections WHERE id = :id", id=added.id
    )[0]

    assert read.credentials == grant.credentials
    assert read.status is ConnectionStatus.ACTIVE
    assert has_refresh_token is True
    assert read.expires_at == grant.expires_at
    assert access_token(grant).encode() not in raw


def test_a_duplicate_connection_is_a_conflict_whose_message_holds_no_value(
    tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    make_connection(tenant, secrets, end_user_id="user-secretive", alias="work")

    with pytest.raises(Conflict) as error:
        make_connection(tenant, secrets, end_user_id="user-secretive", alias="work")

    assert "user-secretive" not in str(error.value)


def test_a_connection_is_found_by_provider_end_user_and_alias(tenant: uuid.UUID, secrets: SecretRegistry) -> None:
    added = make_connection(tenant, secrets, end_user_id="u1", alias="work")

    with UnitOfWork(tenant) as uow:
        found = uow.connections.find_by_unique(added.provider_id, "u1", "work")
        missing = uow.connections.find_by_unique(added.provider_id, "u1", "home")

    assert found is not None
    assert found.id == added.id
    assert missing is None


def test_another_tenants_connection_is_not_found(tenant: uuid.UUID, secrets: SecretRegistry) -> None:
    theirs = make_connection(make_tenant("Other"), secrets)

    with UnitOfWork(tenant) as uow, pytest.raises(NotFound):
        uow.connections.get(theirs.id)


# -- connections: listing -------------------------------------------------------------------------------


def test_listing_walks_every_connection_once_across_pages_in_creation_order(
    tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    made = [make_connection(tenant, secrets, end_user_id=f"user-{i}") for i in range(5)]
    seen, pages, cursor = [], 0, None

    while True:
        with UnitOfWork(tenant) as uow:
            page = uow.connections.list_by_tenant(limit=2, cursor=cursor)
        pages += 1
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert [c.id for c in seen] == [c.id for c in sorted(made, key=lambda c: (c.created_at, c.id))]
    assert pages == 3
    assert all(c.credentials is None for c in seen)


def test_listing_filters_by_end_user_provider_and_status(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    first = make_connection(tenant, secrets, end_user_id="alice")
    make_connection(tenant, secrets, end_user_id="alice", provider="google")
    make_connection(tenant, secrets, end_user_id="bob")
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET status = 'needs_reauth', last_error_code = 'invalid_grant' WHERE id = :i",
            i=first.id,
        )
    google = global_provider_id(db, "google")

    with UnitOfWork(tenant) as uow:
        alice = uow.connections.list_by_tenant(end_user_id="alice").items
        on_google = uow.connections.list_by_tenant(provider_id=google).items
        broken = uow.connections.list_by_tenant(status=ConnectionStatus.NEEDS_REAUTH).items
        alice_active = uow.connections.list_by_tenant(end_user_id="alice", status=ConnectionStatus.ACTIVE).items

    assert len(alice) == 2
    assert [c.provider_slug for c in on_google] == ["google"]
    assert [c.id for c in broken] == [first.id]
    assert [c.provider_slug for c in alice_active] == ["google"]


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        _encoded("garbage"),
        _encoded(f"2026-01-01T00:00:00|{uuid.UUID(int=7)}"),  # naive timestamp
        _encoded("2026-01-01T00:00:00+00:00|not-a-uuid"),
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        # issue 13.1: times a driver cannot convert, odd offsets, non-canonical spellings
        _encoded(f"0001-01-01T00:00:00+01:00|{uuid.UUID(int=7)}"),
        _encoded(f"9999-12-31T23:59:59-01:00|{uuid.UUID(int=7)}"),
        _encoded(f"2026-01-01T00:00:00+05:30|{uuid.UUID(int=7)}"),
        _encoded(f"1900-01-01T00:00:00+00:00|{uuid.UUID(int=7)}"),
        _encoded(f"2026-01-01T00:00:00+00:00|{{{uuid.UUID(int=7)}}}"),
        _encoded(f"2026-01-01T00:00:00+00:00|{uuid.UUID(int=7).hex}"),
        _encoded(f"2026-01-01T00:00:00+00:00|{uuid.UUID(int=7)}") + "==",
        _encoded(f"2026-01-01T00:00:00+00:00|{uuid.UUID(int=7)}|extra"),
        _encoded(f"2026-01-01 00:00:00+00:00|{uuid.UUID(int=7)}"),
    ],
)
def test_a_cursor_that_was_not_issued_by_the_list_is_invalid_input(tenant: uuid.UUID, cursor: str) -> None:
    with UnitOfWork(tenant) as uow, pytest.raises(InvalidInput) as error:
        uow.connections.list_by_tenant(cursor=cursor)

    assert error.value.field == "cursor"


# -- connections: writes --------------------------------------------------------------------------------


def test_details_are_updated_and_an_alias_clash_is_a_conflict(tenant: uuid.UUID, secrets: SecretRegistry) -> None:
    work = make_connection(tenant, secrets, alias="work")
    make_connection(tenant, secrets, alias="home")

    with UnitOfWork(tenant) as uow:
        updated = uow.connections.update_details(work.id, alias="office", metadata={"team": "ops"})
        uow.commit()
    with UnitOfWork(tenant) as uow, pytest.raises(Conflict):
        uow.connections.update_details(work.id, alias="home", metadata=None)
    with UnitOfWork(tenant) as uow, pytest.raises(NotFound):
        uow.connections.update_details(uuid.uuid4(), alias="x", metadata=None)

    assert (updated.alias, dict(updated.metadata)) == ("office", {"team": "ops"})
    assert updated.credentials == work.credentials


def test_a_deleted_connection_is_gone_and_deleting_again_reports_nothing(
    tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    added = make_connection(tenant, secrets)

    with UnitOfWork(tenant) as uow:
        first = uow.connections.delete(added.id)
        again = uow.connections.delete(added.id)
        uow.commit()
    with UnitOfWork(tenant) as uow, pytest.raises(NotFound):
        uow.connections.get(added.id)

    assert (first, again) == (True, False)


def test_reconnecting_replaces_the_tokens_of_the_same_connection(tenant: uuid.UUID, secrets: SecretRegistry) -> None:
    first_grant, second_grant = oauth_grant(secrets), oauth_grant(secrets, refresh=False)
    now = datetime.now(UTC)

    def save(grant: NewCredentials, metadata: dict[str, str]) -> SavedGrant:
        with UnitOfWork(tenant) as uow:
            provider = uow.providers.get_by_slug("github")
            saved = uow.connections.save_grant(
                tenant, provider.id, end_user_id="u1", alias="", grant=grant, granted_at=now, metadata=metadata
            )
            uow.commit()
        return saved

    first = save(first_grant, {"login": "octocat"})
    second = save(second_grant, {"org": "acme"})
    with UnitOfWork(tenant) as uow:
        connection = uow.connections.get(second.connection.id)
        count = len(uow.connections.list_by_tenant().items)

    assert second.connection.id == first.connection.id
    assert first.replaced is None
    assert second.replaced == first_grant.credentials  # what the caller revokes at the provider
    assert count == 1
    assert connection.credentials == second_grant.credentials
    assert dict(connection.metadata) == {"login": "octocat", "org": "acme"}


# -- connections: the refresh lease ---------------------------------------------------------------------


def lease_columns(db: TestDatabase, connection_id: uuid.UUID) -> list[object]:
    return stored(
        db, "SELECT refresh_lease_until, refresh_lease_owner FROM connections WHERE id = :id", id=connection_id
    )[0]


def test_a_live_lease_cannot_be_taken_twice_but_an_expired_one_can(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    added = make_connection(tenant, secrets)
    now = datetime.now(UTC)

    with UnitOfWork(tenant) as uow:
        lease = uow.connections.acquire_lease(added.id, now, now + timedelta(seconds=30))
        uow.commit()
    with UnitOfWork(tenant) as uow:
        second = uow.connections.acquire_lease(added.id, now + timedelta(seconds=5), now + timedelta(seconds=35))
    with UnitOfWork(tenant) as uow:
        after_expiry = uow.connections.acquire_lease(added.id, now + timedelta(seconds=31), now + timedelta(seconds=61))
        uow.commit()

    assert lease is not None
    assert lease.connection.id == added.id
    assert second is None
    assert after_expiry is not None
    assert after_expiry.owner != lease.owner
    assert lease_columns(db, added.id) == [after_expiry.until, after_expiry.owner]


def test_a_stored_refresh_replaces_the_credentials_and_ends_the_lease(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    added = make_connection(tenant, secrets)
    refreshed = oauth_grant(secrets)
    now = datetime.now(UTC)
    with UnitOfWork(tenant) as uow:
        lease = uow.connections.acquire_lease(added.id, now, now + timedelta(seconds=30))
        uow.commit()
    assert lease is not None

    connection = leases.store(UnitOfWork(tenant), lease, refreshed, now=now)
    raw = stored(db, "SELECT credentials FROM connections WHERE id = :id", id=added.id)[0][0]

    assert connection.credentials == refreshed.credentials
    assert connection.last_refresh_at == now
    assert lease_columns(db, added.id) == [None, None]
    assert access_token(refreshed).encode() not in raw


def test_a_refresh_failure_is_recorded_only_by_the_lease_owner(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    added = make_connection(tenant, secrets)
    now = datetime.now(UTC)
    with UnitOfWork(tenant) as uow:
        lease = uow.connections.acquire_lease(added.id, now, now + timedelta(seconds=30))
        uow.commit()
    assert lease is not None
    failure = {"status": ConnectionStatus.NEEDS_REAUTH, "error_code": "invalid_grant", "next_refresh_at": None}

    with UnitOfWork(tenant) as uow:
        by_stranger = uow.connections.record_refresh_failure(added.id, uuid.uuid4(), **failure)
        uow.commit()
    untouched = uow_get(tenant, added.id)
    with UnitOfWork(tenant) as uow:
        by_owner = uow.connections.record_refresh_failure(added.id, lease.owner, **failure)
        uow.commit()
    recorded = uow_get(tenant, added.id)

    assert by_stranger is False
    assert (untouched.status, untouched.refresh_failures) == (ConnectionStatus.ACTIVE, 0)
    assert by_owner is True
    assert (recorded.status, recorded.refresh_failures, recorded.last_error_code) == (
        ConnectionStatus.NEEDS_REAUTH,
        1,
        "invalid_grant",
    )
    assert lease_columns(db, added.id) == [None, None]


def uow_get(tenant: uuid.UUID, connection_id: uuid.UUID) -> Connection:
    with UnitOfWork(tenant) as uow:
        return uow.connections.get(connection_id)


def test_two_concurrent_claims_of_due_refreshes_take_disjoint_sets(secrets: SecretRegistry, db: TestDatabase) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=2)
    tenants = (make_tenant("A"), make_tenant("B"))
    for tenant in tenants:  # a connection is claimed only while it has an integration to refresh with (0089)
        make_integration(tenant, secrets)
    due = {
        make_connection(tenant, secrets, end_user_id=f"user-{i}", grant=oauth_grant(secrets, expires_at=soon)).id
        for tenant in tenants
        for i in range(3)
    }
    not_due = make_tenant("C")
    make_connection(not_due, secrets, grant=oauth_grant(secrets, expires_at=soon + timedelta(days=1)))
    make_connection(not_due, secrets, end_user_id="no-refresh", grant=oauth_grant(secrets, refresh=False))
    now = datetime.now(UTC)
    until = now + timedelta(seconds=60)

    statements = get_refresh_statements()
    claim = functools.partial(statements.claim, run_started=now, per_tenant=100, after_tenant=None, skip_providers=())
    first = db.owner_target.connect(role=APP_ROLE)
    try:
        # The first claim's row locks are still held (not committed) when the second claim runs.
        first.run("BEGIN")
        first_rows = first.run(
            "SELECT id FROM connvault_claim_due_refreshes(:n, 900, 2, gen_random_uuid(), :u, :n, 100, NULL, '{}')",
            n=now,
            u=until,
        )
        second_claims = claim(now, 900, 100, until)
        first.run("COMMIT")
    finally:
        first.close()
    third_claims = claim(now, 900, 100, until)

    first_claims = [type("Claimed", (), {"connection_id": row[0]}) for row in first_rows]
    first_ids = {claim.connection_id for claim in first_claims}
    second_ids = {claim.connection_id for claim in second_claims}
    assert len(first_ids) == 2
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == due
    assert third_claims == []


# -- integrations ---------------------------------------------------------------------------------------


def test_an_integration_keeps_its_client_secret_sealed_and_opens_it_on_read(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    saved = make_integration(tenant, secrets)
    assert saved.client_secret is not None
    plaintext = saved.client_secret.reveal()

    with UnitOfWork(tenant) as uow:
        found = uow.integrations.find(saved.provider.id)
        listed = uow.integrations.list_all()
    raw = stored(db, "SELECT client_secret FROM integrations WHERE id = :id", id=saved.id)[0][0]

    assert found is not None
    assert found.client_secret == Redacted(plaintext)
    assert [i.id for i in listed] == [saved.id]
    assert plaintext.encode() not in raw
    assert "***" in repr(found)


def test_saving_an_integration_again_replaces_it_and_can_keep_the_stored_secret(
    tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    saved = make_integration(tenant, secrets)

    with UnitOfWork(tenant) as uow:
        replaced = uow.integrations.save(
            tenant,
            saved.provider,
            client_id="client-2",
            client_secret=None,
            keep_client_secret=True,
            scopes=("repo",),
            allowed_return_urls=(),
        )
        uow.commit()

    assert replaced.id == saved.id
    assert (replaced.client_id, replaced.scopes) == ("client-2", ("repo",))
    assert replaced.client_secret == saved.client_secret


def test_a_deleted_integration_is_no_longer_found(tenant: uuid.UUID, secrets: SecretRegistry) -> None:
    saved = make_integration(tenant, secrets)

    with UnitOfWork(tenant) as uow:
        deleted = uow.integrations.delete(saved.provider.id)
        uow.commit()
    with UnitOfWork(tenant) as uow:
        found = uow.integrations.find(saved.provider.id)
        with pytest.raises(NotFound):
            uow.integrations.get(saved.provider)

    assert deleted is True
    assert found is None


# -- oauth sessions -------------------------------------------------------------------------------------


def test_a_pending_connect_is_found_by_state_hash_and_consumed_exactly_once(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    pending, state_sha256 = make_oauth_session(tenant, secrets)
    assert pending.code_verifier is not None
    raw = stored(db, "SELECT code_verifier FROM oauth_sessions WHERE id = :id", id=pending.id)[0][0]

    with UnitOfWork(None) as lookup:
        owner_tenant = lookup.oauth_sessions.tenant_of_state(state_sha256)
    with UnitOfWork(tenant) as uow:
        consumed = uow.oauth_sessions.consume(state_sha256)
        again = uow.oauth_sessions.consume(state_sha256)
        uow.commit()

    assert owner_tenant == tenant
    assert consumed == pending
    assert again is None
    assert pending.code_verifier.reveal().encode() not in raw


def test_a_list_page_ends_early_at_its_byte_budget_and_the_cursor_walks_on(
    tenant: uuid.UUID, secrets: SecretRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23.5: whatever ``limit`` asks, a page's items carry at most ``PAGE_BYTES`` (a Lambda answer is 6 MB)."""
    from connvault.db import connections as repository

    made = [make_connection(tenant, secrets, end_user_id=f"user-{i}") for i in range(5)]
    with UnitOfWork(tenant) as uow:
        for connection in made:
            uow.connections.update_details(connection.id, alias=None, metadata={"note": "n" * 2000})
        uow.commit()
    monkeypatch.setattr(repository, "PAGE_BYTES", 2 * (repository.ITEM_BYTES + 2020))

    seen, sizes, cursor = [], [], None
    while True:
        with UnitOfWork(tenant) as uow:
            page = uow.connections.list_by_tenant(limit=100, cursor=cursor)
        seen.extend(c.id for c in page.items)
        sizes.append(len(page.items))
        if (cursor := page.next_cursor) is None:
            break

    assert sizes == [2, 2, 1]
    assert sorted(seen) == sorted(c.id for c in made)


def test_refresh_statements_from_threads_that_end_leave_no_connection_behind(db) -> None:
    # A warm scheduled function runs every few minutes with a new pool of threads: connections kept per thread
    # piled up, one set per run, until PostgreSQL refused everyone ("too many clients").
    statements = get_refresh_statements()
    now = datetime.now(UTC)

    def claim_once() -> None:
        until = now + timedelta(seconds=60)
        statements.claim(now, 900, 1, until, run_started=now, per_tenant=1, after_tenant=None, skip_providers=())

    def backends() -> int:
        with owner(db) as sql:
            return sql.run("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")[0][0]

    def run_with_new_threads(threads: int) -> None:
        barrier = threading.Barrier(threads)

        def work() -> None:
            barrier.wait()  # all at once, so the run needs as many connections as threads
            claim_once()

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    run_with_new_threads(8)
    after_first_run = backends()
    for _ in range(5):
        run_with_new_threads(8)

    # Other connections of this process may come and go meanwhile; a leak would add eight per run, forty here.
    assert backends() < after_first_run + 8


def test_the_token_read_gives_back_what_was_stored_odd_values_too(db: TestDatabase, secrets: SecretRegistry) -> None:
    """The prepared reads answer a connection's metadata as one json array (migration 0084): scopes a provider
    named with quotes, backslashes, braces, commas or any script come back as stored, and a whole-second expiry
    (which json writes as an integer) is the same instant."""
    tenant = make_tenant("Odd values")
    scopes = ('a"b', "c\\d", "{x,y}", "NULL", "ü ✓", "", "read write")
    expires_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    stored = make_connection(tenant, secrets, grant=oauth_grant(secrets, scopes=scopes, expires_at=expires_at))

    snapshot = get_fast_reads().read_connection(tenant, stored.id)
    target = get_fast_reads().read_proxy_target(tenant, stored.id)

    assert snapshot is not None
    assert target is not None
    assert target.snapshot == snapshot
    assert snapshot.status is ConnectionStatus.ACTIVE
    assert (snapshot.credential_type, snapshot.token_type) == ("oauth2", "Bearer")
    assert snapshot.scopes == scopes
    assert snapshot.expires_at == expires_at
    assert (snapshot.has_refresh_token, snapshot.last_error_code) == (True, None)


def test_the_token_read_decodes_a_state_once_yet_answers_each_change_and_each_row_of_its_own(
    db: TestDatabase, secrets: SecretRegistry
) -> None:
    """The read's metadata is decoded once per connection and state (``fast_reads._decoded``): a change of state is
    a new text, so it is answered at once; two connections in the same state are never answered with each other's
    id; the sealed credentials are always the row's own."""
    tenant = make_tenant("Decoded once")
    expires_at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    first, second = (
        make_connection(tenant, secrets, end_user_id=user, grant=oauth_grant(secrets, expires_at=expires_at))
        for user in ("u1", "u2")
    )
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET granted_at = :at, last_refresh_at = NULL WHERE tenant_id = :t",
            at=expires_at,
            t=tenant,
        )
        texts = sql.run("SELECT DISTINCT metadata::text FROM connvault_token_reads WHERE tenant_id = :t", t=tenant)
    assert len(texts) == 1  # the two connections are in the same state, to the byte
    reads = get_fast_reads()
    before = reads.read_connection(tenant, first.id)
    twin = reads.read_connection(tenant, second.id)
    with owner(db) as sql:
        sql.run(
            "UPDATE connections SET status = 'needs_reauth', last_error_code = 'invalid_grant', "
            "credentials = :other WHERE id = :id",
            other=sql.run("SELECT credentials FROM connections WHERE id = :id", id=second.id)[0][0],
            id=first.id,
        )

    after = reads.read_connection(tenant, first.id)
    other = reads.read_connection(tenant, second.id)

    assert before is not None and after is not None and other is not None and twin is not None
    assert (before.id, twin.id) == (first.id, second.id)
    assert before.credentials != twin.credentials
    assert before.status is ConnectionStatus.ACTIVE
    assert (after.status, after.last_error_code) == (ConnectionStatus.NEEDS_REAUTH, "invalid_grant")
    assert after.credentials == other.credentials != before.credentials
    assert (before.id, after.id, other.id) == (first.id, first.id, second.id)
    assert other.status is ConnectionStatus.ACTIVE


# -- tenants --------------------------------------------------------------------------------------------


def waits_for_a_lock(db: TestDatabase, seconds: float = 10.0) -> bool:
    """Whether some session of the test database comes to wait for a lock within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with owner(db) as sql:
            waiting = sql.run(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )[0][0]
        if waiting:
            return True
        time.sleep(0.02)
    return False


def test_no_connection_can_be_stored_for_a_locked_tenant_and_none_once_its_row_is_deleted(
    db: TestDatabase, tenant: uuid.UUID, secrets: SecretRegistry
) -> None:
    """``delete_tenant`` finds nothing left to revoke under this lock before deleting the row: a grant stored
    between that check and the delete would go with the cascade unrevoked."""
    failures: list[Exception] = []

    def store() -> None:
        try:
            make_connection(tenant, secrets)
        except Exception as exc:  # the outcome under test, read below
            failures.append(exc)

    with UnitOfWork(tenant) as uow:
        assert uow.tenants.lock(tenant)
        assert not uow.tenants.holds_connections_or_parked_grants(tenant)
        writer = threading.Thread(target=store)
        writer.start()
        assert waits_for_a_lock(db), "the insert did not wait for the tenant's lock"
        assert uow.tenants.delete(tenant)
        uow.commit()
    writer.join(timeout=10.0)

    assert not writer.is_alive()
    assert len(failures) == 1
    assert "connections_tenant_id_fkey" in str(failures[0])  # it waited, then found the tenant gone
    assert stored(db, "SELECT count(*) FROM connections") == [[0]]
    with UnitOfWork(tenant) as uow:
        assert not uow.tenants.lock(tenant)
