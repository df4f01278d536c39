"""The one way a prepared statement runs on a native connection (issue 15): which driver failures get one more
try on a new connection, what each means to the caller, and that a connection which saw an error is never kept."""

from __future__ import annotations

from typing import Any

import pg8000.exceptions
import pytest

from connvault.db.native import PreparedConnection, run_reconnecting_once
from connvault.errors import DatabaseBusy, DatabaseUnavailable


def server_error(code: str) -> pg8000.exceptions.DatabaseError:
    return pg8000.exceptions.DatabaseError({"S": "ERROR", "C": code, "M": "message"})


class Interrupted(Exception):
    """Any exception inside the driver that is not the driver's own (a conversion error, an interrupt)."""


class FakeConnection(PreparedConnection):
    """Answers one scripted outcome: the rows, or an exception to raise from inside the statement."""

    def __init__(self, outcome: list[list[Any]] | BaseException) -> None:
        self.outcome = outcome
        self.closed = False

    def run(self, sql: str, params: Any) -> list[list[Any]]:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def close(self) -> None:
        self.closed = True


class Pool:
    """Hands out one connection per outcome, in order, and records which were kept."""

    def __init__(self, *outcomes: list[list[Any]] | BaseException) -> None:
        self.connections = [FakeConnection(outcome) for outcome in outcomes]
        self.taken: list[FakeConnection] = []
        self.kept: list[PreparedConnection] = []

    def take(self) -> PreparedConnection:
        self.taken.append(self.connections[len(self.taken)])
        return self.taken[-1]

    def run(self, *, statement_errors_retryable: bool = False) -> list[list[Any]]:
        return run_reconnecting_once(
            self.take, self.kept.append, "SELECT 1", {}, statement_errors_retryable=statement_errors_retryable
        )


LOST = [
    pytest.param(pg8000.exceptions.InterfaceError("network error"), id="socket-gone"),
    pytest.param(BrokenPipeError(), id="broken-pipe"),
    pytest.param(server_error("57P01"), id="admin-shutdown"),
    pytest.param(server_error("08006"), id="connection-failure"),
    pytest.param(server_error("25006"), id="writer-demoted-to-reader"),
]


@pytest.mark.parametrize("lost", LOST)
def test_a_lost_connection_is_closed_and_replaced_once(lost: BaseException) -> None:
    pool = Pool(lost, [[1]])

    assert pool.run() == [[1]]
    assert [c.closed for c in pool.taken] == [True, False]
    assert pool.kept == [pool.taken[1]]


@pytest.mark.parametrize("lost", LOST)
def test_a_connection_lost_twice_is_database_unavailable(lost: BaseException) -> None:
    pool = Pool(lost, lost, [[1]])

    with pytest.raises(DatabaseUnavailable) as raised:
        pool.run()

    assert type(raised.value) is DatabaseUnavailable
    assert len(pool.taken) == 2
    assert all(c.closed for c in pool.taken)
    assert pool.kept == []


@pytest.mark.parametrize("code", ["53300", "57P03"])  # too_many_connections, cannot_connect_now
def test_a_server_refusing_connections_is_unavailable_at_once(code: str) -> None:
    pool = Pool(server_error(code), [[1]])

    with pytest.raises(DatabaseUnavailable):
        pool.run()

    assert len(pool.taken) == 1


@pytest.mark.parametrize("code", ["57014", "55P03"])  # statement_timeout, lock_timeout
@pytest.mark.parametrize("retryable", [False, True])
def test_a_statement_cancelled_for_time_is_database_busy_and_not_tried_again(code: str, retryable: bool) -> None:
    pool = Pool(server_error(code), [[1]])

    with pytest.raises(DatabaseBusy):
        pool.run(statement_errors_retryable=retryable)

    assert len(pool.taken) == 1
    assert pool.taken[0].closed


@pytest.mark.parametrize("code", ["40P01", "40001"])  # deadlock_detected, serialization_failure
def test_a_transaction_ended_in_a_conflict_is_database_busy_and_not_tried_again(code: str) -> None:
    pool = Pool(server_error(code), [[1]])

    with pytest.raises(DatabaseBusy, match="conflict"):
        pool.run(statement_errors_retryable=True)

    assert len(pool.taken) == 1


def test_any_other_server_error_is_the_drivers_own_or_retryable_as_the_caller_says() -> None:
    bug = server_error("42P01")  # undefined_table: a fault of the statement, not of the database

    pool = Pool(bug)
    with pytest.raises(pg8000.exceptions.DatabaseError) as raised:
        pool.run()
    assert raised.value is bug

    pool = Pool(bug)
    with pytest.raises(DatabaseUnavailable):
        pool.run(statement_errors_retryable=True)

    assert pool.taken[0].closed and pool.kept == []


def test_a_connection_interrupted_by_any_exception_is_closed_never_kept() -> None:
    pool = Pool(Interrupted())

    with pytest.raises(Interrupted):
        pool.run()

    assert pool.taken[0].closed
    assert pool.kept == []


def test_a_failure_to_connect_is_translated_like_a_lost_connection() -> None:
    attempts: list[int] = []

    def refuse() -> PreparedConnection:
        attempts.append(1)
        raise ConnectionRefusedError

    with pytest.raises(DatabaseUnavailable):
        run_reconnecting_once(refuse, lambda _: None, "SELECT 1", {}, statement_errors_retryable=True)

    assert len(attempts) == 2
