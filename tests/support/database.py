"""The test database: an embedded PostgreSQL per test process, or the one in CONNVAULT_TEST_DATABASE_URL."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import make_url

from connvault.db.target import DatabaseTarget
from connvault.redacted import Redacted


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # a fixture value, not a test class, whatever pytest guesses from the name
    owner_target: DatabaseTarget
    app_url: str
    """URL for ``CONNVAULT_DATABASE_URL``: same login as the owner; the app engine SETs ROLE to the app role."""


def start_database(workdir: Path) -> TestDatabase:
    external = os.environ.get("CONNVAULT_TEST_DATABASE_URL")
    if external:
        return _external(external)
    import pgserver

    server = pgserver.get_server(str(workdir), cleanup_mode="stop")
    socket_dir = make_url(server.get_uri()).query["host"]
    sock = f"{socket_dir}/.s.PGSQL.5432"
    target = DatabaseTarget(user="postgres", password=None, database="postgres", unix_sock=sock)
    return TestDatabase(target, f"postgresql+pg8000://postgres@/postgres?unix_sock={sock}")


def stop_database(workdir: Path) -> None:
    """Stop the embedded server (if one was started there) and remove its files."""
    if os.environ.get("CONNVAULT_TEST_DATABASE_URL"):
        return
    import pgserver

    pgserver.get_server(str(workdir)).cleanup()
    shutil.rmtree(workdir, ignore_errors=True)


def remove_tenants(database: TestDatabase) -> None:
    """Empties the database of tenants, and so of everything they own.

    DELETE, not TRUNCATE ... CASCADE: TRUNCATE empties every table with a foreign key to tenants, wholesale,
    which would take the global provider catalog (tenant_id NULL) with it. ON DELETE CASCADE removes only
    what the tenants own, custom providers included.
    """
    connection = database.owner_target.connect()
    try:
        connection.run("DELETE FROM tenants")
    finally:
        connection.close()


def _external(url: str) -> TestDatabase:
    """A fresh database per test process on the given server, so parallel workers never share rows."""
    base = make_url(url)
    admin = DatabaseTarget(
        user=base.username or "postgres",
        password=Redacted(base.password) if base.password else None,
        database=base.database or "postgres",
        host=base.host,
        port=base.port or 5432,
    )
    name = f"connvault_test_{uuid.uuid4().hex[:12]}"
    connection = admin.connect()
    connection.run(f'CREATE DATABASE "{name}"')
    connection.close()
    target = replace(admin, database=name)
    return TestDatabase(target, base.set(drivername="postgresql+pg8000", database=name).render_as_string(False))
