"""Noisy neighbour benchmark (issue 23, item 1): does one tenant's slow provider hold back another's refreshes?

    .venv/bin/python bench/fairness_bench.py                                   # the issue's first figures
    .venv/bin/python bench/fairness_bench.py --noisy 300 --slow-providers 2 --run-seconds 60   # its second

A victim tenant has ``--victim`` due connections on a fast provider; a noisy tenant has ``--noisy`` due
connections on each of ``--slow-providers`` providers answering in ``--slow-latency`` seconds, all due sooner
than the victim's. First the victim's connections are refreshed alone (the floor), then everything is made due
again and one scheduled run of ``--run-seconds`` refreshes both tenants. The bench prints how long the victim
took alone and beside the noisy tenant, and the ratio (target: the victim is fully refreshed within the run,
at most ``RATIO_TARGET`` times slower than alone). Providers run in processes of their own
(``refresh_bench.RemoteProvider``). Measured before the fix: 40/40 alone in 0.8 s, 0/40 in a 45 s run beside
200 connections on a 3-second provider.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from refresh_bench import RemoteProvider  # noqa: E402 - bench/refresh_bench.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

RATIO_TARGET = 3.0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victim", type=int, default=40, help="the victim tenant's due connections")
    parser.add_argument("--noisy", type=int, default=200, help="the noisy tenant's due connections per slow provider")
    parser.add_argument("--slow-providers", type=int, default=1)
    parser.add_argument("--slow-latency", type=float, default=3.0, help="seconds each slow provider takes")
    parser.add_argument("--run-seconds", type=float, default=45.0, help="the scheduled run's time")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cap", type=int, default=8, help="per-provider cap")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    os.environ.update(
        {
            **LOCAL_ENV,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "CONNVAULT_REFRESH_CONCURRENCY": str(args.concurrency),
            "CONNVAULT_REFRESH_PER_PROVIDER_CONCURRENCY": str(args.cap),
            "CONNVAULT_REFRESH_DEADLINE_MARGIN_MS": "1000",
            "CONNVAULT_REFRESH_JITTER_SECONDS": "0",
            "CONNVAULT_HTTP_TIMEOUT_SECONDS": str(args.slow_latency + 2),
            "CONNVAULT_DB_POOL_SIZE": str(args.concurrency + 2),
            "CONNVAULT_DB_MAX_OVERFLOW": "4",
        }
    )
    fast = RemoteProvider()
    slow = [RemoteProvider() for _ in range(args.slow_providers)]
    try:
        return run(args, fast, slow)
    finally:
        for provider in (fast, *slow):
            provider.stop()


def run(args: argparse.Namespace, fast: RemoteProvider, slow: list[RemoteProvider]) -> int:
    import boto3
    from moto import mock_aws

    with mock_aws(), tempfile.TemporaryDirectory(prefix="connvault-fairness-") as workdir:
        os.environ["CONNVAULT_KMS_KEY_ID"] = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        from connvault import wiring
        from connvault.migrations import migrate
        from connvault.services import tenants
        from connvault.services.runner import SchedulerConfig
        from connvault.services.scheduler import refresh_due
        from tests.scheduler import support
        from tests.support.database import start_database

        database = start_database(Path(workdir))
        migrate(database.owner_target)
        os.environ["CONNVAULT_DATABASE_URL"] = database.app_url
        wiring.reset()
        owner = database.owner_target

        def due_again(seconds: int, tenant_id: Any) -> None:
            connection = owner.connect()
            try:
                connection.run(
                    "UPDATE connections SET expires_at = now() + make_interval(secs => :s), last_refresh_at = NULL"
                    " WHERE tenant_id = :t",
                    s=seconds,
                    t=tenant_id,
                )
            finally:
                connection.close()

        victim = tenants.create_tenant("victim").id
        noisy = tenants.create_tenant("noisy").id
        fast_row = support.add_global_provider(owner, fast)  # type: ignore[arg-type]
        support.add_integration(victim, fast_row, fast)  # type: ignore[arg-type]
        grants = support.mint_grants(fast, fast_row, args.victim, register=lambda *_: None)  # type: ignore[arg-type]
        support.add_connections(victim, fast_row, grants, expires_at=datetime.now(UTC) + timedelta(seconds=120))
        for index, provider in enumerate(slow):
            row = support.add_global_provider(owner, provider)  # type: ignore[arg-type]
            support.add_integration(noisy, row, provider)  # type: ignore[arg-type]
            grants = support.mint_grants(provider, row, args.noisy, register=lambda *_: None)  # type: ignore[arg-type]
            support.add_connections(
                noisy, row, grants, expires_at=datetime.now(UTC) + timedelta(seconds=60), end_user_prefix=f"n{index}"
            )
        config = SchedulerConfig.from_settings()

        # The floor: the victim alone (the noisy tenant's connections not due yet).
        due_again(3600, noisy)
        alone = timed_run(refresh_due, config, fast, args.victim, run_seconds=args.run_seconds)

        # Beside the noisy tenant, whose connections expire first.
        due_again(120, victim)
        due_again(60, noisy)
        for provider in slow:
            provider.configure(latency_seconds=args.slow_latency)
        beside = timed_run(refresh_due, config, fast, args.victim, run_seconds=args.run_seconds)
        noisy_calls = sum(provider.stats()[0].get("refresh_token", 0) for provider in slow)

        print(f"victim                 {args.victim} due on a fast provider")
        print(
            f"noisy                  {args.noisy} due on each of {args.slow_providers} provider(s) answering in "
            f"{args.slow_latency:.1f} s, due first"
        )
        print(
            f"run                    {args.run_seconds:.0f} s, {args.concurrency} threads, cap {args.cap} per provider"
        )
        print(f"victim alone           {alone.refreshed}/{args.victim} in {alone.seconds:.2f} s")
        print(
            f"victim beside noisy    {beside.refreshed}/{args.victim} in {beside.seconds:.2f} s"
            f" (ratio {beside.seconds / alone.seconds:.2f}, target <= {RATIO_TARGET})"
        )
        print(f"noisy refreshed        {noisy_calls} in the {args.run_seconds:.0f} s run (cap-bound)")
        print(f"host                   {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
        ok = beside.refreshed == args.victim and beside.seconds <= RATIO_TARGET * max(alone.seconds, 1.0)
        print("result                 " + ("PASS" if ok else "FAIL"))
        wiring.reset()
        return 0 if ok else 1


class VictimTiming:
    def __init__(self) -> None:
        self.refreshed = 0
        self.seconds = float("inf")


def timed_run(refresh_due: Any, config: Any, fast: RemoteProvider, victims: int, *, run_seconds: float) -> VictimTiming:
    """One scheduled run; how many of the victim's connections it refreshed, and when the last one was done
    (watched from the fast provider's own count)."""
    before = fast.stats()[0].get("refresh_token", 0)
    timing = VictimTiming()
    started = time.monotonic()
    ends = started + run_seconds + config.deadline_margin_ms / 1000
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            timing.refreshed = fast.stats()[0].get("refresh_token", 0) - before
            if timing.refreshed >= victims:
                timing.seconds = time.monotonic() - started
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    refresh_due(remaining_ms=lambda: int((ends - time.monotonic()) * 1000), config=config)
    done.set()
    watcher.join()
    timing.refreshed = fast.stats()[0].get("refresh_token", 0) - before
    return timing


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
