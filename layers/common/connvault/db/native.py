"""pg8000's native API as the prepared hot paths use it (``fast_reads``, ``refresh_statements``): the types of what
they rely on (pg8000 ships none), a connection with the statements prepared on it, and the one way a statement
runs there, reconnecting once and translating the driver's failures into the project's own errors.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from pg8000.exceptions import DatabaseError, InterfaceError

from connvault.config import get_settings
from connvault.db.target import (
    REFUSED_SQLSTATES,
    StatementLimits,
    busy,
    connect_with,
    database_unavailable,
    sqlstate,
)
from connvault.errors import DatabaseUnavailable
from connvault.retry import retry

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import pg8000.native


class PreparedStatement(Protocol):
    """``pg8000.native.Connection.prepare(sql)``: a statement parsed once, run by name with its parameters."""

    def run(self, **params: Any) -> list[list[Any]]:
        """The rows, each a list of column values (an empty list for a statement that returns none)."""
        ...


class PreparedConnection:
    """A native connection and the statements prepared on it, used by one statement at a time."""

    def __init__(self, connection: pg8000.native.Connection) -> None:
        self.connection = connection
        self._statements: dict[str, PreparedStatement] = {}

    def run(self, sql: str, params: Mapping[str, Any]) -> list[list[Any]]:
        """``sql`` as a prepared statement (prepared on first use: one round trip each time after that)."""
        statement = self._statements.get(sql)
        if statement is None:
            statement = self._statements[sql] = self.connection.prepare(sql)
        return statement.run(**params)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection interrupted mid-statement may fail any way
            self.connection.close()


def connect_as_app() -> PreparedConnection:
    """A new connection as the application role (RLS binds it), with the statement limits of the settings."""
    settings = get_settings()
    limits = StatementLimits.from_settings(settings)
    return PreparedConnection(connect_with(lambda target: target.connect(role=settings.db_app_role, limits=limits)))


def run_reconnecting_once(
    take: Callable[[], PreparedConnection],
    keep: Callable[[PreparedConnection], None],
    sql: str,
    params: Mapping[str, Any],
    *,
    statement_errors_retryable: bool,
) -> list[list[Any]]:
    """Run ``sql`` on a connection from ``take`` (an idle one, or a new one) and hand it to ``keep`` afterwards;
    a connection found lost (it died while idle: a frozen Lambda, a failover that ended its session) is replaced
    once.

    A connection that saw any exception inside a statement is closed, never kept: its replies may still be unread on
    the wire, and the next statement would take them for its own (another tenant's row). What the driver's failure
    means is decided here: a statement the server cancelled for time, or a transaction it ended in a deadlock or a
    serialization failure, is ``DatabaseBusy`` (``target.busy``); a server refusing new connections (too many
    clients, a failover in progress), or a connection lost twice, is ``DatabaseUnavailable`` (the caller answers or
    schedules "retry shortly"). Any other error the server answered is a fault of the statement:
    ``DatabaseUnavailable`` as well with ``statement_errors_retryable`` (a refresh's store, which its caller retries
    rather than lose a rotated token), else the driver's error as it is (a bug: a 500).
    """

    def once() -> list[list[Any]]:
        connection: PreparedConnection | None = None
        try:
            connection = take()
            rows = connection.run(sql, params)
        except BaseException as exc:
            if connection is not None:
                connection.close()
            if isinstance(exc, InterfaceError | OSError | DatabaseError):
                _translate(exc, statement_errors_retryable=statement_errors_retryable)
            raise
        keep(connection)
        return rows

    try:
        return retry(once, attempts=2, on=(_ConnectionLost,))
    except _ConnectionLost:
        raise DatabaseUnavailable("the database is unavailable; retry shortly") from None


class _ConnectionLost(Exception):
    """The connection died (while idle, most likely): worth one more try on a new one."""


def _translate(error: InterfaceError | OSError | DatabaseError, *, statement_errors_retryable: bool) -> None:
    """Raise what the driver's ``error`` means (see ``run_reconnecting_once``); return to let it propagate."""
    if (retry_later := busy(error)) is not None:
        raise retry_later from None
    if sqlstate(error) in REFUSED_SQLSTATES:
        raise DatabaseUnavailable("the database is unavailable; retry shortly") from None
    if not isinstance(error, DatabaseError) or database_unavailable(error):
        raise _ConnectionLost from None
    if statement_errors_retryable:
        raise DatabaseUnavailable("the database failed a statement; retry shortly") from None


def as_uuid(value: Any) -> uuid.UUID:
    """A uuid column's value, whether the driver decoded it to a ``UUID`` or passed it on as text."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
