"""A refresh's statements as pg8000 native prepared statements: one round trip each, no SQLAlchemy.

Through SQLAlchemy and pg8000's DB-API a scheduled refresh cost eight statements and twenty round trips (each
unnamed statement is three: parse, describe, bind and execute). Here a claimed refresh costs two, each one
round trip on a connection that prepared it once:

* ``leased``: the connection, only while the caller's lease is on it (``connvault_leased_connection``);
* ``store``: the refresh's answer, conditional on the grant, clearing the lease if still ours, answering stored,
  superseded or gone (``connvault_store_refresh``);

and a run's claims, a batch at a time, are a third (``connvault_claim_due_refreshes``). Each function sets the
tenant inside its own statement, so row-level security holds without a transaction of our own.

Connections are borrowed per statement from a small free list, not kept per thread: a run's threads end with
the run, and a warm process runs again with new ones, so connections tied to threads would pile up, one set per
invocation, until the database refused everyone. The list holds at most as many connections as statements ever
ran at once (the run's threads). A connection that saw any exception inside a statement is closed, never
returned, since its replies may be unread on the wire. Driver failures leave this module as
``DatabaseUnavailable``: retryable, and nothing above ``db/`` sees a driver's exception.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from connvault.db.connections import Claim, Lease, to_connection
from connvault.db.native import PreparedConnection, as_uuid, connect_as_app, run_reconnecting_once
from connvault.db.sealed_credentials import holds_refresh_token, seal_credentials
from connvault.errors import GrantSuperseded, NotFound
from connvault.once import once

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connections import NewCredentials
    from connvault.models import Connection

_CLAIM = (
    "SELECT id, tenant_id, provider_id, stale FROM connvault_claim_due_refreshes(:now, :horizon, :limit,"
    " CAST(:owner AS uuid), :until, :run_started, :per_tenant, CAST(:after AS uuid), CAST(:skip AS uuid[]))"
)
_LEASED = "SELECT * FROM connvault_leased_connection(CAST(:tenant AS uuid), CAST(:id AS uuid), CAST(:owner AS uuid))"
_STORE = (
    "SELECT outcome, token_version FROM connvault_store_refresh(CAST(:tenant AS uuid), CAST(:id AS uuid),"
    " CAST(:owner AS uuid), :granted_at, :credentials, :has_refresh_token, :token_type, CAST(:scopes AS text[]),"
    " :expires_at, :now, :started_at, :account_id, :account_id_bidx)"
)


@dataclass(frozen=True, slots=True)
class _Row:
    """A leased row's columns, by the names ``to_connection`` reads from a ``ConnectionRow``."""

    id: UUID
    tenant_id: UUID
    provider_id: UUID
    end_user_id: str
    alias: str
    credential_type: str
    status: str
    credentials: bytes | None
    has_refresh_token: bool
    token_type: str | None
    scopes: list[str]
    expires_at: datetime | None
    granted_at: datetime | None
    last_refresh_at: datetime | None
    last_used_at: datetime | None
    refresh_failures: int
    last_error_code: str | None
    next_refresh_at: datetime | None
    refresh_lease_until: datetime | None
    token_version: int
    refresh_started_at: datetime | None
    fault_count: int
    fault_code: str | None
    metadata_: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    provider_account_id: bytes | None
    kind: str | None
    connection_config: dict[str, str]


class RefreshStatements:
    def __init__(self, connect: Callable[[], PreparedConnection]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._idle: list[PreparedConnection] = []
        self._closed = False

    def claim(
        self,
        now: datetime,
        horizon_seconds: int,
        limit: int,
        until: datetime,
        *,
        run_started: datetime,
        per_tenant: int,
        after_tenant: UUID | None,
        skip_providers: Sequence[UUID],
    ) -> list[Claim]:
        """Lease up to ``limit`` due connections across tenants in one statement (``FOR UPDATE SKIP LOCKED``
        inside a SECURITY DEFINER function), so overlapping runs take disjoint sets.

        Fair: tenants are walked round robin from the one after ``after_tenant``, each giving at most
        ``per_tenant`` rows, and providers in ``skip_providers`` (whose queue in the run is full) give none.
        Connections refreshed since ``run_started`` are left alone (one refresh per connection per run), and so
        are those of integrations whose credentials were refused."""
        owner = uuid.uuid4()
        rows = self._run(
            _CLAIM,
            now=now,
            horizon=horizon_seconds,
            limit=limit,
            owner=str(owner),
            until=until,
            run_started=run_started,
            per_tenant=per_tenant,
            after=None if after_tenant is None else str(after_tenant),
            skip=[str(provider) for provider in skip_providers],
        )
        return [Claim(as_uuid(i), as_uuid(t), as_uuid(p), owner, now, until, stale) for i, t, p, stale in rows]

    def leased(self, claim: Claim, sealer: Sealer) -> Lease:
        """The claim's lease with the connection as it is now, its credentials opened; ``NotFound`` if the row is
        gone or the lease is no longer the claim's."""
        rows = self._run(_LEASED, tenant=str(claim.tenant_id), id=str(claim.connection_id), owner=str(claim.owner))
        if not rows:
            raise NotFound(f"connection {claim.connection_id} not found")
        (provider_id, slug, *values) = rows[0]
        row = _Row(claim.connection_id, claim.tenant_id, as_uuid(provider_id), *_times(values))
        connection = to_connection(row, slug, sealer)
        return Lease(connection, claim.owner, claim.until, claim.taken_at, stale=claim.stale)

    def store(
        self,
        lease: Lease,
        grant: NewCredentials,
        now: datetime,
        sealer: Sealer,
        *,
        account: dict[str, bytes],
    ) -> Connection:
        """``ConnectionRepository``'s store of a refresh in one round trip: the new tokens (and the account id
        columns in ``account``, when the refresh saw one), whatever the lease, only while the grant is the one
        refreshed. Raises ``GrantSuperseded`` (connected again meanwhile) or ``NotFound`` (deleted)."""
        connection = lease.connection
        [[outcome, version]] = self._run(
            _STORE,
            tenant=str(connection.tenant_id),
            id=str(connection.id),
            owner=str(lease.owner),
            granted_at=connection.granted_at,
            credentials=seal_credentials(sealer, connection.tenant_id, connection.id, grant.credentials),
            has_refresh_token=holds_refresh_token(grant.credentials),
            token_type=grant.token_type,
            scopes=list(grant.scopes),
            expires_at=grant.expires_at,
            now=now,
            started_at=lease.taken_at,
            account_id=account.get("provider_account_id"),
            account_id_bidx=account.get("provider_account_id_bidx"),
        )
        if outcome == "gone":
            raise NotFound(f"connection {connection.id} not found")
        if outcome == "superseded":
            raise GrantSuperseded(f"connection {connection.id} was connected again during its refresh")
        return lease.stored(grant, version=version, now=now)

    def close(self) -> None:
        """Close the idle connections; one borrowed now is closed when it is given back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for pooled in idle:
            pooled.close()

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        """Run a prepared statement on a borrowed connection (``run_reconnecting_once``: one that died while idle,
        a frozen Lambda, is replaced once; one that saw an error mid-statement is closed, not given back). Every
        driver failure leaves as ``DatabaseUnavailable`` (or ``DatabaseBusy``): a refresh's caller retries its store
        rather than lose a rotated token, and nothing above ``db/`` sees a driver's exception."""
        return run_reconnecting_once(self._borrow, self._give_back, sql, params, statement_errors_retryable=True)

    def _borrow(self) -> PreparedConnection:
        """An idle connection, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()  # the most recently used: warm, its statements prepared
        return self._connect()

    def _give_back(self, connection: PreparedConnection) -> None:
        """Back on the free list after a statement that succeeded; closed if this object was closed meanwhile."""
        with self._lock:
            keep = not self._closed
            if keep:
                self._idle.append(connection)
        if not keep:
            connection.close()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_COLUMNS = (8, 9, 10, 11, 14, 15, 17, 21, 22)
"""Positions, after provider id and slug, of the times the read sends as epoch microseconds: exact (a grant time
is compared for equality when storing) and far cheaper to decode than timestamptz text."""


def _times(values: list[Any]) -> list[Any]:
    """The row with its epoch-microsecond columns as datetimes, converted in place (the driver's list, read once)."""
    for index in _TIME_COLUMNS:
        value = values[index]
        if value is not None:
            values[index] = _EPOCH + timedelta(microseconds=value)
    return values


@once
def get_refresh_statements() -> RefreshStatements:
    """The process's ``RefreshStatements``, built on first use."""
    return RefreshStatements(connect_as_app)


def reset_refresh_statements() -> None:
    get_refresh_statements.cache_clear(RefreshStatements.close)
