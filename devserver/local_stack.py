"""Everything the functions need around them, in this one process: PostgreSQL, KMS, the demo provider.

* PostgreSQL is an embedded server (pgserver) whose cluster lives in ``<data_dir>/postgres``. The cluster is
  kept between runs (initdb is the slow part); the ``connvault`` database in it is dropped and created
  again on every start. It has to be: KMS is moto's in-memory mock, so the data keys that sealed yesterday's
  tokens are gone, and each start gets a fresh database, catalog and demo tenant.
* KMS is moto's ``mock_aws()``: the functions run in this process, so an in-process mock covers them all.
* The demo OAuth provider listens on 127.0.0.1 and is in the catalog as ``demo``.

The process environment is the functions' environment, as the template's ``Environment`` is a deployment's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from connvault.db.target import DatabaseTarget
from connvault.redacted import Redacted
from demo_provider import DemoProvider, DemoSettings
from devserver.local_env import LOCAL_ENV

DATABASE = "connvault"
DEMO_SETTINGS = DemoSettings(extra_fields={"user": {"id": "demo-user-1", "name": "Demo User"}})
DEMO_ACCOUNT_ID_FIELDS = ("user.id",)
_QUIET = {
    "POWERTOOLS_METRICS_DISABLED": "true",  # EMF blobs on stdout are noise without CloudWatch behind them
}


class DataDirInUse(RuntimeError):
    """Another devserver holds the data directory: two would drop each other's database."""


@dataclass(frozen=True)
class Demo:
    """What the banner prints: where things are, and the demo tenant's key (a local key; printing it is the point)."""

    provider_url: str
    tenant_id: str
    api_key: Redacted[str]
    return_url: str
    pgdata: Path
    connect_url: Redacted[str]
    """A connect link offering both demo providers, valid for CONNVAULT_CONNECT_LINK_TTL_SECONDS, single use."""
    demo_api_key: str
    """A key the demo API-key provider accepts (a local demo value; printing it is the point)."""


@contextlib.contextmanager
def local_stack(data_dir: Path, *, gateway_url: str, provider_port: int) -> Iterator[Demo]:
    """Start PostgreSQL, KMS and the demo provider, point the environment at them, migrate and seed; stop all
    three on exit, however it is reached."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(data_dir / "devserver.lock"):
        _prepare_environment()
        # Imported only now: connvault's modules read the Powertools settings when they are first imported.
        from devserver.demo_setup import (
            create_demo_tenant,
            demo_connect_url,
            install_demo_api_key_provider,
            install_demo_provider,
        )

        with _postgres(data_dir / "postgres") as owner, _kms() as key_arn:
            _set_environment(owner, key_arn, gateway_url)
            _migrate(owner)
            with _demo_provider(provider_port) as provider:
                # The demo provider names the user in its token responses, as Slack or Dropbox do: the connection's
                # provider_account_id is captured from there.
                install_demo_provider(owner, provider, account_id_fields=DEMO_ACCOUNT_ID_FIELDS)
                install_demo_api_key_provider(owner, provider)
                return_url = f"{gateway_url}/demo/done"
                tenant = create_demo_tenant(provider, return_url=return_url)
                link = demo_connect_url(tenant, gateway_url, return_url)
                yield Demo(
                    provider.base_url,
                    str(tenant.tenant_id),
                    tenant.api_key,
                    return_url,
                    data_dir / "postgres",
                    link.url,
                    provider.settings.api_keys[0],
                )


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    handle: IO[str] = lock_path.open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(f"another devserver is using {lock_path.parent}; stop it or pass --data-dir") from None
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def _postgres(pgdata: Path) -> Iterator[DatabaseTarget]:
    """The embedded server, with an empty ``connvault`` database; stopped on exit."""
    import pgserver
    from sqlalchemy.engine import make_url

    _forget_dead_handles(pgdata)
    server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    try:
        socket = f"{make_url(server.get_uri()).query['host']}/.s.PGSQL.5432"
        admin = DatabaseTarget(user="postgres", password=None, database="postgres", unix_sock=socket)
        connection = admin.connect()
        try:
            connection.run(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            connection.run(f'CREATE DATABASE "{DATABASE}"')
        finally:
            connection.close()
        yield replace(admin, database=DATABASE)
    finally:
        server.cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the pids of exited processes from pgserver's list of the server's users.

    pgserver stops the server only when the last process on that list lets go; a devserver that was killed
    (SIGKILL, a crash) never took itself off, and would keep every later run from stopping PostgreSQL.
    """
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        live = [pid for pid in json.loads(handles.read_text()) if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(live))


@contextlib.contextmanager
def _kms() -> Iterator[str]:
    """moto for every AWS call in this process, and one KMS key; its ARN."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        key = boto3.client("kms", region_name=LOCAL_ENV["AWS_REGION"]).create_key(Description="connvault devserver")
        yield key["KeyMetadata"]["Arn"]


def _prepare_environment() -> None:
    """What every function's environment holds before the stack is up; the functions' logs at WARNING
    unless ``POWERTOOLS_LOG_LEVEL`` says otherwise, so the request lines stay readable."""
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(LOCAL_ENV)
    os.environ.update(_QUIET)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")


def _set_environment(owner: DatabaseTarget, key_arn: str, gateway_url: str) -> None:
    """Point the functions at this run's database, key and callback URL."""
    from connvault import wiring

    os.environ.update(
        {
            "CONNVAULT_DATABASE_URL": f"postgresql+pg8000://{owner.user}@/{owner.database}?unix_sock={owner.unix_sock}",
            "CONNVAULT_KMS_KEY_ID": key_arn,
            "CONNVAULT_CALLBACK_URL": f"{gateway_url}/oauth/callback",
        }
    )
    wiring.reset()


def _migrate(owner: DatabaseTarget) -> None:
    from connvault.migrations import migrate

    migrate(owner)


@contextlib.contextmanager
def _demo_provider(port: int) -> Iterator[DemoProvider]:
    """The demo provider on ``port``, or on a free port when that one is taken."""
    try:
        provider = DemoProvider(DEMO_SETTINGS, port=port).start()
    except OSError:
        provider = DemoProvider(DEMO_SETTINGS, port=0).start()
    try:
        yield provider
    finally:
        provider.stop()
