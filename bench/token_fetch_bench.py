"""Warm token fetch through the real handler vs the floor, measured in the same run.

Floor: one primary-key SELECT of the sealed credentials through a prepared pg8000 statement on a warm
connection, plus one AES-GCM open of the same envelope. Measured: the same read through
``services.tokens.get_token`` (the service) and through ``functions/token_fetch/app.handler`` (service +
Powertools resolver, validation, logging, metrics). Also counts KMS calls once warm, and compares the
handler's import time with the bare imports of its libraries.

Run: ``.venv/bin/python bench/token_fetch_bench.py [--iterations 3000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
from database import bench_database  # noqa: E402 - bench/database.py, beside this script
from timing import per_call_us  # noqa: E402 - bench/timing.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

os.environ.update(
    LOCAL_ENV, POWERTOOLS_LOG_LEVEL="WARNING", CONNVAULT_CALLBACK_URL="http://127.0.0.1:3000/oauth/callback"
)


def import_seconds(code: str, env: dict[str, str]) -> float:
    """Median wall time of a fresh interpreter importing ``code``, minus an empty interpreter's."""

    def run(snippet: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", snippet], check=True, env=env, capture_output=True)
        return time.perf_counter() - started

    empty = statistics.median(run("pass") for _ in range(5))
    return statistics.median(run(code) for _ in range(5)) - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()

    with bench_database() as db:
        run_bench(db, args.iterations)


def run_bench(db: Any, iterations: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from connvault import wiring
    from connvault.crypto.envelope import Envelope
    from connvault.db.connections import NewCredentials
    from connvault.db.uow import UnitOfWork
    from connvault.migrations import migrate
    from connvault.models import OAuth2Credentials
    from connvault.redacted import Redacted
    from connvault.services import tenants
    from connvault.services.tokens import get_token
    from devserver.events import http_event
    from devserver.handlers import InvocationContext, load_handler

    migrate(db.owner_target)
    os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
    wiring.reset()
    tenant = tenants.create_tenant("bench")
    with UnitOfWork(tenant.id) as uow:
        provider = uow.providers.get_by_slug("github")
        grant = NewCredentials(
            OAuth2Credentials(Redacted("gho_" + "x" * 900), Redacted("ghr_" + "y" * 60)),
            token_type="Bearer",
            scopes=("repo",),
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        connection = uow.connections.add(
            tenant.id,
            provider.id,
            end_user_id="bench",
            alias="",
            grant=grant,
            granted_at=datetime.now(UTC),
            metadata={},
        )
        uow.commit()

    # The floor: a prepared PK read on a warm connection and one AES-GCM open of the same envelope.
    raw = db.owner_target.connect()
    floor_read = raw.prepare("SELECT credentials FROM connections WHERE id = CAST(:id AS uuid)")
    blob = floor_read.run(id=str(connection.id))[0][0]
    envelope = Envelope.from_bytes(blob)
    sealer = wiring.get_sealer()
    aead = sealer.data_keys.for_opening(tenant.id, envelope.key_id, envelope.wrapped_key)
    from connvault.crypto.envelope import SealContext
    from connvault.db.connections import CREDENTIALS_FIELD

    aad = SealContext(tenant.id, CREDENTIALS_FIELD, connection.id).associated_data()
    assert isinstance(aead, AESGCM)

    def floor() -> None:
        sealed = Envelope.from_bytes(floor_read.run(id=str(connection.id))[0][0])
        aead.decrypt(sealed.nonce, sealed.ciphertext, aad)

    def service() -> None:
        get_token(tenant.id, connection.id)

    from connvault.db.fast_reads import get_fast_reads

    reads = get_fast_reads()

    def read_only() -> None:
        reads.read_connection(tenant.id, connection.id)

    handler = load_handler("token_fetch")
    event = http_event(
        "GET",
        f"/connections/{connection.id}/token",
        route_key="GET /connections/{connection_id}/token",
        tenant_id=str(tenant.id),
        path_parameters={"connection_id": str(connection.id)},
    )

    def through_handler() -> None:
        answer = handler(event, InvocationContext(function_name="bench"))
        assert answer["statusCode"] == 200

    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        target = through_handler if os.environ["BENCH_PROFILE"] == "handler" else service
        for _ in range(200):
            target()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(2000):
            target()
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(40)
        print(f"read only: {per_call_us(read_only, 2000):.1f} us")
        return

    kms_calls = 0

    def count(**_kwargs: Any) -> None:
        nonlocal kms_calls
        kms_calls += 1

    wiring.get_kms_client().meta.events.register("before-call.kms.*", count)
    for fn in (floor, service, through_handler):  # warm every path (and every cache) first
        for _ in range(200):
            fn()
    kms_calls = 0
    floor_us = per_call_us(floor, iterations)
    service_us = per_call_us(service, iterations)
    handler_us = per_call_us(through_handler, iterations)
    warm_kms = kms_calls

    print(f"token fetch, warm, {iterations} calls x 5 rounds (median of round means)")
    print(f"  floor (prepared PK select + AES-GCM open): {floor_us:8.1f} us")
    print(f"  services.tokens.get_token:                 {service_us:8.1f} us  ratio {service_us / floor_us:.2f}x")
    print(f"  functions/token_fetch handler:             {handler_us:8.1f} us  ratio {handler_us / floor_us:.2f}x")
    print(f"  KMS calls during the measured calls:       {warm_kms}")

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions' / 'token_fetch'}:{ROOT / 'layers' / 'common'}"}
    bare = import_seconds(
        "import boto3, sqlalchemy.orm, pg8000.native, cryptography.hazmat.primitives.ciphers.aead, pydantic, "
        "aws_lambda_powertools.event_handler",
        env,
    )
    handler_import = import_seconds("import app", env)
    print(
        f"import: handler module {handler_import * 1000:.0f} ms vs its libraries alone {bare * 1000:.0f} ms "
        f"(ratio {handler_import / bare:.2f}x)"
    )


if __name__ == "__main__":
    main()
