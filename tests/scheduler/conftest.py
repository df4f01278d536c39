"""Fixtures for the refresh scheduler: demo providers in the catalog, tenants with integrations, and
connections holding tokens the demo really issued, created with a chosen expiry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connvault.db.uow import UnitOfWork
from connvault.models import Connection, Provider
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.services.refresh import RefreshPolicy
from connvault.services.runner import SchedulerConfig
from demo_provider import DemoProvider, DemoSettings
from tests.scheduler import support
from tests.support.database import TestDatabase
from tests.support.factories import make_tenant, owner
from tests.support.secrets import SecretRegistry

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
EVENTS = Path(__file__).resolve().parents[2] / "events"

FAST = SchedulerConfig(
    horizon_seconds=900,
    batch_size=20,
    concurrency=4,
    per_provider_concurrency=4,
    lease_seconds=30,
    deadline_margin_ms=1_000,
    jitter_seconds=0.0,
    http_timeout_seconds=2.0,
)
"""A run sized for tests: small pool, no jitter, a one-second deadline margin."""

POLICY = RefreshPolicy(lease_seconds=30, wait_seconds=5.0, max_failures=3, backoff_base_seconds=30)


def forever() -> int:
    """``remaining_ms`` of a Lambda that has all the time in the world."""
    return 600_000


@dataclass
class Site:
    """One demo provider in the catalog, a tenant with an integration for it, and a way to add connections."""

    demo: DemoProvider
    provider: Provider
    tenant_id: uuid.UUID
    secrets: SecretRegistry
    made: int = field(default=0)

    def connect(
        self,
        count: int = 1,
        *,
        expires_in: timedelta | None = timedelta(minutes=5),
        tenant_id: uuid.UUID | None = None,
        mint_threads: int = 4,
    ) -> list[uuid.UUID]:
        """``count`` active connections expiring ``expires_in`` from now (None: never). Minting runs
        ``mint_threads`` code exchanges at once, which the demo's ``max_in_flight`` sees too."""
        grants = support.mint_grants(self.demo, self.provider, count, register=self.secrets.add, threads=mint_threads)
        expires_at = None if expires_in is None else datetime.now(UTC) + expires_in
        ids = support.add_connections(
            tenant_id or self.tenant_id,
            self.provider,
            grants,
            expires_at=expires_at,
            end_user_prefix=f"user-{self.made}",
        )
        self.made += 1
        return ids

    def refresh_calls(self) -> int:
        return self.demo.stats().token_calls.get("refresh_token", 0)


@pytest.fixture
def oauth() -> Iterator[OAuthClient]:
    transport = HttpTransport(FAST.http_timeout_seconds, maxsize=8)
    yield OAuthClient(transport)
    transport.close()


@pytest.fixture
def make_site(db: TestDatabase, secrets: SecretRegistry) -> Iterator[Callable[..., Site]]:
    """Start a demo provider, put it in the catalog, and give a fresh tenant an integration for it."""
    started: list[tuple[DemoProvider, Provider]] = []

    def make(*, max_concurrent_refreshes: int | None = None, **demo_settings: Any) -> Site:
        demo = DemoProvider(DemoSettings(**demo_settings)).start()
        provider = support.add_global_provider(db.owner_target, demo, max_concurrent_refreshes=max_concurrent_refreshes)
        started.append((demo, provider))
        secrets.add(demo.settings.client_secret)
        tenant_id = make_tenant()
        support.add_integration(tenant_id, provider, demo)
        return Site(demo, provider, tenant_id, secrets)

    yield make
    for demo, provider in started:
        support.register_issued(demo, secrets.add)
        demo.stop()
        support.remove_provider(db.owner_target, provider.id)


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


def load(tenant_id: uuid.UUID, connection_id: uuid.UUID) -> Connection:
    with UnitOfWork(tenant_id) as uow:
        return uow.connections.get(connection_id)


def set_columns(db: TestDatabase, connection_id: uuid.UUID, **values: Any) -> None:
    """Put a connection into a state the code under test would take long to reach (as the owner, raw SQL)."""
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    with owner(db) as connection:
        connection.run(f"UPDATE connections SET {assignments} WHERE id = :id", id=connection_id, **values)


def held_leases(db: TestDatabase) -> int:
    with owner(db) as connection:
        return connection.run("SELECT count(*) FROM connections WHERE refresh_lease_owner IS NOT NULL")[0][0]
