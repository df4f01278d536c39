"""Conventions every migration follows, checked on the migrated database itself so that a file added later by
anyone is held to them too: every table, column and function carries a comment, and every ``updated_at`` is kept
by the database (``connvault_set_updated_at``), which the repositories then read back."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from connvault.db.uow import UnitOfWork
from connvault.services import connections
from tests.support.factories import make_connection, make_integration, make_tenant, owner

if TYPE_CHECKING:
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

UNDOCUMENTED = """
    SELECT 'table ' || c.relname FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND coalesce(obj_description(c.oid, 'pg_class'), '') = ''
    UNION ALL
    SELECT 'column ' || c.relname || '.' || a.attname FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND coalesce(col_description(c.oid, a.attnum), '') = ''
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
    ORDER BY 1
"""

UPDATED_AT_WITHOUT_TRIGGER = """
    SELECT c.relname FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'updated_at' AND NOT a.attisdropped
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
      AND NOT EXISTS (
          SELECT 1 FROM pg_trigger t
          WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'
            -- connections has a function of its own, with its columns named (migration 0091)
            AND t.tgfoid IN ('connvault_set_updated_at'::regproc, 'connvault_connections_set_updated_at'::regproc)
            AND t.tgtype & 2 <> 0  -- BEFORE
            AND t.tgtype & 1 <> 0  -- FOR EACH ROW
            AND t.tgtype & 16 <> 0  -- UPDATE
      )
    ORDER BY 1
"""


def test_every_table_column_and_function_has_a_comment(database: TestDatabase) -> None:
    """Add ``COMMENT ON`` in the same migration as the object; this names what lacks one."""
    with owner(database) as sql:
        undocumented = [row[0] for row in sql.run(UNDOCUMENTED)]

    assert undocumented == []


def test_every_updated_at_is_kept_by_the_trigger(database: TestDatabase) -> None:
    with owner(database) as sql:
        untracked = [row[0] for row in sql.run(UPDATED_AT_WITHOUT_TRIGGER)]

    assert untracked == []


CONNECTIONS_BOOKKEEPING = {"updated_at", "last_used_at", "refresh_lease_until", "refresh_lease_owner"}


def test_the_connections_trigger_compares_every_column_but_its_bookkeeping(database: TestDatabase) -> None:
    """Migration 0091's function for connections names the columns it compares: a column added later and left out
    would change without moving ``updated_at``. Every column must be in the comparison, new and old, or be
    bookkeeping."""
    with owner(database) as sql:
        [[source]] = sql.run("SELECT prosrc FROM pg_proc WHERE proname = 'connvault_connections_set_updated_at'")
        columns = {
            name
            for [name] in sql.run(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'connections'::regclass AND attnum > 0 "
                "AND NOT attisdropped"
            )
        }
    compared = {side: set(re.findall(rf"\b{side}\.(\w+)", source)) for side in ("NEW", "OLD")}

    assert columns - CONNECTIONS_BOOKKEEPING == compared["NEW"] - {"updated_at"} == compared["OLD"] - {"updated_at"}


def updated_at(db: TestDatabase, connection_id: object) -> datetime:
    with owner(db) as sql:
        return sql.run("SELECT updated_at FROM connections WHERE id = :c", c=connection_id)[0][0]


def later(db: TestDatabase, statement: str, connection_id: object) -> datetime:
    """Run ``statement`` in a transaction of its own that starts after the previous one (now() moved on)."""
    time.sleep(0.002)
    with owner(db) as sql:
        sql.run(statement, c=connection_id)
    return updated_at(db, connection_id)


def test_a_change_moves_updated_at_and_bookkeeping_does_not(db: TestDatabase, secrets: SecretRegistry) -> None:
    connection = make_connection(make_tenant(), secrets)
    created = updated_at(db, connection.id)

    after_use = later(db, "UPDATE connections SET last_used_at = now() WHERE id = :c", connection.id)
    after_lease = later(
        db,
        "UPDATE connections SET refresh_lease_until = now(), refresh_lease_owner = gen_random_uuid() WHERE id = :c",
        connection.id,
    )
    after_forged = later(db, "UPDATE connections SET updated_at = now() - interval '1 d' WHERE id = :c", connection.id)
    after_change = later(db, "UPDATE connections SET alias = 'work' WHERE id = :c", connection.id)
    after_same = later(db, "UPDATE connections SET alias = 'work' WHERE id = :c", connection.id)

    assert after_use == after_lease == after_forged == created
    assert after_change > created
    assert after_same == after_change


def test_a_table_without_bookkeeping_columns_moves_updated_at_on_any_change(
    db: TestDatabase, secrets: SecretRegistry
) -> None:
    integration = make_integration(make_tenant(), secrets)
    time.sleep(0.002)
    with owner(db) as sql:
        sql.run("UPDATE integrations SET scopes = scopes WHERE id = :i", i=integration.id)
        same = sql.run("SELECT updated_at FROM integrations WHERE id = :i", i=integration.id)[0][0]
        sql.run("UPDATE integrations SET client_id = 'another' WHERE id = :i", i=integration.id)
        changed = sql.run("SELECT updated_at FROM integrations WHERE id = :i", i=integration.id)[0][0]

    assert same == integration.updated_at
    assert changed > integration.updated_at


def test_a_repository_write_answers_with_the_updated_at_the_trigger_wrote(
    db: TestDatabase, secrets: SecretRegistry
) -> None:
    tenant = make_tenant()
    created = make_connection(tenant, secrets)
    time.sleep(0.002)

    renamed = connections.update_connection(UnitOfWork(tenant), created.id, alias="work")
    unchanged = connections.update_connection(UnitOfWork(tenant), created.id)

    stored = updated_at(db, created.id)
    assert renamed.updated_at == stored > created.updated_at
    assert unchanged.updated_at == stored
    assert stored - datetime.now(UTC) < timedelta(minutes=1)
