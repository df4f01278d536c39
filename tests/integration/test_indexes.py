"""Each index added for a query is used by that query: the statement the real code sends (captured as it runs)
is EXPLAINed as the application role, under RLS, on a database holding 100,000 connections and 100,000 accounts
over ten tenants, every one with a provider account id and an external id (sealed placeholders, random indexes).
Searches by id are index scans that open the envelopes of the rows they find and of no other row.

The database is a fresh one for this module (filling the suite's shared one would slow every test after this
one), migrated by the real runner and ANALYZEd, as production's autovacuum would have it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest
from sqlalchemy import event, text

from connvault import wiring
from connvault.crypto.blind_index import KEY_FIELD
from connvault.crypto.envelope import SealContext
from connvault.crypto.sealer import Sealer
from connvault.db.accounts import EXTERNAL_ID_FIELD
from connvault.db.connections import PROVIDER_ACCOUNT_ID_FIELD
from connvault.db.uow import UnitOfWork
from connvault.migrations import migrate
from connvault.redacted import Redacted
from connvault.services import accounts, connections
from tests.support.fresh_database import FreshDatabase, fresh_database

if TYPE_CHECKING:
    from tests.support.database import TestDatabase

TENANTS = 10
CONNECTIONS_PER_TENANT = 10_000
SESSIONS_PER_TENANT = 2_000


@dataclass(frozen=True)
class Filled:
    database: FreshDatabase
    tenant: UUID
    """The tenant the queries run as; the other nine hold the same amount of rows."""


@pytest.fixture(scope="module")
def filled(database: TestDatabase) -> Iterator[Filled]:
    with fresh_database(database, "connvault_idx") as fresh, pytest.MonkeyPatch.context() as env:
        migrate(fresh.target)
        sql = replace(fresh.target, connect_timeout=600).connect()  # pg8000 reads with this timeout too
        try:
            sql.run("INSERT INTO tenants (name) SELECT 'tenant ' || n FROM generate_series(1, :n) n", n=TENANTS)
            github = sql.run("SELECT id FROM providers WHERE slug = 'github' AND tenant_id IS NULL")[0][0]
            # Every connection used within the last 100 minutes: idle ones are the rare exception, as in production.
            sql.run(
                "INSERT INTO connections (tenant_id, provider_id, end_user_id, credential_type, last_used_at,"
                " provider_account_id, provider_account_id_bidx)"
                " SELECT t.id, :p, 'user-' || n, 'api_key', now() - (n % 100) * interval '1 minute',"
                " '\\x00', sha256(convert_to(t.id::text || n, 'UTF8'))"
                " FROM tenants t, generate_series(1, :n) n",
                p=github,
                n=CONNECTIONS_PER_TENANT,
            )
            tenant = sql.run("SELECT id FROM tenants ORDER BY name LIMIT 1")[0][0]
            # The rows a test lists are opened, so they hold no placeholder: the idle connections below have no
            # account id, and the two connections that tests give accounts to have none yet.
            sql.run(
                "INSERT INTO accounts (tenant_id, connection_id, external_id, external_id_bidx)"
                " SELECT tenant_id, id, '\\x00', sha256(convert_to(id::text, 'UTF8')) FROM connections"
                " WHERE NOT (tenant_id = :t AND end_user_id IN ('user-501', 'user-502'))",
                t=tenant,
            )
            sql.run(
                "INSERT INTO oauth_sessions (tenant_id, provider_id, state_sha256, end_user_id, expires_at)"
                " SELECT t.id, :p, sha256(convert_to(t.id::text || n, 'UTF8')), 'user', now() + interval '10 minutes'"
                " FROM tenants t, generate_series(1, :n) n",
                p=github,
                n=SESSIONS_PER_TENANT,
            )
            sql.run(
                "UPDATE connections SET last_used_at = CASE WHEN end_user_id < 'user-11' THEN NULL"
                " ELSE now() - interval '30 days' END, provider_account_id = NULL, provider_account_id_bidx = NULL"
                " WHERE tenant_id = :t AND end_user_id IN ('user-1', 'user-10', 'user-2', 'user-3')",
                t=tenant,
            )
            sql.run("ANALYZE")
        finally:
            sql.close()
        env.setenv("CONNVAULT_DATABASE_URL", fresh.url)
        wiring.reset()
        try:
            yield Filled(fresh, tenant)
        finally:
            wiring.reset()


@contextmanager
def captured(uow: UnitOfWork, table: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements on ``table`` that the code sends through this unit of work's connection, with parameters."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if f" {table}" in statement and not statement.lstrip().upper().startswith("EXPLAIN"):
            statements.append((statement, parameters))

    engine = wiring.get_session_factory().kw["bind"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan_of(uow: UnitOfWork, statement: str, parameters: Any) -> dict[str, Any]:
    """EXPLAIN of a captured statement, in the same transaction (so as the app role, under the same tenant)."""
    raw = uow.session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    return (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


def indexes_used(plan: dict[str, Any]) -> set[str]:
    return {node["Index Name"] for node in nodes(plan) if "Index Name" in node}


def seq_scanned(plan: dict[str, Any]) -> set[str]:
    return {node["Relation Name"] for node in nodes(plan) if node["Node Type"] == "Seq Scan"}


def explain(
    tenant: UUID, table: str, call: Callable[[UnitOfWork], object], *, sealer: Sealer | None = None
) -> tuple[object, dict[str, Any]]:
    """Run ``call`` as the tenant, and EXPLAIN the last statement it sent on ``table``."""
    with UnitOfWork(tenant, sealer=sealer) as uow, captured(uow, table) as statements:
        result = call(uow)
        assert statements, f"no statement on {table} was sent"
        return result, plan_of(uow, *statements[-1])


def test_listing_idle_connections_uses_the_last_used_index(filled: Filled) -> None:
    since = datetime.now(UTC) - timedelta(days=1)

    page, plan = explain(
        filled.tenant,
        "connections",
        lambda uow: uow.connections.list_by_tenant(unused_since=since, limit=50),
    )

    assert "connections_tenant_last_used_idx" in indexes_used(plan), plan
    assert "connections" not in seq_scanned(plan)
    assert sorted(c.end_user_id for c in page.items) == ["user-1", "user-10", "user-2", "user-3"]  # type: ignore[attr-defined]


def test_the_service_filter_finds_the_idle_connections_of_the_tenant_only(filled: Filled) -> None:
    query = connections.ConnectionFilter(unused_since=datetime.now(UTC) - timedelta(days=1))

    page = connections.list_connections(UnitOfWork(filled.tenant), query)

    assert {c.tenant_id for c in page.items} == {filled.tenant}
    assert len(page.items) == 4


def test_purging_a_tenants_expired_connect_sessions_uses_the_tenant_expiry_index(filled: Filled) -> None:
    deleted, plan = explain(
        filled.tenant, "oauth_sessions", lambda uow: uow.oauth_sessions.purge_expired(uow.tenant, datetime.now(UTC))
    )

    assert "oauth_sessions_tenant_expires_idx" in indexes_used(plan), plan
    assert "oauth_sessions" not in seq_scanned(plan)
    assert deleted == 0


class CountingSealer(Sealer):
    """The process's sealer, noting the field of every envelope it opens."""

    def __init__(self) -> None:
        super().__init__(wiring.get_sealer().data_keys)
        self.opened: list[str] = []

    def open(self, blob: bytes, context: SealContext) -> bytes:
        self.opened.append(context.field)
        return super().open(blob, context)


def test_finding_connections_by_provider_account_id_is_an_index_scan_that_opens_only_the_match(
    filled: Filled,
) -> None:
    # Given one connection of the tenant whose provider account id was really sealed and indexed
    with UnitOfWork(filled.tenant) as uow:
        target = uow.session.execute(
            text("SELECT id FROM connections WHERE end_user_id = 'user-500' LIMIT 1")
        ).scalar_one()
    connections.update_connection(UnitOfWork(filled.tenant), target, provider_account_id=Redacted("acct-500"))
    sealer = CountingSealer()

    # When the tenant searches by it
    page, plan = explain(
        filled.tenant,
        "connections",
        lambda uow: uow.connections.list_by_tenant(provider_account_id="acct-500"),
        sealer=sealer,
    )

    # Then the index finds it, and only its envelope was opened (the blind-index key's aside)
    assert "connections_provider_account_idx" in indexes_used(plan), plan
    assert "connections" not in seq_scanned(plan)
    assert [c.id for c in page.items] == [target]  # type: ignore[attr-defined]
    assert [field for field in sealer.opened if field != KEY_FIELD] == [PROVIDER_ACCOUNT_ID_FIELD]


def test_finding_accounts_by_external_id_is_an_index_scan_that_opens_only_the_match(filled: Filled) -> None:
    with UnitOfWork(filled.tenant) as uow:
        connection_id = uow.session.execute(
            text("SELECT id FROM connections WHERE end_user_id = 'user-501' LIMIT 1")
        ).scalar_one()
    created = accounts.create_account(
        UnitOfWork(filled.tenant), connection_id, accounts.AccountInput(external_id=Redacted("ext-501"))
    )
    sealer = CountingSealer()

    page, plan = explain(
        filled.tenant, "accounts", lambda uow: uow.accounts.search(external_id="ext-501"), sealer=sealer
    )

    assert "accounts_external_idx" in indexes_used(plan), plan
    assert "accounts" not in seq_scanned(plan)
    assert [a.id for a in page.items] == [created.id]  # type: ignore[attr-defined]
    assert [field for field in sealer.opened if field != KEY_FIELD] == [EXTERNAL_ID_FIELD]


def test_a_connections_accounts_are_listed_through_the_connection_index(filled: Filled) -> None:
    with UnitOfWork(filled.tenant) as uow:
        connection_id = uow.session.execute(
            text("SELECT id FROM connections WHERE end_user_id = 'user-502' LIMIT 1")
        ).scalar_one()
    accounts.create_account(
        UnitOfWork(filled.tenant), connection_id, accounts.AccountInput(external_id=Redacted("ext-502"))
    )

    page, plan = explain(filled.tenant, "accounts", lambda uow: uow.accounts.list_by_connection(connection_id))

    assert "accounts_connection_idx" in indexes_used(plan), plan
    assert "accounts" not in seq_scanned(plan)
    assert len(page.items) == 1  # type: ignore[attr-defined]
