"""The local stack every benchmark runs on: an embedded PostgreSQL and moto KMS with one key, set in the
environment the way the tests set it. Removed again when the block ends."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class BenchDatabase:
    """The running database as the tests know it (``owner_target``, ``app_url``), and where its files are (None
    for an external server, ``CONNVAULT_TEST_DATABASE_URL``): the benches read its processes' CPU and pin them."""

    owner_target: Any
    app_url: str
    data_dir: Path | None


def proc_stat(pid: int) -> list[str]:
    """A process's ``/proc/<pid>/stat`` fields after its name (which may hold spaces): state, ppid, … (index 0 is
    field 3 of proc(5))."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def backend_pids(data_dir: Path) -> tuple[int, list[int]]:
    """The embedded server's postmaster and the processes it started (backends, and its own helpers)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(proc_stat(int(entry.name))[1]) == postmaster:
                    children.append(int(entry.name))
            except (OSError, ValueError):
                continue  # a process that ended meanwhile
    return postmaster, children


@contextlib.contextmanager
def bench_database(prefix: str = "connvault-bench-") -> Iterator[BenchDatabase]:
    """The running database, with ``CONNVAULT_KMS_KEY_ID`` set."""
    import boto3
    from moto import mock_aws

    from tests.support.database import start_database, stop_database

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        os.environ["CONNVAULT_KMS_KEY_ID"] = kms.create_key()["KeyMetadata"]["Arn"]
        db = start_database(workdir)
        external = bool(os.environ.get("CONNVAULT_TEST_DATABASE_URL"))
        try:
            yield BenchDatabase(db.owner_target, db.app_url, None if external else workdir)
        finally:
            stop_database(workdir)


def migrated(db: Any) -> None:
    """Migrate the bench database and point connvault at it as the app role."""
    from connvault import wiring
    from connvault.migrations import migrate

    migrate(db.owner_target)
    os.environ["CONNVAULT_DATABASE_URL"] = db.app_url
    wiring.reset()


def oauth_connection(tenant_name: str) -> tuple[UUID, UUID]:
    """A new tenant with one GitHub connection holding a 900-character access token good for 30 days: its ids."""
    from connvault.db.connections import NewCredentials
    from connvault.db.uow import UnitOfWork
    from connvault.models import OAuth2Credentials
    from connvault.redacted import Redacted
    from connvault.services import tenants

    tenant = tenants.create_tenant(tenant_name)
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
    return tenant.id, connection.id
