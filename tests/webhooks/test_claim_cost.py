"""What the sender's claim reads (migration 0097): the eligible work, never a backlog it cannot send.

An outside probe measured the claim of 0085/0088 at 1.0 ms with no backlog, 43 ms beside 50,000 deliveries parked
behind an open circuit and a disabled endpoint and 139 ms beside 150,000, every 0.2-0.5 s, for every tenant. These
tests count what one claim reads of ``webhook_deliveries`` and its indexes (index entries, heap rows of sequential
scans, and buffers), from PostgreSQL's own per-transaction statistics, not the time it takes: the same claim with
and without a backlog must read about the same. Each claim runs in a transaction that is rolled back, so the rows
stay as they were for the next."""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.support.factories import owner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pg8000.native

    from tests.support.database import TestDatabase

PARKED = 20_000
DEEPER = 100
"""Buffers a claim may read more once its indexes hold tens of thousands of entries: a level or two more in each
of the few dozen index descents it makes. The claim of 0088 read more than 20,000 more beside 20,000 parked."""
READ = """
    SELECT pg_stat_get_xact_tuples_returned('webhook_deliveries'::regclass)
           + coalesce(sum(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0),
           pg_stat_get_xact_blocks_fetched('webhook_deliveries'::regclass)
           + coalesce(sum(pg_stat_get_xact_blocks_fetched(i.indexrelid)), 0)
    FROM pg_index i WHERE i.indrelid = 'webhook_deliveries'::regclass
"""
"""Rows read from webhook_deliveries (by sequential scans, and entries read from its indexes) and buffers fetched
from it and its indexes, so far in this transaction."""
CLAIM = (
    "SELECT endpoint_id::text FROM connvault_claim_webhook_deliveries("
    "now(), :slots, 4, 5, gen_random_uuid(), now() + interval '1 minute')"
)


@dataclass(frozen=True)
class Claimed:
    endpoints: list[str]
    rows: int
    buffers: int


class Outbox:
    """Tenants, endpoints and deliveries written straight into the outbox, as the trigger writes them (the claim
    is what is measured, not how deliveries come to be)."""

    def __init__(self, sql: pg8000.native.Connection) -> None:
        self.sql = sql

    def endpoint(self, tenant: str, *, enabled: bool = True, circuit_open: bool = False) -> str:
        tenant_id = self.sql.run("SELECT id FROM tenants WHERE name = :n", n=tenant) or self.sql.run(
            "INSERT INTO tenants (name) VALUES (:n) RETURNING id", n=tenant
        )
        return str(
            self.sql.run(
                "INSERT INTO webhook_endpoints (tenant_id, url, event_types, secret, enabled, consecutive_failures,"
                " circuit_open_until) VALUES (:t, 'https://hooks.example.com/' || gen_random_uuid(),"
                " ARRAY['connection.created'], '\\x00', :enabled, :failures,"
                " CASE WHEN :open THEN now() + interval '1 hour' END) RETURNING id",
                t=tenant_id[0][0],
                enabled=enabled,
                failures=5 if circuit_open else 0,
                open=circuit_open,
            )[0][0]
        )

    def deliveries(
        self,
        endpoint: str,
        count: int,
        *,
        subject: uuid.UUID | None = None,
        due_in: str = "0 seconds",
        status: str = "pending",
    ) -> None:
        """``count`` deliveries of as many events, each about its own connection unless ``subject`` is given,
        first attempt due ``due_in`` from now."""
        self.sql.run(
            "WITH e AS (INSERT INTO webhook_events (tenant_id, type, subject_id, data)"
            " SELECT w.tenant_id, 'connection.created', coalesce(CAST(:s AS uuid), gen_random_uuid()), '{}'"
            " FROM webhook_endpoints w, generate_series(1, :n) WHERE w.id = CAST(:e AS uuid)"
            " RETURNING id, tenant_id, subject_id)"
            " INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id, next_attempt_at, status)"
            " SELECT e.tenant_id, CAST(:e AS uuid), e.id, e.subject_id, now() + CAST(:due AS interval), :status"
            " FROM e",
            e=endpoint,
            n=count,
            s=None if subject is None else str(subject),
            due=due_in,
            status=status,
        )
        self.sql.run("VACUUM ANALYZE webhook_deliveries")  # as autovacuum would after a fill

    def claim(self, slots: int = 16, *, keep: bool = False) -> Claimed:
        """One claim as a sender's connection makes it, its plan made already (PL/pgSQL keeps it per connection, and
        makes it again after an ANALYZE), with what it read; rolled back unless ``keep``."""
        self.sql.run("BEGIN")
        self.sql.run(CLAIM, slots=slots)
        self.sql.run("ROLLBACK")
        self.sql.run("BEGIN")
        try:
            rows_before, buffers_before = self.sql.run(READ)[0]
            endpoints = sorted(row[0] for row in self.sql.run(CLAIM, slots=slots))
            rows_after, buffers_after = self.sql.run(READ)[0]
        finally:
            self.sql.run("COMMIT" if keep else "ROLLBACK")
        return Claimed(endpoints, int(rows_after - rows_before), int(buffers_after - buffers_before))


@pytest.fixture
def outbox(db: TestDatabase) -> Iterator[Outbox]:
    with owner(db) as sql:
        yield Outbox(sql)


def test_a_claims_reads_do_not_grow_with_a_backlog_parked_behind_an_open_circuit_and_a_disabled_endpoint(
    outbox: Outbox,
) -> None:
    # Given two tenants with deliveries due on healthy endpoints, and a history of 20,000 delivered ones
    live = [outbox.endpoint("live"), outbox.endpoint("live"), outbox.endpoint("other")]
    for endpoint in live:
        outbox.deliveries(endpoint, 3)
    outbox.deliveries(live[0], PARKED, status="delivered")
    alone = outbox.claim()

    # When another tenant parks 20,000 due deliveries behind an open circuit and a disabled endpoint, then as
    # many again
    parked = [outbox.endpoint("parked", circuit_open=True), outbox.endpoint("parked", enabled=False)]
    for endpoint in parked:
        outbox.deliveries(endpoint, PARKED // 2)
    beside = outbox.claim()
    for endpoint in parked:
        outbox.deliveries(endpoint, PARKED // 2)
    beside_twice = outbox.claim()

    # Then the claim leases the same and reads the same rows, plus one index descent per parked endpoint, however
    # large their backlog (the claim of 0088 read every parked delivery and probed its order: some 40,000 index
    # entries, and 20,000 heap rows, more for each 20,000); its buffers grow only by the levels its indexes grow,
    # not by a buffer per parked delivery
    assert alone.endpoints == beside.endpoints == beside_twice.endpoints == sorted(live)
    assert beside.rows <= alone.rows + 10, (alone, beside)
    assert beside_twice.rows <= beside.rows + 2, (beside, beside_twice)
    assert beside_twice.buffers <= alone.buffers + DEEPER, (alone, beside, beside_twice)


def test_a_backlog_waiting_for_its_backoff_is_not_read_by_the_claim(outbox: Outbox) -> None:
    """An endpoint retrying thousands of deliveries later (a receiver answering 503 with Retry-After) still takes
    part with the one it can send now; the claim neither reads the rest nor counts over them for its in-flight
    bound (0088 counted an endpoint's deliveries in flight by reading all its pending ones)."""
    endpoint = outbox.endpoint("live")
    outbox.deliveries(endpoint, 1)
    alone = outbox.claim()

    outbox.deliveries(endpoint, 10_000, due_in="1 hour")
    beside = outbox.claim()

    assert alone.endpoints == beside.endpoints == [endpoint]
    assert beside.rows <= alone.rows + 10, (alone, beside)
    assert beside.buffers <= alone.buffers + DEEPER, (alone, beside)


def test_a_run_queued_behind_one_connections_parked_delivery_is_set_aside_and_released_when_that_one_is_done(
    outbox: Outbox,
) -> None:
    """Thousands of deliveries of one connection waiting behind its first, parked for an hour (order per
    connection): claims hold them out of the way a bounded number at a time, after which a claim reads about
    what it reads without them; the endpoint's other connections go meanwhile, and the run goes on, in order, as
    soon as the parked one is done."""
    # Given an endpoint with one connection's delivery parked for an hour and 2,000 of that connection's behind it
    endpoint, connection = outbox.endpoint("live"), uuid.uuid4()
    outbox.deliveries(endpoint, 1, subject=connection, due_in="1 hour")
    outbox.deliveries(endpoint, 2_000, subject=connection)
    baseline_endpoint = outbox.endpoint("other")
    outbox.deliveries(baseline_endpoint, 1)
    alone = outbox.claim()
    # and another connection's delivery, queued after the run
    outbox.deliveries(endpoint, 1)

    # When claims run (each holding what it passed over)
    claims = [outbox.claim(keep=True) for _ in range(math.ceil(2_000 / 256) + 1)]
    outbox.sql.run("UPDATE webhook_deliveries SET lease_until = NULL, lease_owner = NULL")
    settled = outbox.claim()

    # Then within a few claims the other connection's delivery was taken, none of the run's ever was, and once the
    # run is set aside a claim reads about what it reads without it (0088 read all 2,000 and probed each one's
    # order, every claim)
    assert any(endpoint in claim.endpoints for claim in claims)
    assert all(claim.rows < 5_000 for claim in claims), claims
    assert settled.endpoints == sorted([endpoint, baseline_endpoint])
    assert settled.rows <= alone.rows + 20, (alone, settled)
    run = outbox.sql.run(
        "SELECT seq, lease_owner IS NULL AND status = 'pending' FROM webhook_deliveries"
        " WHERE subject_id = CAST(:s AS uuid) ORDER BY seq",
        s=str(connection),
    )
    assert all(untaken for _seq, untaken in run)

    # When the parked delivery is done
    outbox.sql.run(
        "UPDATE webhook_deliveries SET status = 'delivered' WHERE seq = :seq",
        seq=run[0][0],
    )

    # Then the next claim takes the run's next delivery at once, not after its hold
    outbox.claim(keep=True)
    taken = outbox.sql.run(
        "SELECT seq FROM webhook_deliveries WHERE subject_id = CAST(:s AS uuid) AND lease_owner IS NOT NULL",
        s=str(connection),
    )
    assert taken == [[run[1][0]]]


def test_one_tenants_blocked_connections_do_not_take_every_hold_from_another_tenants_endpoint(outbox: Outbox) -> None:
    """Holds go to tenants in turns (migration 0099). A tenant keeping hundreds of old connections blocked (a first
    delivery in backoff, a second behind it) took every hold of every claim under 0097, and another tenant's
    endpoint, whose first ready deliveries all waited behind one of its connections, sent nothing (an outside probe:
    never in 60 claims)."""
    # Given a tenant whose 300 connections each have a delivery parked for an hour and one behind it
    hostile = outbox.endpoint("hostile")
    outbox.sql.run(
        "WITH s AS (SELECT gen_random_uuid() AS sid FROM generate_series(1, 300)),"
        " e AS (INSERT INTO webhook_events (tenant_id, type, subject_id, data)"
        "  SELECT w.tenant_id, 'connection.created', s.sid, '{}' FROM webhook_endpoints w, s, generate_series(1, 2) k"
        "  WHERE w.id = CAST(:e AS uuid) ORDER BY s.sid, k RETURNING id, tenant_id, subject_id)"
        " INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id, next_attempt_at)"
        " SELECT tenant_id, CAST(:e AS uuid), id, subject_id, now() - interval '20 minutes' FROM e",
        e=hostile,
    )
    outbox.sql.run(
        "UPDATE webhook_deliveries d SET next_attempt_at = now() + interval '1 hour', attempts = 1"
        " WHERE endpoint_id = CAST(:e AS uuid) AND seq = (SELECT min(seq) FROM webhook_deliveries o"
        " WHERE o.endpoint_id = d.endpoint_id AND o.subject_id = d.subject_id)",
        e=hostile,
    )
    outbox.sql.run("VACUUM ANALYZE webhook_deliveries")
    # and another tenant's endpoint whose connection has a retry due now and 40 deliveries ready behind it
    victim, connection = outbox.endpoint("victim"), uuid.uuid4()
    outbox.deliveries(victim, 1, subject=connection, due_in="-1 minute")
    outbox.deliveries(victim, 40, subject=connection, due_in="-10 minutes")

    # When a few claims run, each sent delivery failing again
    taken = []
    for _ in range(4):
        taken.append(victim in outbox.claim(keep=True).endpoints)
        outbox.sql.run("UPDATE webhook_deliveries SET lease_until = NULL, lease_owner = NULL")

    # Then the victim's endpoint sent within them
    assert any(taken), taken


def test_a_status_change_does_not_read_the_drained_deliveries_of_its_connection_under_an_old_snapshot(
    outbox: Outbox, db: TestDatabase
) -> None:
    """While an old snapshot (a long report, a replica's feedback) keeps delivered deliveries' index entries alive,
    the release trigger's search from the connection's first delivery walked all of them: 3,002 rows at the
    3,000th change (an outside probe). It searches after the one that left (migration 0099)."""
    endpoint, connection = outbox.endpoint("draining"), uuid.uuid4()
    outbox.deliveries(endpoint, 600, subject=connection)
    ids = [
        row[0]
        for row in outbox.sql.run(
            "SELECT id::text FROM webhook_deliveries WHERE subject_id = CAST(:s AS uuid) ORDER BY seq",
            s=str(connection),
        )
    ]
    with owner(db) as report:
        report.run("BEGIN ISOLATION LEVEL REPEATABLE READ")
        report.run("SELECT count(*) FROM tenants")
        for delivery in ids[:-1]:
            outbox.sql.run("BEGIN")
            before = outbox.sql.run(READ)[0][0]
            outbox.sql.run("UPDATE webhook_deliveries SET status = 'delivered' WHERE id = CAST(:d AS uuid)", d=delivery)
            read = outbox.sql.run(READ)[0][0] - before
            outbox.sql.run("COMMIT")
        report.run("ROLLBACK")

    assert read < 50, read


def test_senders_racing_each_other_and_new_events_take_every_delivery_once_in_order_without_waiting_on_a_hold(
    db: TestDatabase,
) -> None:
    """Two senders claim, deliver and claim again at once while new events of the same connections arrive: every
    delivery is taken once, each connection's in order, and nothing waits out a hold (ten one-minute leases here:
    a release lost between a claim holding a delivery and the delivery ahead of it ending would stall past the
    deadline). The claim of 0088 kept the same order, without holds to lose; this guards the holds."""
    connections = [uuid.uuid4() for _ in range(12)]
    with owner(db) as sql:
        outbox = Outbox(sql)
        endpoints = [outbox.endpoint("racing") for _ in range(3)]
        for endpoint in endpoints:
            for connection in connections:
                outbox.deliveries(endpoint, 6, subject=connection)
    stop = threading.Event()
    failures: list[BaseException] = []

    def sender() -> None:
        with owner(db) as sql:
            while not stop.is_set():
                lease_owner = str(uuid.uuid4())
                claimed = sql.run(
                    "SELECT id::text FROM connvault_claim_webhook_deliveries("
                    "now(), 4, 2, 5, CAST(:o AS uuid), now() + interval '1 minute')",
                    o=lease_owner,
                )
                time.sleep(0.02)  # the attempts
                for (delivery,) in claimed:
                    sql.run(
                        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = clock_timestamp(),"
                        " lease_until = NULL, lease_owner = NULL WHERE id = CAST(:d AS uuid) AND lease_owner = :o",
                        d=delivery,
                        o=lease_owner,
                    )
                if not claimed:
                    time.sleep(0.01)

    def events() -> None:
        with owner(db) as sql:
            more = Outbox(sql)
            for _ in range(4):
                for endpoint in endpoints:
                    for connection in connections[::3]:
                        more.deliveries(endpoint, 1, subject=connection)
                time.sleep(0.05)

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # a deadlock or any other error fails the test below
                failures.append(exc)
                stop.set()

        return run

    threads = [threading.Thread(target=guarded(work)) for work in (sender, sender, events)]
    most_held = 0
    for thread in threads:
        thread.start()
    try:
        threads[2].join(timeout=60)
        deadline = time.monotonic() + 60
        with owner(db) as sql:
            while time.monotonic() < deadline and not stop.is_set():
                pending, held = sql.run(
                    "SELECT count(*), count(held_until) FROM webhook_deliveries WHERE status = 'pending'"
                )[0]
                most_held = max(most_held, held)
                if not pending:
                    break
                time.sleep(0.02)
            stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert failures == []
    assert most_held > 0  # the race did hold deliveries, and each was released in time
    with owner(db) as sql:
        assert sql.run("SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FROM webhook_deliveries") == [
            [0, 3 * 12 * 6 + 4 * 3 * 4]
        ]
        out_of_order = sql.run(
            "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY endpoint_id, subject_id"
            " ORDER BY delivered_at) AS before FROM webhook_deliveries) d WHERE d.before > d.seq"
        )
    assert out_of_order == [[0]]
