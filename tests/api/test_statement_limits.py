"""Database time limits (issue 23.3): the connect timeout bounds connecting only; statements are bounded by the
server's ``statement_timeout`` / ``lock_timeout``, sized per job, and one cancelled for time is a typed,
retryable error (503 ``database_busy`` with ``Retry-After`` on the API) whose connection is not reused."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from connvault.db.fast_reads import get_fast_reads
from connvault.db.uow import UnitOfWork
from connvault.errors import DatabaseBusy
from tests.api.conftest import Api, connect_account
from tests.support.factories import make_tenant, owner

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.support.database import TestDatabase


def test_a_statement_longer_than_the_connect_timeout_runs_to_its_end(
    db: TestDatabase, reconfigure: Callable[..., None]
) -> None:
    reconfigure(db_connect_timeout_seconds=0.3, db_statement_timeout_ms=5000)
    tenant = make_tenant()

    with UnitOfWork(tenant) as uow:
        assert uow.session.execute(text("SELECT pg_sleep(0.8), 1")).one()[1] == 1
    assert get_fast_reads()._run("SELECT pg_sleep(0.8), 1")[0][1] == 1


def test_a_statement_past_its_limit_is_database_busy_and_its_connection_is_not_reused(
    db: TestDatabase, reconfigure: Callable[..., None]
) -> None:
    reconfigure(db_statement_timeout_ms=200)
    tenant = make_tenant()

    with UnitOfWork(tenant) as uow:
        backend = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with pytest.raises(DatabaseBusy):
            uow.session.execute(text("SELECT pg_sleep(2)"))
    with UnitOfWork(tenant) as uow:
        assert uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend

    with pytest.raises(DatabaseBusy):
        get_fast_reads()._run("SELECT pg_sleep(2)")
    assert get_fast_reads()._run("SELECT 1") == [[1]]


def test_token_fetch_behind_a_held_row_lock_is_a_quick_503_with_retry_after(
    api: Api, db: TestDatabase, reconfigure: Callable[..., None]
) -> None:
    connection_id = connect_account(api)
    reconfigure(db_lock_timeout_ms=300)
    with owner(db) as holder:
        holder.run("BEGIN")
        holder.run("SELECT 1 FROM connections WHERE id = CAST(:id AS uuid) FOR UPDATE", id=connection_id)

        started = time.monotonic()
        answer = api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
        elapsed = time.monotonic() - started
        holder.run("ROLLBACK")

    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "database_busy"
    assert int(answer.headers["Retry-After"]) >= 1
    assert elapsed < 3.0
    assert api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"}).status == 200


def test_a_transaction_ended_by_a_deadlock_is_database_busy(db: TestDatabase) -> None:
    """A request that deadlocks with another (the connect page's save with a tenant's deletion, found by an outside
    probe) is a typed, retryable error, not a driver's exception and a 500."""
    tenant = make_tenant()
    waiting = threading.Event()

    def other() -> None:
        with owner(db) as connection:
            connection.run("BEGIN")
            connection.run("SELECT pg_advisory_xact_lock(2)")
            waiting.wait(5)
            time.sleep(0.3)  # the unit of work below now waits for lock 2
            connection.run("SELECT pg_advisory_xact_lock(1)")
            connection.run("ROLLBACK")

    thread = threading.Thread(target=other)
    with UnitOfWork(tenant) as uow:
        uow.session.execute(text("SELECT pg_advisory_xact_lock(1)"))
        thread.start()
        waiting.set()
        time.sleep(0.1)
        with pytest.raises(DatabaseBusy, match="conflict"):
            uow.session.execute(text("SELECT pg_advisory_xact_lock(2)"))
    thread.join(10)
