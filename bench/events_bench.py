"""What the webhook outbox costs, and what the sender delivers, each against a floor measured in the same run.

1. **State changes per second, with and without the outbox.** The statement a transient refresh failure runs
   (``record_refresh_failure``'s UPDATE, as the application role in a tenant transaction, prepared, committed
   without waiting for the WAL flush, whose shared-disk latency would drown the difference):
   with the outbox triggers disabled (the floor: no outbox), enabled for a tenant without endpoints (one probe),
   and enabled with one subscribed endpoint (an event and a delivery written in the same transaction). Also a
   healthy refresh's UPDATE (status stays active), which the trigger's WHEN clause should leave at the floor.
2. **Delivery throughput** to a local receiver answering after 50 ms: N events over E endpoints through the real
   sender, against the ideal ``N x 50 ms / min(concurrency, E x per-endpoint cap)``.
3. **The token hot path is unchanged**: a warm ``get_token`` with a subscribed endpoint vs none, and no event
   written by any fetch.
4. **The claim beside a parked backlog** (``--parked 50000,150000``): the sender's claim, as it runs every 0.2-0.5 s,
   while deliveries wait behind an open circuit and a disabled endpoint, against the same claim with none parked,
   measured in the same run (an outside probe's Medium finding: 1.0 ms, 43 ms beside 50,000, 139 ms beside 150,000).

Run: ``.venv/bin/python bench/events_bench.py [--updates 2000] [--events 2000] [--endpoints 20]
[--parked 50000,150000] [--only-parked]`` (the last runs part 4 alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
from database import bench_database  # noqa: E402 - bench/database.py, beside this script
from timing import per_call_us  # noqa: E402 - bench/timing.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

os.environ.update(
    LOCAL_ENV,
    POWERTOOLS_LOG_LEVEL="ERROR",
    POWERTOOLS_METRICS_DISABLED="true",
    CONNVAULT_CALLBACK_URL="http://127.0.0.1:3000/oauth/callback",
)
TRIGGERS = ("connections_events_update", "connections_events_insert_delete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000, help="timed UPDATEs per round (5 rounds)")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--fetches", type=int, default=3000)
    parser.add_argument(
        "--parked", default="50000,150000", help="parked deliveries beside the claim, comma-separated ('' skips it)"
    )
    parser.add_argument("--only-parked", action="store_true", help="measure the claim beside a parked backlog only")
    args = parser.parse_args()
    parked = [int(n) for n in args.parked.split(",") if n.strip()]

    from connvault import wiring
    from connvault.migrations import migrate

    with bench_database() as db:
        migrate(db.owner_target)
        os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
        wiring.reset()
        print(f"load average: {os.getloadavg()} (1/5/15 min; 2 cores shared with other work)")
        if not args.only_parked:
            state_changes(db, args.updates)
            delivery_throughput(db, args.events, args.endpoints, args.latency)
            hot_path(db, args.fetches)
        if parked:
            parked_claims(db, parked)


def _connection(tenant_id: uuid.UUID, alias: str) -> uuid.UUID:
    from connvault.db.connections import NewCredentials
    from connvault.db.uow import UnitOfWork
    from connvault.models import OAuth2Credentials
    from connvault.redacted import Redacted

    with UnitOfWork(tenant_id) as uow:
        provider = uow.providers.get_by_slug("github")
        connection = uow.connections.add(
            tenant_id,
            provider.id,
            end_user_id="bench",
            alias=alias,
            grant=NewCredentials(
                OAuth2Credentials(Redacted("gho_" + "x" * 200), Redacted("ghr_" + "y" * 60)),
                token_type="Bearer",
                scopes=("repo",),
                expires_at=datetime.now(UTC) + timedelta(days=30),
            ),
            granted_at=datetime.now(UTC),
            metadata={},
        )
        uow.commit()
    return connection.id


def _endpoint(tenant_id: uuid.UUID, url: str) -> None:
    from connvault.db.uow import UnitOfWork
    from connvault.services import webhooks

    webhooks.create_endpoint(
        UnitOfWork(tenant_id), webhooks.EndpointInput(url, ["connection.refresh_failed", "connection.created"])
    )


def state_changes(db: Any, iterations: int) -> None:
    from connvault.services import tenants

    quiet = tenants.create_tenant("no endpoints").id
    subscribed = tenants.create_tenant("one endpoint").id
    _endpoint(subscribed, "https://hooks.example.com/in")
    targets = {tenant: _connection(tenant, "state") for tenant in (quiet, subscribed)}

    app = db.owner_target.connect(role="connvault_app")
    # Commits without waiting for the WAL flush: the disk's (shared, noisy) fsync latency is not what this measures.
    app.run("SET synchronous_commit = off")
    failure = app.prepare(
        "UPDATE connections SET refresh_failures = refresh_failures + 1, last_error_code = 'server_error', "
        "next_refresh_at = now() + interval '30 seconds', updated_at = now() WHERE id = CAST(:id AS uuid)"
    )
    healthy = app.prepare(
        "UPDATE connections SET status = 'active', refresh_failures = 0, last_refresh_at = now(), "
        "expires_at = now() + interval '1 hour', updated_at = now() WHERE id = CAST(:id AS uuid)"
    )
    bind = app.prepare("SELECT set_config('app.tenant_id', :t, true)")

    def change(statement: Any, tenant: uuid.UUID) -> Any:
        def run() -> None:
            app.run("BEGIN")
            bind.run(t=str(tenant))
            statement.run(id=str(targets[tenant]))
            app.run("COMMIT")

        return run

    owner = db.owner_target.connect()

    def triggers(enabled: bool) -> None:
        verb = "ENABLE" if enabled else "DISABLE"
        for name in TRIGGERS:
            owner.run(f"ALTER TABLE connections {verb} TRIGGER {name}")

    results: dict[str, float] = {}
    for _ in range(3):  # interleaved, best of three: the machine's load drifts more than these differ
        for label, statement, tenant, enabled in (
            ("failure, no outbox (floor)", failure, subscribed, False),
            ("failure, outbox, tenant without endpoints", failure, quiet, True),
            ("failure, outbox, one subscribed endpoint", failure, subscribed, True),
            ("healthy refresh, no outbox (floor)", healthy, subscribed, False),
            ("healthy refresh, outbox", healthy, subscribed, True),
        ):
            triggers(enabled)
            run = change(statement, tenant)
            for _ in range(50):
                run()
            us = per_call_us(run, iterations)
            results[label] = min(results.get(label, us), us)
    triggers(True)
    events = owner.run("SELECT count(*) FROM webhook_events")[0][0]
    # Its endpoint names no server: its deliveries must not reach the throughput run's sender.
    owner.run("DELETE FROM webhook_endpoints")
    owner.close()
    app.close()

    print(
        f"\nstate changes: one committed transaction each, {iterations} x 5 rounds (median of round means), "
        "best of three interleaved runs"
    )
    floors = {
        "failure": results["failure, no outbox (floor)"],
        "healthy": results["healthy refresh, no outbox (floor)"],
    }
    for label, us in results.items():
        floor = floors["failure" if label.startswith("failure") else "healthy"]
        print(f"  {label:45s} {us:8.1f} us  {1e6 / us:8.0f}/s  ratio {us / floor:.2f}x")
    print(f"  events written by the subscribed runs: {events}")


def delivery_throughput(db: Any, count: int, endpoints: int, latency: float) -> None:
    from connvault.oauth.http import HttpTransport
    from connvault.services import tenants
    from connvault.services.webhook_delivery import DeliveryConfig, deliver_due
    from devserver.webhook_receiver import WebhookReceiver

    config = DeliveryConfig.from_settings()
    with WebhookReceiver(delay_seconds=latency) as receiver:
        tenant = tenants.create_tenant("throughput").id
        for n in range(endpoints):
            _endpoint(tenant, f"{receiver.url}/{n}")
        owner = db.owner_target.connect()
        # Events straight into the outbox (as the trigger writes them): the bench times sending, not connecting.
        owner.run(
            "INSERT INTO webhook_events (tenant_id, type, subject_id, data) "
            "SELECT CAST(:t AS uuid), 'connection.created', gen_random_uuid(), '{}'::jsonb FROM generate_series(1, :n)",
            t=str(tenant),
            n=count // endpoints,
        )
        owner.run(
            "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id) "
            "SELECT e.tenant_id, w.id, e.id, e.subject_id FROM webhook_events e JOIN webhook_endpoints w "
            "ON w.tenant_id = e.tenant_id WHERE e.tenant_id = CAST(:t AS uuid)",
            t=str(tenant),
        )
        total = owner.run("SELECT count(*) FROM webhook_deliveries WHERE tenant_id = CAST(:t AS uuid)", t=str(tenant))
        total = total[0][0]
        transport = HttpTransport(config.deadline_seconds, maxsize=config.concurrency)
        started = time.perf_counter()
        cpu = time.process_time()
        report = deliver_due(lambda: 600_000, config=config, transport=transport)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        transport.close()
        delivered = owner.run("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")[0][0]
        owner.close()
    lanes = min(config.concurrency, endpoints * config.per_endpoint)
    ideal = total * latency / lanes
    print(
        f"\ndelivery: {total} deliveries over {endpoints} endpoints, receiver at {latency * 1000:.0f} ms, "
        f"{config.concurrency} threads, {config.per_endpoint} per endpoint"
    )
    print(
        f"  elapsed {elapsed:.2f} s, ideal {ideal:.2f} s, ratio {elapsed / ideal:.2f}x; "
        f"{total / elapsed:.0f} deliveries/s; CPU {cpu / total * 1000:.2f} ms per delivery"
    )
    print(f"  delivered {delivered} of {total} (report: {report.delivered}), receiver got {len(receiver.received)}")


def hot_path(db: Any, iterations: int) -> None:
    from connvault.services import tenants
    from connvault.services.tokens import get_token

    quiet = tenants.create_tenant("fetch, no endpoints").id
    subscribed = tenants.create_tenant("fetch, subscribed").id
    _endpoint(subscribed, "https://hooks.example.com/in")
    ids = {tenant: _connection(tenant, "fetch") for tenant in (quiet, subscribed)}
    owner = db.owner_target.connect()
    before = owner.run("SELECT count(*) FROM webhook_events")[0][0]
    timed = {}
    for tenant in (quiet, subscribed, quiet, subscribed):  # interleaved: the machine's load drifts
        for _ in range(200):
            get_token(tenant, ids[tenant])
        timed.setdefault(tenant, []).append(per_call_us(lambda t=tenant: get_token(t, ids[t]), iterations))
    after = owner.run("SELECT count(*) FROM webhook_events")[0][0]
    owner.close()
    floor, measured = min(timed[quiet]), min(timed[subscribed])
    print(f"\ntoken hot path: warm get_token, {iterations} x 5 rounds, best of two interleaved runs")
    print(f"  tenant without endpoints (floor): {floor:8.1f} us")
    print(f"  tenant with a subscribed endpoint: {measured:8.1f} us  ratio {measured / floor:.2f}x")
    print(f"  events written by {4 * (200 + 5 * iterations)} fetches: {after - before}")
    access_log_cost(ids[quiet], quiet, iterations, floor)


def parked_claims(db: Any, counts: list[int], *, claims: int = 20) -> None:
    """The claim's time beside ``counts`` deliveries parked behind an open circuit and a disabled endpoint (half
    each, due, every one its own connection), against the claim with none parked, in the same run. Another tenant
    has due deliveries on a healthy endpoint, so each claim has work to find; each claim is rolled back, so every
    one finds the same. The table is ANALYZEd after each fill, as autovacuum would."""
    from connvault.db.uow import UnitOfWork
    from connvault.services import tenants

    parked_tenant = tenants.create_tenant("parked").id
    for name in ("open-circuit", "disabled"):
        _endpoint(parked_tenant, f"https://hooks.example.com/{name}")
    live = tenants.create_tenant("live").id
    _endpoint(live, "https://hooks.example.com/live")
    owner = db.owner_target.connect()
    owner.run(
        "UPDATE webhook_endpoints SET consecutive_failures = 5, circuit_open_until = now() + interval '1 day' "
        "WHERE url LIKE '%/open-circuit'"
    )
    owner.run("UPDATE webhook_endpoints SET enabled = false WHERE url LIKE '%/disabled'")

    def fill(tenant: uuid.UUID, count: int) -> None:
        """``count`` events, each delivered to every endpoint of the tenant, straight into the outbox."""
        owner.run(
            "WITH e AS (INSERT INTO webhook_events (tenant_id, type, subject_id, data) "
            "SELECT CAST(:t AS uuid), 'connection.refresh_failed', gen_random_uuid(), '{}'::jsonb "
            "FROM generate_series(1, :n) RETURNING id, tenant_id, subject_id) "
            "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, subject_id) "
            "SELECT e.tenant_id, w.id, e.id, e.subject_id FROM e JOIN webhook_endpoints w ON w.tenant_id = e.tenant_id",
            t=str(tenant),
            n=count,
        )

    fill(live, 20)

    def claim() -> int:
        now = datetime.now(UTC)
        with UnitOfWork(None) as uow:  # rolled back: every claim finds the same
            return len(uow.webhooks.claim(now, endpoints=16, per_endpoint=4, circuit_threshold=5, until=now))

    print(f"\nclaim beside a parked backlog: {claims} x 5 rounds of one claim (16 slots), median of round means")
    parked, floor = 0, 0.0
    for count in [0, *counts]:
        if count > parked:
            fill(parked_tenant, (count - parked) // 2)
            parked = count
        owner.run("ANALYZE webhook_deliveries")
        for _ in range(5):
            claim()
        us = per_call_us(claim, claims)
        floor = floor or us
        print(f"  {parked:7,d} parked: {us / 1000:7.2f} ms  ratio {us / floor:.2f}x  (claimed {claim()})")
    owner.close()


def access_log_cost(connection_id: uuid.UUID, tenant_id: uuid.UUID, iterations: int, fetch_us: float) -> None:
    """The access log's line (which is also its metric) as a deployment writes it (INFO), to /dev/null."""
    import contextlib
    import logging

    from connvault.access_log import record_issued
    from connvault.observability import logger

    handler = logger.registered_handler
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        previous_stream, previous_level = handler.setStream(sink), logger.log_level
        logger.setLevel(logging.INFO)
        try:
            us = per_call_us(lambda: record_issued(tenant_id, connection_id, "oauth2", refreshed=False), iterations)
        finally:
            handler.setStream(previous_stream)
            logger.setLevel(previous_level)
    print(
        f"  access log line, which is the per-tenant metric (INFO): {us:6.1f} us per fetch, "
        f"{us / fetch_us:.2f}x of the warm fetch above; no database round trip"
    )


if __name__ == "__main__":
    main()
