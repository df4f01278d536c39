"""The proxy's added latency over calling the same local upstream directly, and the warm token fetch beside it.

Upstream: the demo provider's ``GET /api/me`` on 127.0.0.1 (TCP_NODELAY), answering at once and then after 50 ms.
Direct: a keep-alive urllib3 pool calling it with the token in ``Authorization``. Proxy: ``functions/proxy``'s
handler, in process, given the API Gateway event for ``/connections/{id}/proxy/me`` (the fast read, the AES-GCM
open, the path and header rules, the egress-guarded transport, the answer in base64). Calls alternate direct,
proxy, direct, proxy..., so both sample the same moment of a noisy machine. Token fetch: ``functions/token_fetch``'s
handler and ``services.tokens.get_token``, warm, measured in the same run.

Printed per upstream latency: p50 and p99 of each, the overhead (proxy minus direct, at p50 and p99, and the
median of the per-pair differences) and the ratio proxy/direct; then the target, p50 overhead within 1.5x the warm
token fetch. The functions' EMF metrics are written as in Lambda, to a stdout that goes to /dev/null here.

Run: ``.venv/bin/python bench/proxy_bench.py [--calls 3000] [--slow-calls 3000]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from devserver.local_env import LOCAL_ENV  # noqa: E402 - after the path is set

os.environ.update(
    LOCAL_ENV,
    POWERTOOLS_LOG_LEVEL="WARNING",
    CONNVAULT_CALLBACK_URL="http://127.0.0.1:3000/oauth/callback",
    CONNVAULT_ALLOW_INSECURE_LOOPBACK_URLS="true",
)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="pairs of calls with the upstream answering at once")
    parser.add_argument("--slow-calls", type=int, default=3000, help="pairs of calls with the upstream at 50 ms")
    args = parser.parse_args()

    import boto3
    from moto import mock_aws

    from tests.support.database import start_database, stop_database

    workdir = Path(tempfile.mkdtemp(prefix="connvault-bench-"))
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        os.environ["CONNVAULT_KMS_KEY_ID"] = kms.create_key()["KeyMetadata"]["Arn"]
        db = start_database(workdir)
        try:
            run_bench(db, args.calls, args.slow_calls)
        finally:
            stop_database(workdir)


def run_bench(db: Any, calls: int, slow_calls: int) -> None:
    import urllib3

    from connvault import wiring
    from connvault.db.connections import NewCredentials
    from connvault.db.uow import UnitOfWork
    from connvault.migrations import migrate
    from connvault.models import OAuth2Credentials
    from connvault.redacted import Redacted
    from connvault.services.tokens import get_token
    from demo_provider import DemoProvider
    from devserver.demo_setup import create_demo_tenant, install_demo_provider
    from devserver.events import http_event
    from devserver.handlers import InvocationContext, load_handler

    migrate(db.owner_target)
    os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
    wiring.reset()
    provider = DemoProvider().start()
    try:
        install_demo_provider(db.owner_target, provider)
        tenant = create_demo_tenant(provider).tenant_id
        token = "at_bench_" + "x" * 40
        provider.add_api_key(token)  # the demo API takes it as a bearer token, as it takes its own tokens
        with UnitOfWork(tenant) as uow:
            connection = uow.connections.add(
                tenant,
                uow.providers.get_by_slug("demo").id,
                end_user_id="bench",
                alias="",
                grant=NewCredentials(
                    OAuth2Credentials(Redacted(token), Redacted("rt_bench")),
                    token_type="Bearer",
                    scopes=("read",),
                    expires_at=datetime.now(UTC) + timedelta(days=30),
                ),
                granted_at=datetime.now(UTC),
                metadata={},
            ).id
            uow.commit()

        def event(path: str, route_key: str) -> dict[str, Any]:
            return http_event("GET", path, route_key=route_key, tenant_id=str(tenant))

        proxy_handler, fetch_handler = load_handler("proxy"), load_handler("token_fetch")
        proxy_event = event(f"/connections/{connection}/proxy/me", "ANY /connections/{connection_id}/proxy/{path+}")
        fetch_event = event(f"/connections/{connection}/token", "GET /connections/{connection_id}/token")
        http = urllib3.PoolManager(maxsize=1, retries=False)
        direct_url, auth = f"{provider.base_url}/api/me", {"Authorization": f"Bearer {token}"}

        def direct() -> None:
            assert http.request("GET", direct_url, headers=auth).status == 200

        def proxied() -> None:
            assert proxy_handler(proxy_event, InvocationContext(function_name="bench"))["statusCode"] == 200

        def fetch_handler_call() -> None:
            assert fetch_handler(fetch_event, InvocationContext(function_name="bench"))["statusCode"] == 200

        def fetch_service() -> None:
            get_token(tenant, connection)

        out = sys.stdout
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for fn in (direct, proxied, fetch_handler_call, fetch_service):
                for _ in range(300):  # warm every pool and cache
                    fn()
            fetch_us = [timed(fetch_handler_call) for _ in range(calls)]
            service_us = [timed(fetch_service) for _ in range(calls)]
            fetch_p50, service_p50 = percentile(fetch_us, 0.5), percentile(service_us, 0.5)
            print(f"proxy bench on {os.cpu_count()} CPUs; upstream GET /api/me on 127.0.0.1", file=out)
            print(
                f"warm token fetch, {calls} calls: handler p50 {fetch_p50:7.0f} us, service p50 {service_p50:7.0f} us",
                file=out,
            )
            results = []
            for latency, pairs in ((0.0, calls), (0.05, slow_calls)):
                provider.configure(api_latency_seconds=latency)
                for _ in range(20):
                    direct(), proxied()
                direct_us, proxy_us = [], []
                for _ in range(pairs):
                    direct_us.append(timed(direct))
                    proxy_us.append(timed(proxied))
                results.append(report(latency, direct_us, proxy_us, out))
        overhead = results[0]
        print(
            f"target: p50 overhead at 0 ms {overhead:.0f} us <= 1.5 x warm token fetch (handler) "
            f"{1.5 * fetch_p50:.0f} us: {'met' if overhead <= 1.5 * fetch_p50 else 'NOT met'} "
            f"({overhead / fetch_p50:.2f}x the handler, {overhead / service_p50:.2f}x the service)"
        )
    finally:
        provider.stop()


def report(latency: float, direct_us: list[float], proxy_us: list[float], out: TextIO) -> float:
    """Print one upstream latency's figures to ``out``; return the p50 overhead in microseconds."""
    d50, d99 = percentile(direct_us, 0.5), percentile(direct_us, 0.99)
    p50, p99 = percentile(proxy_us, 0.5), percentile(proxy_us, 0.99)
    paired = statistics.median(p - d for p, d in zip(proxy_us, direct_us, strict=True))
    print(f"upstream at {latency * 1000:.0f} ms, {len(direct_us)} pairs:", file=out)
    print(f"  direct  p50 {d50:9.0f} us   p99 {d99:9.0f} us", file=out)
    print(f"  proxy   p50 {p50:9.0f} us   p99 {p99:9.0f} us", file=out)
    print(
        f"  overhead p50 {p50 - d50:8.0f} us   p99 {p99 - d99:8.0f} us   median per pair {paired:8.0f} us   "
        f"ratio p50 {p50 / d50:.2f}x  p99 {p99 / d99:.2f}x",
        file=out,
    )
    return p50 - d50


if __name__ == "__main__":
    main()
