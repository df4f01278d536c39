"""The engine survives what Lambda does to idle sockets: a connection the server dropped while the process was
frozen is pinged on checkout, discarded and replaced, and the caller never sees it."""

from __future__ import annotations

from sqlalchemy import text

from connvault.db import engine as engine_module
from connvault.db.engine import get_engine
from tests.support.factories import owner


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
