"""Benchmark of the bulk import (``services/imports.py``), the path of ``POST /connections/import`` and of
``python -m connvault.admin import``.

    .venv/bin/python bench/import_bench.py                  # 10,000 stored as given, 400 verified at 50 ms
    .venv/bin/python bench/import_bench.py --stored 2000 --verified 200

Two measurements, each against a floor measured in the same run:

* **Stored as given** (``verify=False``): N grants in calls of 1,000, against the floor of inserting the same
  number of rows, already sealed, with plain multi-row INSERTs of 500 (what the import does after checking,
  sealing and looking up each item). The ratio is what the checks, the sealing and the per-call lookups cost.
* **Verified** (``verify=True``): M grants the demo provider really issued, each refreshed at the provider
  (answering after ``--latency`` seconds) before it is stored, eight at a time. The floor is the ideal
  M x latency / 8. The demo provider runs in this process, so its handler threads share the GIL with the
  import: the ratio is an upper bound.

Everything is local: an embedded PostgreSQL, moto KMS, the demo provider on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=10_000, help="grants stored as given (default 10000)")
    parser.add_argument("--verified", type=int, default=400, help="grants verified at the provider (default 400)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider answer time in seconds")
    options = parser.parse_args(argv)
    if not 0 < options.verified <= 1000:
        parser.error("--verified is one import call: 1 to 1000")

    import os

    os.environ.update(LOCAL_ENV)
    from bench.database import bench_database

    with bench_database("connvault-import-bench-") as db:
        os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
        from connvault import wiring
        from connvault.migrations import migrate

        migrate(db.owner_target)
        wiring.reset()
        stored_seconds, floor_seconds = measure_stored(db, options.stored)
        print(
            f"stored as given: {options.stored:,} grants in {stored_seconds:.2f} s "
            f"({options.stored / stored_seconds:,.0f}/s); floor (sealed rows, plain INSERTs) {floor_seconds:.2f} s; "
            f"ratio {stored_seconds / floor_seconds:.2f}"
        )
        verified_seconds, ideal, calls = measure_verified(db, options.verified, options.latency)
        print(
            f"verified: {options.verified:,} grants at {options.latency * 1000:.0f} ms in {verified_seconds:.2f} s; "
            f"ideal {ideal:.2f} s; ratio {verified_seconds / ideal:.2f}; refresh calls per grant "
            f"{calls / options.verified:.4f}"
        )
    return 0


def measure_stored(db: object, count: int) -> tuple[float, float]:
    from connvault.db.connections import NewConnection, NewCredentials
    from connvault.db.uow import UnitOfWork
    from connvault.models import ConnectionKind, OAuth2Credentials
    from connvault.redacted import Redacted
    from connvault.services.grants import ImportedGrantInput, Target
    from connvault.services.imports import MAX_ITEMS, import_grants
    from demo_provider import DemoProvider
    from devserver.demo_setup import create_demo_tenant, install_demo_provider

    with DemoProvider() as demo:
        install_demo_provider(db.owner_target, demo)  # type: ignore[attr-defined]
        tenant = create_demo_tenant(demo).tenant_id
        floor_tenant = create_demo_tenant(demo, name="Floor tenant").tenant_id
        items = [
            ImportedGrantInput(Target("demo", f"user-{n:06d}"), Redacted(f"rt-{uuid.uuid4().hex}"), verify=False)
            for n in range(count)
        ]
        started = time.perf_counter()
        for start in range(0, count, MAX_ITEMS):
            results = import_grants(UnitOfWork(tenant), items[start : start + MAX_ITEMS], verify=False)
            assert all(result.status.value == "created" for result in results)
        stored = time.perf_counter() - started

        with UnitOfWork(floor_tenant) as uow:
            provider_id = uow.providers.get_by_slug("demo").id
        now = datetime.now(UTC)
        rows = [
            NewConnection(
                provider_id,
                f"user-{n:06d}",
                "",
                NewCredentials(OAuth2Credentials(None, Redacted(f"rt-{uuid.uuid4().hex}")), "Bearer", (), now),
                now,
                {},
                ConnectionKind.IMPORTED,
            )
            for n in range(count)
        ]
        with UnitOfWork(floor_tenant) as uow:
            values = [uow.connections._new_row_values(floor_tenant, row) for row in rows]
        from sqlalchemy.dialects.postgresql import insert

        from connvault.db.rows import ConnectionRow

        started = time.perf_counter()
        for start in range(0, count, 500):
            with UnitOfWork(floor_tenant) as uow:
                uow.session.execute(insert(ConnectionRow).values(values[start : start + 500]))
                uow.commit()
        floor = time.perf_counter() - started
    return stored, floor


def measure_verified(db: object, count: int, latency: float) -> tuple[float, float, int]:
    from connvault.db.uow import UnitOfWork
    from connvault.redacted import Redacted
    from connvault.services.grants import ImportedGrantInput, Target
    from connvault.services.imports import DEFAULT_CONCURRENCY, import_grants
    from demo_provider import DemoProvider
    from devserver.demo_setup import create_demo_tenant, install_demo_provider
    from tests.scheduler.support import mint_grants

    with DemoProvider() as demo:
        install_demo_provider(db.owner_target, demo)  # type: ignore[attr-defined]
        tenant = create_demo_tenant(demo, name="Verified tenant").tenant_id
        with UnitOfWork(tenant) as uow:
            catalog = uow.providers.get_by_slug("demo")
        grants = mint_grants(demo, catalog, count, register=lambda *_: None)
        demo.configure(latency_seconds=latency)
        items = [
            ImportedGrantInput(Target("demo", f"user-{n:06d}"), Redacted(tokens.refresh_token.reveal()))
            for n, tokens in enumerate(grants)
        ]
        before = demo.stats().token_calls.get("refresh_token", 0)
        started = time.perf_counter()
        results = import_grants(UnitOfWork(tenant), items)
        elapsed = time.perf_counter() - started
        assert all(result.status.value == "created" for result in results), {r.status for r in results}
        calls = demo.stats().token_calls.get("refresh_token", 0) - before
    return elapsed, count * latency / DEFAULT_CONCURRENCY, calls


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
