"""Benchmark of the scheduled refresh: N due connections against loopback providers answering after 50 ms.

    .venv/bin/python bench/refresh_bench.py                      # 10,000 connections
    .venv/bin/python bench/refresh_bench.py --connections 2000   # a quick run

Everything is local and set up here: an embedded PostgreSQL (pgserver), moto KMS, and one ``DemoProvider``
per provider, each in a process of its own like a real remote service (in this process its handler
threads would compete with the scheduler for the GIL). Tokens are minted through each provider's real
authorization-code flow, so every refresh is a real rotation.

It prints the elapsed time of one ``refresh_due`` run against the ideal N x latency / concurrency measured
in the same run, as a ratio (target <= 1.5), provider refresh calls per connection (target exactly 1), and
the most refreshes in flight at each provider (never above its cap). The whole bench is bounded by
``--timeout`` seconds; the run itself gets a Lambda-like deadline inside it. Exit status 1 if a target is
missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

RATIO_TARGET = 1.5


@dataclass(frozen=True)
class Options:
    connections: int
    latency: float
    concurrency: int
    providers: int
    tenants: int
    timeout: float


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000, help="due connections (default 10000)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider answer time in seconds")
    parser.add_argument("--concurrency", type=int, default=16, help="refresh threads (default 16)")
    parser.add_argument("--providers", type=int, default=2, help="providers, each capped at concurrency/providers")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the connections are spread over")
    parser.add_argument("--timeout", type=float, default=900.0, help="hard limit for the whole bench, seconds")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.concurrency < 1 or args.providers < 1 or args.tenants < 1:
        parser.error("counts must be positive")
    return Options(args.connections, args.latency, args.concurrency, args.providers, args.tenants, args.timeout)


# -- a provider in a process of its own ------------------------------------------------------------------------


def serve_provider(commands: Connection) -> None:
    """Child process: run a DemoProvider and answer ``(command, argument)`` messages until told to stop."""
    from devserver.provider import DemoProvider

    demo = DemoProvider().start()
    commands.send(demo.base_url)
    while True:
        command, argument = commands.recv()
        if command == "configure":
            demo.configure(**argument)
            commands.send(None)
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
        from devserver.provider import DemoSettings

        self.settings = DemoSettings()

    def configure(self, **changes: Any) -> None:
        self._pipe.send(("configure", changes))
        self._pipe.recv()

    def stats(self) -> tuple[dict[str, int], int, int]:
        self._pipe.send(("stats", None))
        return self._pipe.recv()

    def stop(self) -> None:
        self._pipe.send(("stop", None))
        self._pipe.recv()
        self._process.join(5)


# -- setup ---------------------------------------------------------------------------------------------------


def configure_environment(options: Options, per_provider: int) -> None:
    """Settings for connvault, set before it is imported anywhere."""
    os.environ.update(
        {
            **LOCAL_ENV,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "CONNVAULT_REFRESH_CONCURRENCY": str(options.concurrency),
            "CONNVAULT_REFRESH_PER_PROVIDER_CONCURRENCY": str(per_provider),
            "CONNVAULT_REFRESH_DEADLINE_MARGIN_MS": "2000",
            "CONNVAULT_HTTP_TIMEOUT_SECONDS": "5",
            # One database connection per thread plus the claiming thread, so no thread waits for the pool.
            "CONNVAULT_DB_POOL_SIZE": str(options.concurrency + 2),
            "CONNVAULT_DB_MAX_OVERFLOW": "4",
        }
    )


def seed(options: Options, providers: list[RemoteProvider], owner: Any) -> tuple[list[Any], list[Any]]:
    """Catalog rows, tenants, integrations and N due connections spread over them; returns the catalog rows
    and the tenants."""
    from connvault.services import tenants
    from tests.scheduler import support

    rows = [support.add_global_provider(owner, provider) for provider in providers]  # type: ignore[arg-type]
    tenant_ids = [tenants.create_tenant(f"bench-{index}").id for index in range(options.tenants)]
    for tenant_id in tenant_ids:
        for provider, row in zip(providers, rows, strict=True):
            support.add_integration(tenant_id, row, provider)  # type: ignore[arg-type]
    soon = datetime.now(UTC) + timedelta(seconds=60)
    groups = [(t, p, r) for t in tenant_ids for p, r in zip(providers, rows, strict=True)]
    for index, (tenant_id, provider, row) in enumerate(groups):
        count = options.connections // len(groups) + (1 if index < options.connections % len(groups) else 0)
        grants = support.mint_grants(provider, row, count, register=lambda *_: None, threads=8)  # type: ignore[arg-type]
        # Expiring over the next ten minutes, all inside the 15-minute horizon: due, in no provider order.
        support.add_connections(
            tenant_id, row, grants, expires_at=soon, end_user_prefix=f"user-{index}", spread_seconds=540
        )
    return rows, tenant_ids


def main(argv: list[str]) -> int:
    options = parse(argv)
    per_provider = max(1, options.concurrency // options.providers)
    effective = min(options.concurrency, per_provider * options.providers)
    bench_started = time.monotonic()

    def out_of_time(*_: object) -> None:
        raise SystemExit(f"bench exceeded --timeout {options.timeout:.0f}s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(options.timeout))
    configure_environment(options, per_provider)
    providers = [RemoteProvider() for _ in range(options.providers)]
    try:
        return run(options, providers, per_provider, effective, bench_started)
    finally:
        for provider in providers:
            provider.stop()


def run(
    options: Options, providers: list[RemoteProvider], per_provider: int, effective: int, bench_started: float
) -> int:
    import boto3
    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory(prefix="connvault-bench-") as workdir:
        os.environ["CONNVAULT_KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        from connvault import wiring
        from connvault.migrations import migrate
        from connvault.services.runner import SchedulerConfig
        from connvault.services.scheduler import refresh_due
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
        before = [provider.stats()[0].get("refresh_token", 0) for provider in providers]

        # The run's Lambda-like deadline: whatever is left of --timeout, less a little for the report.
        ends = bench_started + options.timeout - 10

        def remaining_ms() -> int:
            return int((ends - time.monotonic()) * 1000)

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        profile = os.environ.get("BENCH_PROFILE")  # a file name: where to dump a cProfile of the run
        if profile:
            import cProfile

            with cProfile.Profile() as profiler:
                report = refresh_due(remaining_ms=remaining_ms, config=SchedulerConfig.from_settings())
            profiler.dump_stats(profile)
        else:
            report = refresh_due(remaining_ms=remaining_ms, config=SchedulerConfig.from_settings())
        elapsed = time.monotonic() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)

        stats = [provider.stats() for provider in providers]
        calls = sum(s[0].get("refresh_token", 0) for s in stats) - sum(before)
        reuse = sum(s[2] for s in stats)
        max_in_flight = [s[1] for s in stats]
        ideal = options.connections * options.latency / effective
        ratio = elapsed / ideal
        per_connection = calls / options.connections

        print(
            f"connections            {options.connections} ({options.tenants} tenants, {options.providers} providers)"
        )
        print(f"provider latency       {options.latency * 1000:.0f} ms")
        print(f"concurrency            {options.concurrency} threads, cap {per_provider} per provider")
        print(f"setup                  {setup_seconds:.1f} s (mint tokens, store connections)")
        print(f"elapsed                {elapsed:.2f} s")
        print(f"ideal                  {ideal:.2f} s (N x latency / {effective})")
        print(f"ratio                  {ratio:.3f} (target <= {RATIO_TARGET})")
        print(f"provider calls / conn  {per_connection:.4f} (target 1)")
        print(f"max in-flight          {', '.join(map(str, max_in_flight))} (cap {per_provider} each)")
        print(f"refresh-token reuse    {reuse}")
        print(
            f"scheduler cpu          {cpu:.1f} s, {cpu / options.connections * 1000:.2f} ms per refresh"
            f" ({os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; database and providers not included)"
        )
        print(
            f"run report             refreshed={report.refreshed} permanent={report.permanent_failures}"
            f" transient={report.transient_failures} skipped={report.skipped} unstarted={report.unstarted}"
            f" errors={report.errors} backlog={report.due_backlog}"
        )
        ok = ratio <= RATIO_TARGET and calls == options.connections and max(max_in_flight) <= per_provider
        ok = ok and reuse == 0 and report.refreshed == options.connections
        print("result                 " + ("PASS" if ok else "FAIL"))
        wiring.reset()
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
