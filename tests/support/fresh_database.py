"""An empty database on the test server for one test, with the URL that points connvault's settings at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from connvault.db.target import DatabaseTarget
    from tests.support.database import TestDatabase


@dataclass(frozen=True)
class FreshDatabase:
    target: DatabaseTarget
    """The owner's login to it, for setup and checks in raw SQL."""
    url: str
    """For ``CONNVAULT_DATABASE_URL``."""

    def query(self, sql: str) -> list[list[object]]:
        connection = self.target.connect()
        try:
            return connection.run(sql)
        finally:
            connection.close()


@contextmanager
def fresh_database(database: TestDatabase, prefix: str = "connvault_fresh") -> Iterator[FreshDatabase]:
    """Created empty (no schema, no roles granted), dropped on exit even with connections still open."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = database.owner_target.connect()
    admin.run(f'CREATE DATABASE "{name}"')
    url = make_url(database.app_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield FreshDatabase(replace(database.owner_target, database=name), url)
    finally:
        admin.run(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()
