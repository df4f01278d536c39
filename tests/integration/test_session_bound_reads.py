"""Token fetch's read binds its database session to the tenant and, while the session stays bound, reads with a
plain SELECT that filters on the tenant as well (migration 0090, ``FastReads.read_connection``). What it must never
do is answer from the wrong tenant's rows, whatever the process believes about its session: these tests make the
process wrong in each way it could be (another tenant bound behind its back, a new connection, an interrupted
statement) and check the rows and the statements sent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from connvault.db import fast_reads
from connvault.db.fast_reads import FastReads
from connvault.db.native import PreparedConnection, connect_as_app
from tests.integration.test_engine import Interrupted, interrupt_next_row
from tests.support.factories import make_connection, make_tenant, owner

if TYPE_CHECKING:
    from collections.abc import Iterator
    from uuid import UUID

    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

PLAIN = "plain"
BINDING = "binding"
COUNTING_PLAIN = "counting plain"
COUNTING_FUNCTION = "counting function"


@pytest.fixture
def reads(db: TestDatabase) -> Iterator[FastReads]:
    """A process's fast reads of its own (not the process-wide one earlier tests used)."""
    statements = FastReads(connect_as_app)
    yield statements
    statements.close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which of the two reads each statement sent was (other statements are left out)."""
    names = {
        fast_reads._READ_CONNECTION: PLAIN,
        fast_reads._READ_CONNECTION_BINDING: BINDING,
        fast_reads._READ_CONNECTION_COUNTING_BOUND: COUNTING_PLAIN,
        fast_reads._READ_CONNECTION_COUNTING: COUNTING_FUNCTION,
    }
    statements: list[str] = []
    run = PreparedConnection.run

    def recording(self: PreparedConnection, sql: str, params: Any) -> list[list[Any]]:
        if sql in names:
            statements.append(names[sql])
        return run(self, sql, params)

    monkeypatch.setattr(PreparedConnection, "run", recording)
    return statements


def two_tenants(secrets: SecretRegistry) -> tuple[UUID, UUID, UUID, UUID]:
    a, b = make_tenant("A"), make_tenant("B")
    mine, theirs = make_connection(a, secrets, end_user_id="a-user"), make_connection(b, secrets, end_user_id="b-user")
    return a, mine.id, b, theirs.id


def test_a_tenants_first_read_binds_the_session_and_the_next_ones_are_plain(
    reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, b, theirs = two_tenants(secrets)

    snapshots = [reads.read_connection(a, mine) for _ in range(3)]
    their_snapshot = reads.read_connection(b, theirs)
    back = reads.read_connection(a, mine)

    assert [s.id if s else None for s in snapshots] == [mine, mine, mine]
    assert their_snapshot is not None and their_snapshot.id == theirs
    assert back is not None and back.id == mine
    # Tenants alternating cost what the read cost before the binding: one statement each.
    assert sent == [BINDING, PLAIN, PLAIN, BINDING, BINDING]


def test_alternating_tenants_never_read_each_others_connections(reads: FastReads, secrets: SecretRegistry) -> None:
    a, mine, b, theirs = two_tenants(secrets)

    answers = [
        reads.read_connection(tenant, connection)
        for tenant, connection in [(a, mine), (a, theirs), (b, theirs), (b, mine), (a, theirs), (a, mine), (b, mine)]
    ]

    assert [s.id if s else None for s in answers] == [mine, None, theirs, None, None, mine, None]


def test_a_session_bound_to_another_tenant_behind_the_process_back_finds_no_row_and_the_read_binds_again(
    reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, b, theirs = two_tenants(secrets)
    assert reads.read_connection(a, mine) is not None
    assert reads._connection is not None
    reads._connection.connection.run("SELECT set_config('app.tenant_id', :t, false)", t=str(b))
    sent.clear()

    their_row_as_a = reads.read_connection(a, theirs)
    mine_again = reads.read_connection(a, mine)

    assert their_row_as_a is None
    assert mine_again is not None and mine_again.id == mine
    # The plain read found nothing under B's binding (A's filter and B's RLS exclude every row), so each read went
    # through the binding function, which bound A again: the second read's plain SELECT found A's row.
    assert sent == [PLAIN, BINDING, PLAIN]


def test_a_new_connection_is_bound_to_no_tenant_and_its_first_read_binds(
    db: TestDatabase, reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, _, _ = two_tenants(secrets)
    assert reads.read_connection(a, mine) is not None
    [[backend]] = reads._run("SELECT pg_backend_pid()")
    with owner(db) as sql:
        sql.run("SELECT pg_terminate_backend(:pid)", pid=backend)
    sent.clear()

    replaced = reads.read_connection(a, mine)
    [[now_backend]] = reads._run("SELECT pg_backend_pid()")

    assert replaced is not None and replaced.id == mine
    assert now_backend != backend
    # The plain read found the connection gone, was sent again on a new one (bound to no tenant: no row), and the
    # binding function read it.
    assert sent == [PLAIN, PLAIN, BINDING]


def test_after_an_interrupted_statement_the_next_read_binds_a_new_connection(
    reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, _, theirs = two_tenants(secrets)
    assert reads.read_connection(a, mine) is not None
    assert reads._connection is not None
    interrupt_next_row(reads._connection.connection)
    with pytest.raises(Interrupted):
        reads.read_connection(a, mine)
    sent.clear()

    again = reads.read_connection(a, mine)
    their_row_as_a = reads.read_connection(a, theirs)

    assert again is not None and again.id == mine
    assert their_row_as_a is None
    assert sent == [BINDING, PLAIN, BINDING]


def counted(db: TestDatabase, tenant: UUID) -> int | None:
    with owner(db) as sql:
        rows = sql.run("SELECT requests FROM tenant_request_counts WHERE tenant_id = :t", t=tenant)
    return rows[0][0] if rows else None


def test_a_count_on_a_bound_session_is_one_plain_statement_that_counts_once(
    db: TestDatabase, reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, _, _ = two_tenants(secrets)

    first, first_window = reads.read_connection_counting(a, mine, 3, 10)  # no count row yet, session not bound
    assert reads.read_connection(a, mine) is not None  # binds
    second, second_window = reads.read_connection_counting(a, mine, 5, 10)
    missing, missing_window = reads.read_connection_counting(a, uuid4(), 2, 10)

    assert first is not None and first.id == mine
    assert second is not None and second.id == mine
    assert second.credentials == first.credentials
    assert missing is None
    assert [first_window.requests, second_window.requests, missing_window.requests] == [3, 8, 10]
    assert 0 < missing_window.seconds_left <= 10
    assert counted(db, a) == 10
    assert sent == [COUNTING_FUNCTION, BINDING, COUNTING_PLAIN, COUNTING_PLAIN]


def test_a_bound_count_with_no_row_to_update_counts_through_the_function_once(
    db: TestDatabase, reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    """The count row is gone (an UNLOGGED table after a crash): the plain statement updates nothing and answers no
    row, so the function inserts it, and the requests are counted once."""
    a, mine, _, _ = two_tenants(secrets)
    reads.read_connection_counting(a, mine, 1, 10)
    assert reads.read_connection(a, mine) is not None
    with owner(db) as sql:
        sql.run("DELETE FROM tenant_request_counts")
    sent.clear()

    snapshot, window = reads.read_connection_counting(a, mine, 4, 10)

    assert snapshot is not None and snapshot.id == mine
    assert window.requests == 4
    assert counted(db, a) == 4
    assert sent == [COUNTING_PLAIN, COUNTING_FUNCTION]


def test_a_bound_count_in_a_new_window_starts_the_window_again(
    db: TestDatabase, reads: FastReads, secrets: SecretRegistry
) -> None:
    a, mine, _, _ = two_tenants(secrets)
    reads.read_connection_counting(a, mine, 50, 10)
    assert reads.read_connection(a, mine) is not None
    with owner(db) as sql:
        sql.run("UPDATE tenant_request_counts SET window_start = window_start - interval '1 hour'")

    _, window = reads.read_connection_counting(a, mine, 6, 10)

    assert window.requests == 6
    assert 0 < window.seconds_left <= 10


def test_a_count_on_a_session_bound_to_another_tenant_behind_the_process_back_counts_only_its_own_tenant(
    db: TestDatabase, reads: FastReads, sent: list[str], secrets: SecretRegistry
) -> None:
    a, mine, b, theirs = two_tenants(secrets)
    reads.read_connection_counting(b, theirs, 7, 10)
    reads.read_connection_counting(a, mine, 1, 10)
    assert reads.read_connection(a, mine) is not None
    assert reads._connection is not None
    reads._connection.connection.run("SELECT set_config('app.tenant_id', :t, false)", t=str(b))
    sent.clear()

    their_row_as_a, window = reads.read_connection_counting(a, theirs, 2, 10)

    assert their_row_as_a is None
    assert window.requests == 3
    assert [counted(db, a), counted(db, b)] == [3, 7]
    # Under B's binding the plain statement found no count row of A's (A's filter, B's RLS): nothing was written
    # until the function counted for A.
    assert sent == [COUNTING_PLAIN, COUNTING_FUNCTION]


_SETS_TENANT = re.compile(r"set_config\('app\.tenant_id', p_tenant::text, (?:true|false)\)")


def test_every_statement_on_the_fast_read_connection_sets_its_own_tenant_or_filters_on_it(db: TestDatabase) -> None:
    """A session bound to a tenant lets that tenant's rows through RLS to any statement that does not set its own:
    each statement ``FastReads`` sends is a function that sets the tenant (or calls only such functions), a definer
    that reads as the owner by design, or a plain statement (the read, the counting read) that filters each
    relation it names on the tenant itself."""
    statements = [
        value
        for name, value in vars(fast_reads).items()
        if name.startswith("_") and isinstance(value, str) and value.lstrip().upper().startswith(("SELECT ", "WITH "))
    ]
    with owner(db) as sql:
        functions = {
            name: (definer, source)
            for name, definer, source in sql.run(
                "SELECT proname, prosecdef, prosrc FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            )
        }

    def sets_its_tenant(name: str) -> bool:
        definer, source = functions[name]
        called = set(re.findall(r"\b(connvault_\w+)\(", source)) - {name}
        return definer or bool(_SETS_TENANT.search(source)) or (bool(called) and all(map(sets_its_tenant, called)))

    unguarded = []
    for statement in statements:
        called = re.findall(r"\b(connvault_\w+)\(", statement)
        if called:
            unguarded += [name for name in called if not sets_its_tenant(name)]
        elif statement.count("tenant_id = CAST(:tenant AS uuid)") < len(re.findall(r"\bpublic\.\w+", statement)):
            unguarded.append(statement)  # each relation it reads or writes filtered on the tenant

    assert len(statements) >= 9
    assert unguarded == []
