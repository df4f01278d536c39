"""The SQLAlchemy engine: one per process, built on first use.

The application logs in with the configured user and immediately ``SET ROLE``s to the non-owner app role,
so row-level security applies to everything it does; the migration runner keeps the owner's identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pg8000.dbapi
import pg8000.legacy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, ExceptionContext
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from connvault.config import get_settings
from connvault.db.target import (
    DatabaseTarget,
    StatementLimits,
    busy,
    connect_with,
    connection_lost,
    database_unavailable,
    session_setup,
    unreachable,
)
from connvault.errors import DatabaseUnavailable
from connvault.once import once

PING_AFTER_IDLE_SECONDS = 30.0

_convert_paramstyle: Callable[[str, str, Any], tuple[str, Any]] = pg8000.dbapi.convert_paramstyle


@lru_cache(maxsize=1024)
def _rewritten(query: str) -> str:
    return _convert_paramstyle("format", query, ())[0]


def convert_paramstyle_once(style: str, query: str, args: Any) -> tuple[str, Any]:
    """pg8000's DB-API rewrites ``%s`` placeholders to ``$n`` by scanning the SQL character by character on
    every execute: measured at ~0.3 ms per statement, a sixth of a refresh's CPU. For the ``format`` style
    SQLAlchemy uses, the rewrite depends on the SQL text alone, so it is done once per statement text."""
    if style == "format":
        return _rewritten(query), args
    return _convert_paramstyle(style, query, args)


# SQLAlchemy drives pg8000 through ``pg8000.legacy``, which imported the function into its own namespace: that
# is the name its cursors call (patching ``pg8000.dbapi`` alone, as an earlier version did, changed nothing).
pg8000.legacy.convert_paramstyle = convert_paramstyle_once


@once
def get_engine() -> Engine:
    """The process's engine: a small pool, the app role, and a ping before reusing a connection that sat idle.

    Lambda freezes the process between invocations and the server or a NAT may drop a silent socket; a ping on
    *every* checkout (``pool_pre_ping``) would add a round trip to each of the several short transactions of a
    refresh, so only a connection idle for longer than ``PING_AFTER_IDLE_SECONDS`` is pinged.

    Connection parameters are resolved at each new connection rather than once, so a rotated database password
    is picked up without a cold start (``connect_with``).
    """
    settings = get_settings()
    engine = create_engine(
        URL.create("postgresql+pg8000"),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=900,
        pool_use_lifo=True,  # reuse the warmest connection; the others may idle out and be pinged
        pool_timeout=settings.db_connect_timeout_seconds * 2,
    )
    limits = StatementLimits.from_settings(settings)
    setup = session_setup(settings.db_app_role, limits)

    dialect_connect = engine.dialect.loaded_dbapi.connect

    def connect(target: DatabaseTarget) -> Any:
        connection = dialect_connect(**target.pg8000_kwargs())
        target.end_connect_timeout(connection, limits)
        return connection

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> Any:
        return connect_with(connect)

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError from exc  # the pool drops it and checks out another (or a new one)

    @event.listens_for(engine, "handle_error")
    def _discard_interrupted(context: ExceptionContext) -> Exception | None:
        # Any exception inside a statement (a driver-side conversion error, a timeout, an interrupt, a server
        # error) may leave the statement's replies unread on the wire, and the next statement on that
        # connection would read them as its own: another tenant's rows. So the connection is never reused.
        # The pool's other connections (same server) go too only when the connection was lost: pg8000's dialect
        # recognises a closed socket but not a server that ended the session (a failover's admin_shutdown) or
        # one that now answers as a reader.
        # What the error means is translated here, where the driver is known: nothing above ``db/`` sees a
        # driver's or SQLAlchemy's exception for the database being down or busy, only ours.
        original = context.original_exception
        dropped = context.is_disconnect
        lost = dropped or connection_lost(original)
        context.invalidate_pool_on_disconnect = lost
        context.is_disconnect = True
        if (retry_later := busy(original)) is not None:
            return retry_later
        wrapped = context.sqlalchemy_exception
        if (
            dropped
            or isinstance(wrapped, OperationalError | InterfaceError)
            or unreachable(original)
            or (database_unavailable(original))
        ):
            return DatabaseUnavailable("the database is unavailable; retry shortly")
        return None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in setup:
            cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()

    return engine


@once
def get_session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False, autoflush=False)


def reset() -> None:
    """Forget the engine and target (tests switch databases and settings between runs)."""
    get_session_factory.cache_clear()
    get_engine.cache_clear(Engine.dispose)
