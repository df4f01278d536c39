"""The engine survives what Lambda does to idle sockets: a connection the server dropped while the process was
frozen is pinged on checkout, discarded and replaced, and the caller never sees it. And a connection on which a
statement was interrupted is never used again, by the pool, the fast reads or the refresh statements (issue 13.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from pg8000.core import DATA_ROW
from sqlalchemy import text

from connvault.db import engine as engine_module
from connvault.db.engine import get_engine
from connvault.db.fast_reads import FastReads, get_fast_reads
from connvault.db.native import connect_as_app
from connvault.db.refresh_statements import RefreshStatements
from connvault.db.uow import UnitOfWork
from tests.support.factories import make_connection, make_tenant, owner

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry


def test_a_connection_killed_while_idle_is_replaced_on_checkout(db, monkeypatch) -> None:
    engine = get_engine()
    with engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checked-in connection is "idle"
    with owner(db) as sql:
        sql.run("SELECT pg_terminate_backend(:pid)", pid=backend)

    with engine.connect() as connection:
        assert connection.execute(text("SELECT current_user")).scalar_one() == "connvault_app"
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend


def test_a_recently_used_connection_is_reused_without_a_ping(db, monkeypatch) -> None:
    engine = get_engine()
    pings: list[object] = []
    monkeypatch.setattr(engine.dialect, "do_ping", pings.append)
    with engine.connect() as connection:
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()

    with engine.connect() as connection:
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == backend
    assert pings == []


def test_the_cached_placeholder_rewrite_gives_what_pg8000_gives() -> None:
    queries = [
        "SELECT %s, '%s is quoted', \"col%s\" FROM t WHERE a = %s -- %s in a comment\n AND b = %s",
        "SELECT $$ %s $$, E'\\' %s', %s",
        "UPDATE connections SET status=%s WHERE connections.id = %s::UUID",
    ]
    for query in queries:
        args = ("x",) * query.count("%s")
        assert engine_module.convert_paramstyle_once("format", query, args) == engine_module._convert_paramstyle(
            "format", query, args
        )
        assert engine_module.convert_paramstyle_once("format", query, args) == engine_module._convert_paramstyle(
            "format", query, args
        )


def test_statements_sent_through_the_engine_are_rewritten_once_per_text(db) -> None:
    # pg8000's cursors call the name pg8000.legacy imported; a patch elsewhere would never be called (issue 14.2).
    engine = get_engine()
    statement = text("SELECT CAST(:a AS text), CAST(:b AS text) -- rewrite-once probe")
    with engine.connect() as connection:
        connection.execute(statement, {"a": "x", "b": "y"})
    before = engine_module._rewritten.cache_info()

    with engine.connect() as connection:
        for _ in range(3):
            assert connection.execute(statement, {"a": "x", "b": "y"}).one() == ("x", "y")

    after = engine_module._rewritten.cache_info()
    assert after.hits - before.hits >= 3
    assert after.misses == before.misses


# -- issue 13.1: a connection interrupted mid-statement is never reused --------------------------------------


class Interrupted(Exception):
    """Stands for any exception raised inside the driver while a statement's replies are still on the wire."""


def interrupt_next_row(dbapi_connection: Any) -> None:
    """Make the driver fail on the next data row it decodes (as pg8000's datetime conversion once did), leaving
    the rest of that statement's replies unread."""
    handlers = dbapi_connection.message_types
    original = handlers[DATA_ROW]

    def fail_once(*_args: Any) -> None:
        handlers[DATA_ROW] = original
        raise Interrupted

    handlers[DATA_ROW] = fail_once


def test_a_session_connection_interrupted_mid_statement_is_discarded_not_handed_to_another_tenant(
    db: TestDatabase, secrets: SecretRegistry
) -> None:
    victim, other = make_tenant("Victim"), make_tenant("Other")
    make_connection(victim, secrets, end_user_id="victim-user")
    theirs = make_connection(other, secrets, end_user_id="other-user")
    with get_engine().connect() as connection:
        interrupted_backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()

    with pytest.raises(Interrupted), UnitOfWork(victim) as uow:  # noqa: PT012 - the interruption is inside
        interrupt_next_row(uow.session.connection().connection.dbapi_connection)
        uow.connections.list_by_tenant()

    for _ in range(3):  # every later checkout of the pool answers its own statement
        with UnitOfWork(other) as uow:
            assert [c.id for c in uow.connections.list_by_tenant().items] == [theirs.id]
            backend = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert backend != interrupted_backend


def test_the_fast_read_connection_interrupted_mid_statement_is_discarded(
    db: TestDatabase, secrets: SecretRegistry
) -> None:
    victim, other = make_tenant("Victim"), make_tenant("Other")
    mine = make_connection(victim, secrets, end_user_id="victim-user")
    theirs = make_connection(other, secrets, end_user_id="other-user")
    reads = get_fast_reads()
    assert reads.read_connection(victim, mine.id) is not None
    assert reads._connection is not None

    interrupt_next_row(reads._connection.connection)
    with pytest.raises(Interrupted):
        reads.read_connection(victim, mine.id)

    snapshot = reads.read_connection(other, theirs.id)
    assert snapshot is not None
    assert snapshot.id == theirs.id
    assert reads.read_connection(other, mine.id) is None
    assert reads.read_connection(victim, mine.id) is not None


# -- the prepared paths (fast reads, refresh statements) share one way to run a statement ----------------------


@pytest.fixture(params=[FastReads, RefreshStatements], ids=["fast-reads", "refresh-statements"])
def prepared(request: pytest.FixtureRequest, db: TestDatabase) -> Iterator[FastReads | RefreshStatements]:
    """A new object of each prepared path (the process's own may hold connections earlier tests left idle)."""
    statements = request.param(connect_as_app)
    yield statements
    statements.close()


def test_a_prepared_connection_the_server_ended_while_idle_is_replaced_and_the_caller_never_sees_it(
    db: TestDatabase, prepared: FastReads | RefreshStatements
) -> None:
    [[backend]] = prepared._run("SELECT pg_backend_pid()")
    with owner(db) as sql:
        sql.run("SELECT pg_terminate_backend(:pid)", pid=backend)

    [[replaced]] = prepared._run("SELECT pg_backend_pid()")

    assert replaced != backend


def test_a_refresh_statements_connection_interrupted_mid_statement_is_closed_not_given_back(db: TestDatabase) -> None:
    statements = RefreshStatements(connect_as_app)
    try:
        [[backend]] = statements._run("SELECT pg_backend_pid()")
        [idle] = statements._idle

        interrupt_next_row(idle.connection)
        with pytest.raises(Interrupted):
            statements._run("SELECT pg_backend_pid()")

        assert statements._idle == []
        [[other]] = statements._run("SELECT pg_backend_pid()")
        assert other != backend
    finally:
        statements.close()
