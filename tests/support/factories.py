"""Quick ways to make the rows a test needs, through the real code paths (services, unit of work).

Row makers take an optional ``sealer`` (default: the process's, under the session's KMS key).
Every secret made here is registered with the test's secret scanner, so a leak of any of them into a log
record fails the test. Raw-SQL helpers (``owner``, ``as_tenant``) are for setting up and checking state
the way cosmicpython's repository tests do: independently of the code under test.
"""

from __future__ import annotations

import hashlib
import secrets as random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from connvault.db.connections import NewCredentials
from connvault.db.uow import UnitOfWork
from connvault.models import OAuth2Credentials, PendingConnect
from connvault.redacted import Redacted
from connvault.services import tenants

if TYPE_CHECKING:
    import pg8000.native

    from connvault.crypto.sealer import Sealer
    from connvault.models import Connection, Integration
    from tests.support.database import TestDatabase
    from tests.support.secrets import SecretRegistry

APP_ROLE = "connvault_app"


@contextmanager
def owner(db: TestDatabase) -> Iterator[pg8000.native.Connection]:
    """A raw connection as the schema owner (RLS does not bind it), autocommitting each statement."""
    connection = db.owner_target.connect()
    try:
        yield connection
    finally:
        connection.close()


@contextmanager
def as_tenant(db: TestDatabase, tenant_id: uuid.UUID | None) -> Iterator[pg8000.native.Connection]:
    """A raw connection as the application role, inside a transaction bound to ``tenant_id`` (or to no
    tenant), rolled back at the end: what the app's sessions see, without the app's code."""
    connection = db.owner_target.connect(role=APP_ROLE)
    try:
        connection.run("BEGIN")
        if tenant_id is not None:
            connection.run("SELECT set_config('app.tenant_id', :t, true)", t=str(tenant_id))
        yield connection
    finally:
        connection.run("ROLLBACK")
        connection.close()


def make_tenant(name: str = "Acme") -> uuid.UUID:
    return tenants.create_tenant(name).id


def global_provider_id(db: TestDatabase, slug: str = "github") -> uuid.UUID:
    with owner(db) as connection:
        rows = connection.run("SELECT id FROM providers WHERE slug = :s AND tenant_id IS NULL", s=slug)
    return rows[0][0]


def make_custom_provider(db: TestDatabase, tenant_id: uuid.UUID, slug: str = "acme-crm") -> uuid.UUID:
    """A tenant's own API-key provider (inserted by the owner: there is no repository write for it yet)."""
    with owner(db) as connection:
        rows = connection.run(
            "INSERT INTO providers (tenant_id, slug, display_name, auth_type) VALUES (:t, :s, :s, 'api_key')"
            " RETURNING id",
            t=tenant_id,
            s=slug,
        )
    return rows[0][0]


def oauth_grant(
    secrets: SecretRegistry,
    *,
    refresh: bool = True,
    expires_at: datetime | None = None,
    scopes: tuple[str, ...] = ("read",),
) -> NewCredentials:
    """Fresh random OAuth tokens (registered as secrets), expiring in an hour unless told otherwise."""
    access = f"at-{random.token_urlsafe(24)}"
    refresh_token = f"rt-{random.token_urlsafe(24)}" if refresh else None
    secrets.add(access, refresh_token)
    return NewCredentials(
        credentials=OAuth2Credentials(
            access_token=Redacted(access),
            refresh_token=Redacted(refresh_token) if refresh_token else None,
        ),
        token_type="Bearer",
        scopes=scopes,
        expires_at=expires_at or datetime.now(UTC) + timedelta(hours=1),
    )


def make_connection(
    tenant_id: uuid.UUID,
    secrets: SecretRegistry,
    *,
    provider: str = "github",
    end_user_id: str = "user-1",
    alias: str = "",
    grant: NewCredentials | None = None,
    sealer: Sealer | None = None,
) -> Connection:
    """An active connection, stored through ``ConnectionRepository.add`` and committed."""
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        provider_id = uow.providers.get_by_slug(provider).id
        connection = uow.connections.add(
            tenant_id,
            provider_id,
            end_user_id=end_user_id,
            alias=alias,
            grant=grant or oauth_grant(secrets),
            granted_at=datetime.now(UTC),
            metadata={},
        )
        uow.commit()
    return connection


def make_integration(
    tenant_id: uuid.UUID, secrets: SecretRegistry, *, provider: str = "github", sealer: Sealer | None = None
) -> Integration:
    """The tenant's OAuth app for ``provider``, with a random client secret (registered)."""
    client_secret = f"cs-{random.token_urlsafe(24)}"
    secrets.add(client_secret)
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        integration = uow.integrations.save(
            tenant_id,
            uow.providers.get_by_slug(provider),
            client_id=f"client-{provider}",
            client_secret=Redacted(client_secret),
            keep_client_secret=False,
            scopes=("read",),
            allowed_return_urls=("https://app.example.com/done",),
        )
        uow.commit()
    return integration


def make_oauth_session(
    tenant_id: uuid.UUID, secrets: SecretRegistry, *, provider: str = "github", sealer: Sealer | None = None
) -> tuple[PendingConnect, bytes]:
    """A pending connect with a sealed PKCE verifier; returns it and the SHA-256 of its (random) state."""
    state, verifier = random.token_urlsafe(32), random.token_urlsafe(48)
    secrets.add(state, verifier)
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        pending = PendingConnect(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            provider_id=uow.providers.get_by_slug(provider).id,
            end_user_id="user-1",
            alias="",
            scopes=("read",),
            code_verifier=Redacted(verifier),
            return_url=None,
            expires_at=datetime.now(UTC) + timedelta(minutes=10),
        )
        state_sha256 = hashlib.sha256(state.encode()).digest()
        uow.oauth_sessions.add(pending, state_sha256)
        uow.commit()
    return pending, state_sha256
