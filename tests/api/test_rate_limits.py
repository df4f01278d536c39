"""Per-tenant request rate limits (issue 23.9): a tenant over its rate gets 429 ``rate_limited`` with
``Retry-After``, and no other tenant notices. Each process's token bucket decides in memory; the shared count in
PostgreSQL (written every N requests) bounds a tenant across processes. Against the real database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from connvault.config import Settings
from connvault.db.fast_reads import FastReads, get_fast_reads
from connvault.db.uow import UnitOfWork
from connvault.errors import ConfigurationError, DatabaseUnavailable, RateLimited
from connvault.services.rate_limits import WINDOW_SECONDS, RateLimiter
from connvault.services.tenants import create_api_key, delete_tenant
from connvault.services.tokens import get_token
from tests.api.conftest import connect_account
from tests.support.factories import as_tenant, make_tenant, owner

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from tests.api.conftest import Api
    from tests.support.database import TestDatabase


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FrozenClock, *, per_second: float, burst: int, share_every: int) -> RateLimiter:
    """A process's limiter over the real shared count (the app role's prepared statement)."""
    return RateLimiter(
        per_second=per_second,
        burst=burst,
        share_every=share_every,
        share=lambda tenant, added, window: get_fast_reads().count_requests(tenant, added, window),
        clock=clock,
    )


def admitted(limiter: RateLimiter, tenant: UUID, times: int) -> int:
    count = 0
    for _ in range(times):
        try:
            limiter.admit(tenant)
        except RateLimited:
            continue
        count += 1
    return count


def shared_count(db: TestDatabase, tenant: UUID) -> int:
    with owner(db) as sql:
        rows = sql.run("SELECT requests FROM tenant_request_counts WHERE tenant_id = :t", t=tenant)
    return rows[0][0] if rows else 0


def test_a_tenant_over_its_rate_gets_429_with_retry_after_and_another_tenant_is_served(
    api: Api, db: TestDatabase, reconfigure: Callable[..., None]
) -> None:
    reconfigure(rate_limit_per_second=0.5, rate_limit_burst=3)
    other = make_tenant("Other")
    other_key = create_api_key(UnitOfWork(other)).plaintext.reveal()
    api.secrets.add(other_key)

    served = [api.call("GET", "/providers").status for _ in range(3)]
    refused = api.call("GET", "/providers")
    token_refused = api.call("GET", "/connections/00000000-0000-4000-8000-000000000000/token")

    assert served == [200, 200, 200]
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "2"  # the next token, at half a request a second
    assert refused.headers["Cache-Control"] == "no-store"
    assert token_refused.status == 429  # the token function answers it the same way, before any read
    assert api.call("GET", "/providers", key=other_key).status == 200


def test_processes_share_a_tenants_count_so_together_they_stay_near_its_allowance(db: TestDatabase) -> None:
    # Given three processes, each of whose buckets alone would admit its whole burst
    tenant, bystander = make_tenant("Busy"), make_tenant("Bystander")
    clock = FrozenClock()
    processes = [limiter(clock, per_second=1, burst=12, share_every=4) for _ in range(3)]
    allowance = WINDOW_SECONDS * 1 + 12

    # When the tenant sends to all of them in turn
    total = sum(admitted(process, tenant, 1) for _ in range(12) for process in processes)

    # Then together they admitted the window's allowance, give or take the reports not yet made (under 4 each)
    assert allowance <= total < allowance + 3 * 4
    assert shared_count(db, tenant) >= allowance
    with pytest.raises(RateLimited) as refused:
        processes[0].admit(tenant)
    assert 1 <= refused.value.retry_after <= WINDOW_SECONDS
    # And the same processes still serve another tenant
    assert all(admitted(process, bystander, 4) == 4 for process in processes)


def test_a_process_refuses_from_its_own_bucket_without_a_statement(db: TestDatabase) -> None:
    tenant = make_tenant()
    clock = FrozenClock()
    process = limiter(clock, per_second=2, burst=5, share_every=100)

    assert admitted(process, tenant, 8) == 5
    clock.now += 1.0  # two requests' worth of refill
    assert admitted(process, tenant, 8) == 2
    assert shared_count(db, tenant) == 0  # fewer than share_every: nothing written yet


def test_work_one_request_fans_out_into_is_admitted_up_to_the_tenants_room(db: TestDatabase) -> None:
    tenant = make_tenant()
    clock = FrozenClock()
    process = limiter(clock, per_second=2, burst=5, share_every=100)

    first = process.admit_up_to(tenant, 3)
    second = process.admit_up_to(tenant, 4)

    assert first.requests == 3
    assert second.requests == 2  # what the bucket had left
    assert second.retry_after == 1  # the next one in half a second, at two a second: Retry-After's whole second
    assert admitted(process, tenant, 1) == 0
    clock.now += 1.0
    assert process.admit_up_to(tenant, 10).requests == 2


def test_work_admitted_at_once_is_shared_first_and_stays_within_the_windows_allowance(db: TestDatabase) -> None:
    # Given two processes, each of whose buckets alone would admit a whole burst
    tenant = make_tenant()
    clock = FrozenClock()
    processes = [limiter(clock, per_second=1, burst=12, share_every=4) for _ in range(2)]
    allowance = WINDOW_SECONDS * 1 + 12

    # When each is asked for a burst's worth at once
    answers = [process.admit_up_to(tenant, 12) for process in processes]

    # Then the second learns the shared count before admitting, and admits only what fits in the window
    assert [answer.requests for answer in answers] == [12, allowance - 12]
    assert 1 <= answers[1].retry_after <= WINDOW_SECONDS
    assert shared_count(db, tenant) == 24
    assert processes[1].admit_up_to(tenant, 1).requests == 0


def test_a_new_window_starts_the_count_again(db: TestDatabase) -> None:
    tenant = make_tenant()
    get_fast_reads().count_requests(tenant, 40, WINDOW_SECONDS)
    with owner(db) as sql:
        sql.run(
            "UPDATE tenant_request_counts SET window_start = window_start - make_interval(secs => :w) "
            "WHERE tenant_id = :t",
            w=WINDOW_SECONDS,
            t=tenant,
        )

    window = get_fast_reads().count_requests(tenant, 3, WINDOW_SECONDS)

    assert window.requests == 3
    assert 0 < window.seconds_left <= WINDOW_SECONDS


def test_the_count_is_the_tenants_own_under_rls_and_nothing_for_a_deleted_tenant(db: TestDatabase) -> None:
    tenant, other = make_tenant("A"), make_tenant("B")
    get_fast_reads().count_requests(tenant, 5, WINDOW_SECONDS)

    with as_tenant(db, other) as sql:
        assert sql.run("SELECT count(*) FROM tenant_request_counts")[0][0] == 0
    with as_tenant(db, tenant) as sql:
        assert sql.run("SELECT requests FROM tenant_request_counts")[0][0] == 5
    delete_tenant(UnitOfWork(tenant))
    assert get_fast_reads().count_requests(tenant, 5, WINDOW_SECONDS).requests == 0
    assert shared_count(db, tenant) == 0


def test_without_the_database_a_process_goes_on_with_its_own_bucket(db: TestDatabase) -> None:
    def unreachable() -> None:
        raise ConnectionRefusedError("no database")

    tenant = make_tenant()
    process = RateLimiter(
        per_second=1,
        burst=3,
        share_every=1,
        share=FastReads(unreachable).count_requests,  # type: ignore[arg-type]
        clock=FrozenClock(),
    )

    assert admitted(process, tenant, 5) == 3


@pytest.mark.parametrize(
    "setting", [{"rate_limit_per_second": -1.0}, {"rate_limit_burst": 0}, {"rate_limit_share_every": 0}]
)
def test_rate_limit_settings_out_of_range_are_refused(setting: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**setting)  # type: ignore[arg-type]


def test_a_rate_of_zero_turns_limiting_off(db: TestDatabase) -> None:
    process = limiter(FrozenClock(), per_second=0, burst=1, share_every=1)

    assert admitted(process, make_tenant(), 50) == 50


def test_the_shared_count_skips_the_write_ahead_log(db: TestDatabase) -> None:
    """A report is on the warm path every N requests: it must not wait for a WAL flush (migration 0013)."""
    with owner(db) as sql:
        [[persistence]] = sql.run("SELECT relpersistence FROM pg_class WHERE relname = 'tenant_request_counts'")

    assert persistence == "u"


def counting_statements(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each separate report of the shared count (``FastReads.count_requests``), by its number of requests."""
    reports: list[int] = []
    original = FastReads.count_requests

    def spy(self: FastReads, tenant: UUID, added: int, window: int) -> Any:
        reports.append(added)
        return original(self, tenant, added, window)

    monkeypatch.setattr(FastReads, "count_requests", spy)
    return reports


def test_the_token_route_carries_the_shared_count_in_its_read(
    api: Api, db: TestDatabase, reconfigure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0086: every N-th fetch adds the tenant's requests in the token read's own statement, with no
    round trip of its own; past the window's allowance the next request is refused (the carrying one is served)."""
    connection_id = connect_account(api)
    reconfigure(rate_limit_per_second=0.1, rate_limit_burst=4, rate_limit_share_every=2)  # allowance 1 x 10 + 4 = 5
    reports = counting_statements(monkeypatch)
    fetch = f"/connections/{connection_id}/token"

    first = [api.call("GET", fetch).status for _ in range(2)]
    assert shared_count(db, api.tenant.tenant_id) == 2
    with owner(db) as sql:  # another process's reports fill the window
        sql.run("UPDATE tenant_request_counts SET requests = requests + 3 WHERE tenant_id = :t", t=api.tenant.tenant_id)
    carrying = [api.call("GET", fetch).status for _ in range(2)]  # the second carries the count: 7 > 5
    refused = api.call("GET", fetch)

    assert first == [200, 200]
    assert carrying == [200, 200]
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    assert shared_count(db, api.tenant.tenant_id) == 7
    assert reports == []  # no statement of its own


def test_a_carried_count_is_written_for_a_connection_not_found_and_a_request_that_never_reads(
    api: Api, db: TestDatabase, reconfigure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking for ids the tenant does not hold, or sending requests the route refuses before its read, must count
    like any other requests, or a tenant could spend the allowance of every process unseen."""
    reconfigure(rate_limit_per_second=0.1, rate_limit_burst=100, rate_limit_share_every=2)
    reports = counting_statements(monkeypatch)

    unknown = [api.call("GET", f"/connections/{uuid4()}/token").status for _ in range(2)]
    assert shared_count(db, api.tenant.tenant_id) == 2
    assert reports == []  # carried by the read, which found no connection
    invalid = [api.call("GET", "/connections/not-an-id/token").status for _ in range(2)]

    assert unknown == [404, 404]
    assert invalid == [400, 400]
    assert shared_count(db, api.tenant.tenant_id) == 4
    assert reports == [2]  # no read to carry it: reported on its own


def test_a_carried_count_whose_read_failed_is_kept_for_the_next_report(db: TestDatabase) -> None:
    tenant = make_tenant()
    clock = FrozenClock()
    process = limiter(clock, per_second=1, burst=10, share_every=2)
    process.admit(tenant)
    count = process.admit(tenant, carry=True)
    assert count is not None
    assert count.requests == 2

    def unreachable() -> None:
        raise ConnectionRefusedError("no database")

    with pytest.raises(DatabaseUnavailable):
        get_token(tenant, uuid4(), reads=FastReads(unreachable), count=count)  # type: ignore[arg-type]
    process._share = FastReads(unreachable).count_requests  # type: ignore[assignment] # reporting fails as well
    assert process.settle(count) is None
    process._share = lambda tenant, added, window: get_fast_reads().count_requests(tenant, added, window)

    assert shared_count(db, tenant) == 0
    assert process.admit(tenant) is None  # 2 kept + 1: due, and reported now
    assert shared_count(db, tenant) == 3
