"""Warm token fetch through the real handler vs the floor, stage by stage, measured in the same run.

Floor: one primary-key SELECT of the sealed credentials through a prepared pg8000 statement on a warm
connection, plus one AES-GCM open of the same envelope. Then each stage of the lean route adds its part: the
read under RLS (``FastReads.read_connection``), the credentials (the envelope opened, or the credentials opened
from the same envelope before: ``sealed_credentials.OpenedCredentials``; the bench reads one envelope), the service
(``services.tokens.get_token``: freshness, last use, access log), and the whole handler
(``functions/token_fetch/app.handler``: parsing, logging context, rate limit, the JSON answer). The route as it
was (the resolver behind the shared HTTP handler) is measured alongside, and so is the handler opening the envelope
on every fetch (what keeping the opened credentials saves), and recording a use (``last_used_at``, which a
connection's first fetch each minute adds to the service's step). Rounds interleave the stages, so a busy
moment of the shared machine hits them alike. Also counts KMS calls once warm. Cold imports:
``bench/cold_start_bench.py``.

The stages are then timed again one call at a time with cold caches (``--cold-calls``, ``timing.cold_per_call_us``):
what a stage touches, not only what it runs, is what the real path pays for it.

Logging at WARNING by default, which leaves the access log out; ``--log-level INFO`` (the deployment's default)
measures with its line written for every credential handed out, to ``/dev/null``.

Run: ``.venv/bin/python bench/token_fetch_bench.py [--iterations 3000] [--log-level INFO] [--cold-calls 1000]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]
from database import backend_pids, bench_database, migrated, oauth_connection  # noqa: E402 - bench/database.py, beside this script
from timing import ROUNDS, cold_per_call_us, interleaved_per_call_us, per_call_us, pin_cpus, warm_bench_options  # noqa: E402 - bench/timing.py, beside this script

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

os.environ.update(
    LOCAL_ENV,
    POWERTOOLS_LOG_LEVEL="WARNING",
    CONNVAULT_CALLBACK_URL="http://127.0.0.1:3000/oauth/callback",
    # Limits that never refuse, so the limiter's own cost (and its shared count every N requests) is measured.
    CONNVAULT_RATE_LIMIT_PER_SECOND="1000000000",
    CONNVAULT_RATE_LIMIT_BURST="1000000000",
)


def main() -> None:
    args = warm_bench_options(__doc__, 3000, _options)
    os.environ["POWERTOOLS_LOG_LEVEL"] = args.log_level
    with bench_database() as db:
        run_bench(db, args.iterations, args.pin, args.cold_calls)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cold-calls",
        type=int,
        default=1000,
        help="calls per stage timed once each with cold caches (timing.cold_per_call_us); 0 leaves them out",
    )
    parser.add_argument(
        "--log-level",
        choices=["WARNING", "INFO"],
        default="WARNING",
        help="WARNING leaves the access log out; INFO, the deployment's default, writes its line per credential "
        "handed out (to /dev/null here)",
    )


def run_bench(db: Any, iterations: int, pin: str, cold_calls: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from connvault import wiring
    from connvault.crypto.envelope import Envelope
    from connvault.services.tokens import get_token
    from devserver.events import http_event
    from devserver.handlers import InvocationContext, load_handler

    migrated(db)
    tenant_id, connection_id = oauth_connection("bench")
    from connvault.observability import logger

    logger.registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - the log's lines, for the bench's life

    # The floor: a prepared PK read on a warm connection and one AES-GCM open of the same envelope.
    raw = db.owner_target.connect()
    floor_read = raw.prepare("SELECT credentials FROM connections WHERE id = CAST(:id AS uuid)")
    blob = floor_read.run(id=str(connection_id))[0][0]
    envelope = Envelope.from_bytes(blob)
    sealer = wiring.get_sealer()
    aead = sealer.data_keys.for_opening(tenant_id, envelope.key_id, envelope.wrapped_key)
    from connvault.crypto.envelope import SealContext
    from connvault.db.sealed_credentials import CREDENTIALS_FIELD

    aad = SealContext(tenant_id, CREDENTIALS_FIELD, connection_id).associated_data()
    assert isinstance(aead, AESGCM)

    def floor() -> None:
        sealed = Envelope.from_bytes(floor_read.run(id=str(connection_id))[0][0])
        aead.decrypt(sealed.nonce, sealed.ciphertext, aad)

    def service() -> None:
        get_token(tenant_id, connection_id)

    from connvault.api import token
    from connvault.api.app import lambda_handler, new_http_app
    from connvault.db.fast_reads import get_fast_reads
    from connvault.db.sealing import get_opened_credentials

    reads = get_fast_reads()

    def read_only() -> None:
        reads.read_connection(tenant_id, connection_id)

    def read_and_open() -> None:
        snapshot = reads.read_connection(tenant_id, connection_id)
        assert snapshot is not None
        assert snapshot.credentials is not None
        get_opened_credentials().open(sealer, tenant_id, connection_id, snapshot.credentials)

    handler = load_handler("token_fetch")
    resolver_app = new_http_app()
    token.register(resolver_app)
    resolver_handler = lambda_handler(resolver_app)
    event = http_event(
        "GET",
        f"/connections/{connection_id}/token",
        route_key="GET /connections/{connection_id}/token",
        tenant_id=str(tenant_id),
        path_parameters={"connection_id": str(connection_id)},
    )

    context = InvocationContext(function_name="bench")  # Lambda's runtime builds one per call, outside the handler
    from connvault.db.sealed_credentials import OpenedCredentials
    from connvault.services import tokens as token_service

    keeps_nothing = OpenedCredentials(max_entries=0, max_age_seconds=0)

    def opening_every_time() -> None:
        token_service.get_opened_credentials = lambda: keeps_nothing
        try:
            through_handler()
        finally:
            token_service.get_opened_credentials = get_opened_credentials

    def through_handler() -> None:
        answer = handler(event, context)
        assert answer["statusCode"] == 200

    def through_resolver() -> None:
        answer = resolver_handler(event, context)
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
    staged = {  # each adds its part to the one before: the step is printed
        "floor (prepared PK select + AES-GCM open)": floor,
        "read under RLS (FastReads.read_connection)": read_only,
        "read + credentials (opened, or kept)": read_and_open,
        "services.tokens.get_token": service,
        "functions/token_fetch handler (lean route)": through_handler,
    }

    def recording_a_use() -> None:
        reads.record_use(tenant_id, connection_id, 0)  # written every time, as on a connection's first fetch a minute

    alongside = {
        "the route as it was (resolver handler)": through_resolver,
        "the handler, opening the envelope every time": opening_every_time,
        "recording a use (a minute's first fetch)": recording_a_use,
    }
    stages = {**staged, **alongside}
    for fn in stages.values():  # warm every path (and every cache) first
        for _ in range(200):
            fn()
    placement = pin_cpus(backend_pids(db.data_dir)[1] if db.data_dir else None, pin)
    kms_calls = 0
    timings = interleaved_per_call_us(stages, iterations)
    floor_us = timings[next(iter(stages))]
    load = os.getloadavg()[0]
    print(
        f"token fetch, warm, {iterations} calls x {ROUNDS} rounds, interleaved in slices (median of slice means), "
        f"logging at {os.environ['POWERTOOLS_LOG_LEVEL']}"
    )
    print(f"  machine load (1 min) at the end: {load:.1f} on {os.cpu_count()} cores; {placement}")
    previous = 0.0
    for name, us in timings.items():
        step = f"+{us - previous:6.1f}" if previous and name in staged else "       "
        print(f"  {name:45s} {us:8.1f} us {step} us  ratio {us / floor_us:.2f}x")
        if name in staged:
            previous = us
    print(f"  KMS calls during the measured calls: {kms_calls}")
    if cold_calls:
        _print_cold(staged, timings, cold_calls)


def _print_cold(staged: dict[str, Any], warm: dict[str, float], calls: int) -> None:
    """The stages again, each call with cold caches: in a loop a stage's code and data stay cached, while on
    the real path the wait for the database leaves some of them cold, so a stage's share of the real path follows
    how much it touches more than how much it runs."""
    cold = cold_per_call_us(staged, calls)
    floor_us = cold[next(iter(staged))]
    print(f"  with cold caches ({calls} calls per stage, each after an 8 MB scan; median call):")
    previous = 0.0
    for name, us in cold.items():
        step = f"+{us - previous:6.1f}" if previous else "       "
        print(f"  {name:45s} {us:8.1f} us {step} us  ratio {us / floor_us:.2f}x  ({us / warm[name]:.1f}x warm)")
        previous = us


if __name__ == "__main__":
    main()
