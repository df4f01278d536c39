"""Benchmark of the scheduled refresh: N due connections against loopback providers answering after 50 ms.

    .venv/bin/python bench/refresh_bench.py                                    # 10,000 connections, one process
    .venv/bin/python bench/refresh_bench.py --connections 2000                 # a quick run
    .venv/bin/python bench/refresh_bench.py --connections 100000 --workers 4   # fan-out, simulated (issue 14.4)

Everything is local and set up here: an embedded PostgreSQL (pgserver), moto KMS (a moto server on loopback, so
worker processes reach the same keys), and one ``DemoProvider`` per provider, each in a process of its own like a
real remote service (in this process its handler threads would compete with the scheduler for the GIL). Every
token is one the provider really issued (``DemoProvider.issue_grants``), so every refresh is a real rotation.

It prints the elapsed time of the run against the ideal ``N x latency / (workers x concurrency)`` as a ratio
(target <= ``RATIO_TARGET``), the providers' latency as a client measures it (so a provider slower than its
setting shows), provider refresh calls per connection (target exactly 1), the most refreshes in flight at each
provider, the CPU and the SQL statements per refresh of the refreshing processes, and the CPU the database and
the providers spent meanwhile (all share the cores, so a run is as fast as their sum allows). ``--workers W`` runs W
scheduler processes at once against the one database, as fan-out workers would: their claims take disjoint
sets. The whole bench is bounded by ``--timeout`` seconds. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from database import backend_pids, proc_stat  # noqa: E402 - bench/database.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

RATIO_TARGET = 1.25


@dataclass(frozen=True)
class Options:
    connections: int
    latency: float
    concurrency: int
    providers: int
    tenants: int
    workers: int
    timeout: float


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000, help="due connections (default 10000)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider answer time in seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="refresh threads per process (default 16)")
    parser.add_argument("--providers", type=int, default=2, help="providers, each capped at concurrency/providers")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the connections are spread over")
    parser.add_argument("--workers", type=int, default=1, help="refreshing processes at once (fan-out, simulated)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="hard limit for the whole bench, seconds")
    args = parser.parse_args(argv)
    if min(args.connections, args.concurrency, args.providers, args.tenants, args.workers) < 1:
        parser.error("counts must be positive")
    return Options(
        args.connections, args.latency, args.concurrency, args.providers, args.tenants, args.workers, args.timeout
    )


# -- a provider in a process of its own ------------------------------------------------------------------------


def serve_provider(commands: Connection) -> None:
    """Child process: run a DemoProvider and answer ``(command, argument)`` messages until told to stop."""
    from demo_provider import DemoProvider

    demo = DemoProvider().start()
    commands.send(demo.base_url)
    while True:
        command, argument = commands.recv()
        if command == "configure":
            demo.configure(**argument)
            commands.send(None)
        elif command == "issue":
            commands.send(demo.issue_grants(argument))
        elif command == "stats":
            stats = demo.stats()
            commands.send((dict(stats.token_calls), stats.max_in_flight, stats.refresh_token_reuse))
        else:
            demo.stop()
            commands.send(None)
            return


class RemoteProvider:
    """The parent's handle on one provider process; looks enough like a DemoProvider for the setup helpers."""

    def __init__(self) -> None:
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.Process(target=serve_provider, args=(child,), daemon=True)
        self._process.start()
        self.base_url: str = self._pipe.recv()
        from demo_provider import DemoSettings

        self.settings = DemoSettings()

    def configure(self, **changes: Any) -> None:
        self._pipe.send(("configure", changes))
        self._pipe.recv()

    def issue(self, count: int) -> list[dict[str, Any]]:
        self._pipe.send(("issue", count))
        return self._pipe.recv()

    def stats(self) -> tuple[dict[str, int], int, int]:
        self._pipe.send(("stats", None))
        return self._pipe.recv()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self._process.pid or 0)

    def stop(self) -> None:
        self._pipe.send(("stop", None))
        self._pipe.recv()
        self._process.join(5)


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """CPU time a process has used (every thread), with that of the children it has reaped if asked: from
    ``/proc/<pid>/stat`` (utime, stime, cutime, cstime)."""
    fields = proc_stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds(data_dir: Path) -> float:
    """CPU time of the embedded PostgreSQL so far: the postmaster with the backends it reaped, and the live ones."""
    postmaster, children = backend_pids(data_dir)
    total = cpu_seconds(postmaster, reaped_children=True)
    for pid in children:
        with contextlib.suppress(OSError):  # a backend that ended meanwhile: the postmaster's reaped count has it
            total += cpu_seconds(pid)
    return total


def measured_latency(base_url: str, samples: int = 40) -> float:
    """The median time a client waits for the provider's token endpoint over a kept-alive connection: the
    setting plus whatever the server adds (a server with Nagle on adds the client's delayed ACK, ~40 ms)."""
    import urllib3

    http = urllib3.PoolManager(maxsize=1, retries=False)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        http.request("POST", f"{base_url}/token", fields={"grant_type": "bench_probe"}, encode_multipart=False)
        times.append(time.perf_counter() - started)
    http.clear()
    return statistics.median(times)


# -- setup ---------------------------------------------------------------------------------------------------


def configure_environment(options: Options, per_provider: int, kms_endpoint: str) -> None:
    """Settings for connvault, set before it is imported anywhere (and inherited by worker processes)."""
    os.environ.update(
        {
            **LOCAL_ENV,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "AWS_ENDPOINT_URL_KMS": kms_endpoint,
            "CONNVAULT_REFRESH_CONCURRENCY": str(options.concurrency),
            "CONNVAULT_REFRESH_PER_PROVIDER_CONCURRENCY": str(per_provider),
            "CONNVAULT_REFRESH_DEADLINE_MARGIN_MS": "2000",
            "CONNVAULT_HTTP_TIMEOUT_SECONDS": "5",
            # A database connection per thread plus the claiming thread, so no thread waits for the pool.
            "CONNVAULT_DB_POOL_SIZE": str(options.concurrency + 2),
            "CONNVAULT_DB_MAX_OVERFLOW": "4",
        }
    )


def seed(options: Options, providers: list[RemoteProvider], owner: Any) -> None:
    """Catalog rows, tenants, integrations and N due connections spread over them, each holding a grant its
    provider issued, sealed as connvault seals them, written in bulk (the repository's one-by-one insert would
    take longer than the run)."""
    from connvault import wiring
    from connvault.db.sealed_credentials import seal_credentials
    from connvault.models import OAuth2Credentials
    from connvault.redacted import Redacted
    from connvault.services import tenants
    from tests.scheduler import support

    rows = [support.add_global_provider(owner, provider) for provider in providers]  # type: ignore[arg-type]
    tenant_ids = [tenants.create_tenant(f"bench-{index}").id for index in range(options.tenants)]
    for tenant_id in tenant_ids:
        for provider, row in zip(providers, rows, strict=True):
            support.add_integration(tenant_id, row, provider)  # type: ignore[arg-type]
    sealer = wiring.get_sealer()
    groups = [(t, p, r) for t in tenant_ids for p, r in zip(providers, rows, strict=True)]
    sql = owner.connect()
    try:
        insert = sql.prepare(
            "INSERT INTO connections (id, tenant_id, provider_id, end_user_id, credential_type, status, credentials,"
            " has_refresh_token, token_type, scopes, expires_at, granted_at)"
            " VALUES (:id, :tenant, :provider, :user, 'oauth2', 'active', :credentials, true, 'Bearer',"
            " CAST(:scopes AS text[]), :expires_at, :granted_at)"
        )
        now = datetime.now(UTC)
        for index, (tenant_id, provider, row) in enumerate(groups):
            count = options.connections // len(groups) + (1 if index < options.connections % len(groups) else 0)
            sql.run("BEGIN")
            for number, document in enumerate(provider.issue(count)):
                ident = uuid.uuid4()
                credentials = OAuth2Credentials(Redacted(document["access_token"]), Redacted(document["refresh_token"]))
                # Expiring over the next ten minutes, all inside the 15-minute horizon: due, in no provider order.
                expires_at = now + timedelta(seconds=60 + (number * 7919 % 540))
                insert.run(
                    id=ident,
                    tenant=tenant_id,
                    provider=row.id,
                    user=f"user-{index}-{number}",
                    credentials=seal_credentials(sealer, tenant_id, ident, credentials),
                    scopes=["read"],
                    expires_at=expires_at,
                    granted_at=expires_at - timedelta(hours=1),
                )
            sql.run("COMMIT")
        sql.run("ANALYZE connections")
    finally:
        sql.close()


# -- the refreshing processes --------------------------------------------------------------------------------


def refresh_in_process(ends: float, results: Connection) -> None:
    """One refreshing process: a ``refresh_due`` run, then its report, CPU seconds and statement count."""
    from sqlalchemy import event

    from connvault.db import engine as engine_module
    from connvault.db.refresh_statements import RefreshStatements
    from connvault.services.runner import SchedulerConfig
    from connvault.services.scheduler import refresh_due

    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine_module.get_engine(), "before_cursor_execute", count)
    prepared_run = RefreshStatements._run

    def counted(self: Any, sql: str, **params: Any) -> Any:
        statements[0] += 1
        return prepared_run(self, sql, **params)

    RefreshStatements._run = counted  # type: ignore[method-assign]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    report = refresh_due(remaining_ms=lambda: int((ends - time.time()) * 1000), config=SchedulerConfig.from_settings())
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    results.send((report.as_dict(), cpu, statements[0]))


def run_workers(options: Options, ends: float) -> list[tuple[dict[str, Any], float, int]]:
    """``--workers`` processes refreshing at once (spawned: a fork would share this process's engine)."""
    context = multiprocessing.get_context("spawn")
    pipes = []
    processes = []
    for _ in range(options.workers):
        parent, child = context.Pipe()
        process = context.Process(target=refresh_in_process, args=(ends, child))
        process.start()
        pipes.append(parent)
        processes.append(process)
    results = [pipe.recv() for pipe in pipes]
    for process in processes:
        process.join(10)
    return results


def main(argv: list[str]) -> int:
    options = parse(argv)
    per_provider = max(1, options.concurrency // options.providers)
    effective = options.workers * min(options.concurrency, per_provider * options.providers)
    bench_started = time.monotonic()

    def out_of_time(*_: object) -> None:
        raise SystemExit(f"bench exceeded --timeout {options.timeout:.0f}s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(options.timeout))
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request lines
    kms = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    kms.start()
    host, port = kms.get_host_and_port()
    configure_environment(options, per_provider, f"http://{host}:{port}")
    providers = [RemoteProvider() for _ in range(options.providers)]
    try:
        return run(options, providers, per_provider, effective, bench_started)
    finally:
        for provider in providers:
            provider.stop()
        kms.stop()


def run(
    options: Options, providers: list[RemoteProvider], per_provider: int, effective: int, bench_started: float
) -> int:
    import boto3

    with tempfile.TemporaryDirectory(prefix="connvault-bench-") as workdir:
        os.environ["CONNVAULT_KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        from connvault import wiring
        from connvault.migrations import migrate
        from tests.support.database import start_database

        database = start_database(Path(workdir))
        migrate(database.owner_target)
        os.environ["CONNVAULT_DATABASE_URL"] = database.app_url
        wiring.reset()

        setup_started = time.monotonic()
        seed(options, providers, database.owner_target)
        setup_seconds = time.monotonic() - setup_started
        for provider in providers:
            provider.configure(latency_seconds=options.latency)
        measured = statistics.median(measured_latency(provider.base_url) for provider in providers)
        before = [provider.stats()[0].get("refresh_token", 0) for provider in providers]

        # The run's Lambda-like deadline: whatever is left of --timeout, less a little for the report.
        ends = time.time() + options.timeout - (time.monotonic() - bench_started) - 20
        database_before = database_cpu_seconds(Path(workdir))
        providers_before = sum(provider.cpu_seconds() for provider in providers)
        started = time.monotonic()
        results = run_workers(options, ends)
        elapsed = time.monotonic() - started
        database_cpu = database_cpu_seconds(Path(workdir)) - database_before
        providers_cpu = sum(provider.cpu_seconds() for provider in providers) - providers_before

        stats = [provider.stats() for provider in providers]
        calls = sum(s[0].get("refresh_token", 0) for s in stats) - sum(before)
        reuse = sum(s[2] for s in stats)
        max_in_flight = [s[1] for s in stats]
        refreshed = sum(report["refreshed"] for report, _, _ in results)
        cpu = sum(cpu for _, cpu, _ in results)
        statements = sum(count for _, _, count in results)
        ideal = options.connections * options.latency / effective
        ideal_measured = options.connections * measured / effective
        ratio = elapsed / ideal
        per_connection = calls / options.connections

        print(
            f"connections            {options.connections} ({options.tenants} tenants, {options.providers} providers)"
        )
        print(
            f"provider latency       {options.latency * 1000:.0f} ms set, {measured * 1000:.1f} ms measured by a client"
        )
        print(
            f"concurrency            {options.workers} process(es) x {options.concurrency} threads,"
            f" cap {per_provider} per provider per process"
        )
        print(f"setup                  {setup_seconds:.1f} s (issue tokens, seal and store connections)")
        print(f"elapsed                {elapsed:.2f} s")
        print(
            f"ideal                  {ideal:.2f} s (N x latency / {effective});"
            f" {ideal_measured:.2f} s at the measured latency"
        )
        print(
            f"ratio                  {ratio:.3f} (target <= {RATIO_TARGET});"
            f" {elapsed / ideal_measured:.3f} to the measured latency"
        )
        print(f"provider calls / conn  {per_connection:.4f} (target 1)")
        max_cap = per_provider * options.workers
        print(f"max in-flight          {', '.join(map(str, max_in_flight))} (cap {per_provider} each per process)")
        print(f"refresh-token reuse    {reuse}")
        print(
            f"refreshing cpu         {cpu:.1f} s, {cpu / max(refreshed, 1) * 1000:.2f} ms per refresh;"
            f" {statements / max(refreshed, 1):.2f} SQL statements per refresh"
            f" ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f})"
        )
        print(
            f"database, providers    {database_cpu:.1f} s, {providers_cpu:.1f} s of cpu:"
            f" {database_cpu / max(refreshed, 1) * 1000:.2f} ms and {providers_cpu / max(refreshed, 1) * 1000:.2f} ms"
            f" per refresh; the machine had {os.cpu_count()} x {elapsed:.1f} = {(os.cpu_count() or 1) * elapsed:.0f} s"
        )
        for index, (report, worker_cpu, _) in enumerate(results):
            print(
                f"run report {index:<11} refreshed={report['refreshed']} permanent={report['permanent_failures']}"
                f" transient={report['transient_failures']} skipped={report['skipped']}"
                f" unstarted={report['unstarted']} errors={report['errors']} backlog={report['due_backlog']}"
                f" cpu={worker_cpu:.1f}s"
            )
        ok = ratio <= RATIO_TARGET and calls == options.connections and max(max_in_flight) <= max_cap
        ok = ok and reuse == 0 and refreshed == options.connections
        print("result                 " + ("PASS" if ok else "FAIL"))
        wiring.reset()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
