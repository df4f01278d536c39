"""Connections: the only place that reads or writes the ``connections`` table.

Credentials are sealed here and opened here; no caller ever sees an envelope. List queries leave the
credentials sealed (``credentials=None``): listing never needs a secret, and every open is a chance to leak.
The provider's account id is sealed too, with a blind index beside it (``db.blind_index``) to find it by.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import case, delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from connvault.crypto.envelope import SealContext
from connvault.db.rows import ConnectionRow, ProviderRow
from connvault.errors import Conflict, DecryptionFailed, GrantSuperseded, InvalidInput, KeyServiceUnavailable, NotFound
from connvault.models import (
    AuthType,
    Connection,
    ConnectionStatus,
    Credentials,
    OAuth2Credentials,
    credentials_from_bytes,
    credentials_to_bytes,
)
from connvault.observability import logger
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.db.blind_index import BlindIndexer

CREDENTIALS_FIELD = "connections.credentials"
PROVIDER_ACCOUNT_ID_FIELD = "connections.provider_account_id"


@dataclass(frozen=True, slots=True)
class NewCredentials:
    """What a grant or a refresh produced, ready to store."""

    credentials: Credentials
    token_type: str | None
    scopes: Sequence[str]
    expires_at: datetime | None
    provider_account_id: Redacted[str] | None = None
    """The provider's id for the account, when the token response named it; None keeps the stored one."""
    connection_config: Mapping[str, str] | None = None
    """A grant's values for the provider's URL placeholders (they came with it and go with it); None for a
    refresh, which keeps the stored ones."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Connection]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this caller, and nobody else, may call the provider for this connection until ``until``."""

    connection: Connection
    owner: UUID
    until: datetime
    taken_at: datetime
    stale: bool = False
    """The previous holder's lease ran out unreleased: it may have died after the provider rotated the token."""
    sealed: bytes | None = field(default=None, repr=False)
    """The envelope the refresh will replace, read with the lease: its data key seals the new tokens."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One connection a scheduler run leased: refresh it under its own tenant."""

    connection_id: UUID
    tenant_id: UUID
    owner: UUID
    taken_at: datetime
    until: datetime
    stale: bool


class ConnectionRepository:
    def __init__(self, session: Session, sealer: Sealer, index: BlindIndexer | None = None) -> None:
        self._session = session
        self._sealer = sealer
        self._index = index

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, connection_id: UUID, *, for_update: bool = False) -> Connection:
        query = self._select().where(ConnectionRow.id == connection_id)
        if for_update:
            query = query.with_for_update(of=ConnectionRow)
        found = self._session.execute(query).one_or_none()
        if found is None:
            raise NotFound(f"connection {connection_id} not found")
        return self._to_domain(*found)

    def find_by_unique(self, provider_id: UUID, end_user_id: str, alias: str) -> Connection | None:
        found = self._session.execute(
            self._select().where(
                ConnectionRow.provider_id == provider_id,
                ConnectionRow.end_user_id == end_user_id,
                ConnectionRow.alias == alias,
            )
        ).one_or_none()
        return None if found is None else self._to_domain(*found)

    def list_by_tenant(
        self,
        *,
        provider_id: UUID | None = None,
        end_user_id: str | None = None,
        status: ConnectionStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
        unused_since: datetime | None = None,
        provider_account_id: str | None = None,
    ) -> Page:
        """Keyset pagination on (created_at, id): stable under concurrent inserts, no OFFSET scans.

        ``unused_since``: only connections that handed out no credential since then, or never (idle ones).
        ``provider_account_id``: exact match, by blind index (no other row's envelope is opened).
        """
        query = self._select()
        if provider_account_id is not None:
            wanted = self._indexer().lookup(PROVIDER_ACCOUNT_ID_FIELD, provider_account_id)
            if wanted is None:
                return Page([], None)
            query = query.where(ConnectionRow.provider_account_id_bidx == wanted)
        if provider_id is not None:
            query = query.where(ConnectionRow.provider_id == provider_id)
        if end_user_id is not None:
            query = query.where(ConnectionRow.end_user_id == end_user_id)
        if status is not None:
            query = query.where(ConnectionRow.status == status.value)
        if unused_since is not None:
            query = query.where(ConnectionRow.last_used_at.is_(None) | (ConnectionRow.last_used_at < unused_since))
        if cursor:
            after_created, after_id = decode_cursor(cursor)
            query = query.where(tuple_(ConnectionRow.created_at, ConnectionRow.id) > tuple_(after_created, after_id))
        rows = self._session.execute(query.order_by(ConnectionRow.created_at, ConnectionRow.id).limit(limit + 1)).all()
        items: list[Connection] = []
        budget = PAGE_BYTES
        for row, slug in rows[:limit]:
            cost = ITEM_BYTES + len(json.dumps(row.metadata_, ensure_ascii=False).encode("utf-8"))
            if items and cost > budget:
                break  # the page ends early; the cursor takes the caller on from here
            budget -= cost
            items.append(self._to_domain(row, slug, open_credentials=False))
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > len(items) else None
        return Page(items, next_cursor)

    # -- writes ------------------------------------------------------------------------------------------

    def add(
        self,
        tenant_id: UUID,
        provider_id: UUID,
        *,
        end_user_id: str,
        alias: str,
        grant: NewCredentials,
        granted_at: datetime,
        metadata: Mapping[str, Any],
    ) -> Connection:
        """Insert an active connection; a duplicate (provider, end user, alias) is a ``Conflict``."""
        row = ConnectionRow(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            provider_id=provider_id,
            end_user_id=end_user_id,
            alias=alias,
            credential_type=grant.credentials.type.value,
            metadata_=dict(metadata),
            connection_config=dict(grant.connection_config or {}),
        )
        self._apply_grant(row, grant, granted_at)
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError:
            raise Conflict("a connection for this provider, end_user_id and alias exists already") from None
        return self.get(row.id)

    def save_grant(
        self,
        tenant_id: UUID,
        provider_id: UUID,
        *,
        end_user_id: str,
        alias: str,
        grant: NewCredentials,
        granted_at: datetime,
        metadata: Mapping[str, Any],
    ) -> Connection:
        """Store a fresh OAuth grant: a reconnect replaces the existing connection's tokens, never duplicates it.

        The grant's ``connection_config`` replaces the old one with it: the new tokens came from the hosts it
        names."""
        row = self._session.scalars(
            select(ConnectionRow)
            .where(
                ConnectionRow.provider_id == provider_id,
                ConnectionRow.end_user_id == end_user_id,
                ConnectionRow.alias == alias,
            )
            .with_for_update()
        ).one_or_none()
        if row is None:
            return self.add(
                tenant_id,
                provider_id,
                end_user_id=end_user_id,
                alias=alias,
                grant=grant,
                granted_at=granted_at,
                metadata=metadata,
            )
        self._apply_grant(row, grant, granted_at)
        row.metadata_ = {**row.metadata_, **metadata}
        row.connection_config = dict(grant.connection_config or {})
        self._session.flush()
        return self.get(row.id)

    def update_details(
        self,
        connection_id: UUID,
        *,
        alias: str | None,
        metadata: Mapping[str, Any] | None,
        provider_account_id: Redacted[str] | None = None,
    ) -> Connection:
        values: dict[str, Any] = {}
        if alias is not None:
            values["alias"] = alias
        if metadata is not None:
            values["metadata_"] = dict(metadata)
        if provider_account_id is not None:
            values.update(self._account_id_columns(self._indexer().tenant_id, connection_id, provider_account_id))
        if not values:
            return self.get(connection_id)
        try:
            result = self._session.execute(
                update(ConnectionRow).where(ConnectionRow.id == connection_id).values(values)
            )
        except IntegrityError:
            raise Conflict("another connection of this end user and provider has that alias") from None
        if not result.rowcount:
            raise NotFound(f"connection {connection_id} not found")
        return self.get(connection_id)

    def delete(self, connection_id: UUID, *, token_version: int | None = None) -> bool:
        """Delete the connection; with ``token_version``, only while its tokens are still that version (a
        refresh that stored newer ones meanwhile left a grant the caller has not revoked yet)."""
        query = delete(ConnectionRow).where(ConnectionRow.id == connection_id)
        if token_version is not None:
            query = query.where(ConnectionRow.token_version == token_version)
        return bool(self._session.execute(query).rowcount)

    def set_status(self, connection_id: UUID, status: ConnectionStatus, *, error_code: str | None = None) -> None:
        self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id)
            .values(status=status.value, last_error_code=error_code)
        )

    def require_reauth_for_provider(self, provider_id: UUID, reason: str) -> int:
        """Every connection of ``provider_id`` that could still be refreshed now needs its end user again (its
        refresh token belongs to a server connvault no longer calls); how many."""
        result = self._session.execute(
            update(ConnectionRow)
            .where(
                ConnectionRow.provider_id == provider_id,
                ConnectionRow.status.in_(_REFRESHABLE),
            )
            .values(status=ConnectionStatus.NEEDS_REAUTH.value, last_error_code=reason, updated_at=func.now())
        )
        return int(result.rowcount or 0)

    # -- the refresh lease -------------------------------------------------------------------------------

    def acquire_lease(self, connection_id: UUID, now: datetime, until: datetime) -> Lease | None:
        """Take the refresh lease unless someone holds a live one (then ``None``).

        A lease, not a row lock, guards the provider call: the transaction that takes it commits at once, so
        no row lock is held while a slow provider answers, and a crashed holder's lease simply runs out. The
        short ``FOR UPDATE`` here only makes the check-and-set atomic.
        """
        current = self._session.execute(
            select(ConnectionRow.refresh_lease_until, ConnectionRow.refresh_lease_owner)
            .where(ConnectionRow.id == connection_id)
            .with_for_update()
        ).one_or_none()
        if current is None:
            raise NotFound(f"connection {connection_id} not found")
        if current.refresh_lease_until is not None and current.refresh_lease_until > now:
            return None
        owner = uuid.uuid4()
        self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id)
            .values(refresh_lease_until=until, refresh_lease_owner=owner)
        )
        return self._leased(connection_id, owner, now, until, stale=current.refresh_lease_owner is not None)

    def lease_from_claim(self, claim: Claim) -> Lease:
        """The lease a scheduler claim took for this connection, with the connection as it is now."""
        return self._leased(claim.connection_id, claim.owner, claim.taken_at, claim.until, stale=claim.stale)

    def _leased(self, connection_id: UUID, owner: UUID, taken_at: datetime, until: datetime, *, stale: bool) -> Lease:
        found = self._session.execute(self._select().where(ConnectionRow.id == connection_id)).one_or_none()
        if found is None:
            raise NotFound(f"connection {connection_id} not found")
        row, slug = found
        return Lease(self._to_domain(row, slug), owner, until, taken_at, stale=stale, sealed=row.credentials)

    def release_lease(self, connection_id: UUID, owner: UUID) -> None:
        self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id, ConnectionRow.refresh_lease_owner == owner)
            .values(refresh_lease_until=None, refresh_lease_owner=None)
        )

    def store_refresh(self, lease: Lease, grant: NewCredentials, now: datetime) -> Connection:
        """Store what a refresh returned and end the lease.

        The new credentials are sealed under the data key of the envelope they replace (``Sealer.reseal``),
        so a refresh needs no new data key from KMS.

        Deliberately not conditional on still holding the lease: the provider has answered, and with rotation
        the old refresh token is already dead, so these tokens are the only good ones. Dropping them because a
        lease ran out would lose the connection. Conditional only on the grant: if the end user connected again
        meanwhile (``granted_at`` moved), these tokens belong to the replaced grant and ``GrantSuperseded``
        says so.
        """
        connection_id = lease.connection.id
        mine = ConnectionRow.refresh_lease_owner == lease.owner
        previous = lease.sealed or self._session.scalar(
            select(ConnectionRow.credentials).where(ConnectionRow.id == connection_id)
        )
        if previous is None:
            raise NotFound(f"connection {connection_id} not found")
        context = SealContext(lease.connection.tenant_id, CREDENTIALS_FIELD, connection_id)
        sealed = self._sealer.reseal(credentials_to_bytes(grant.credentials), context, previous)
        result = self._session.execute(
            update(ConnectionRow)
            .where(
                ConnectionRow.id == connection_id,
                ConnectionRow.granted_at.is_not_distinct_from(lease.connection.granted_at),
            )
            .values(
                credentials=sealed,
                has_refresh_token=_has_refresh_token(grant.credentials),
                token_type=grant.token_type,
                scopes=list(grant.scopes),
                expires_at=grant.expires_at,
                status=ConnectionStatus.ACTIVE.value,
                last_refresh_at=now,
                refresh_failures=0,
                last_error_code=None,
                next_refresh_at=None,
                refresh_lease_until=case((mine, None), else_=ConnectionRow.refresh_lease_until),
                refresh_lease_owner=case((mine, None), else_=ConnectionRow.refresh_lease_owner),
                **self._refreshed_account_id(lease.connection, grant.provider_account_id, previous),
                token_version=ConnectionRow.token_version + 1,
                refresh_started_at=lease.taken_at,
            )
            .returning(ConnectionRow.token_version)
        )
        version = result.scalar_one_or_none()
        if version is None:
            if self._session.scalar(select(ConnectionRow.id).where(ConnectionRow.id == connection_id)) is None:
                raise NotFound(f"connection {connection_id} not found")
            raise GrantSuperseded(f"connection {connection_id} was connected again during its refresh")
        # What was just written, without reading it back (and opening the envelope again).
        return replace(
            lease.connection,
            credentials=grant.credentials,
            token_type=grant.token_type,
            scopes=tuple(grant.scopes),
            expires_at=grant.expires_at,
            status=ConnectionStatus.ACTIVE,
            last_refresh_at=now,
            refresh_failures=0,
            last_error_code=None,
            next_refresh_at=None,
            refresh_lease_until=None,
            token_version=version,
            refresh_started_at=lease.taken_at,
            updated_at=now,
            provider_account_id=grant.provider_account_id or lease.connection.provider_account_id,
        )

    def record_refresh_failure(
        self,
        connection_id: UUID,
        owner: UUID,
        *,
        status: ConnectionStatus,
        error_code: str,
        next_refresh_at: datetime | None,
    ) -> bool:
        """Record a failed refresh and end the lease, only if the lease is still ours.

        If it is not, another caller took over and may already have stored newer tokens; a failure seen
        with the older ones must not overwrite that (e.g. mark a freshly refreshed connection needs_reauth).
        """
        result = self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id, ConnectionRow.refresh_lease_owner == owner)
            .values(
                status=status.value,
                last_error_code=error_code,
                refresh_failures=ConnectionRow.refresh_failures + 1,
                next_refresh_at=next_refresh_at,
                refresh_lease_until=None,
                refresh_lease_owner=None,
            )
        )
        return bool(result.rowcount)

    def claim_due(
        self, now: datetime, horizon_seconds: int, limit: int, until: datetime, *, run_started: datetime | None = None
    ) -> list[Claim]:
        """Lease up to ``limit`` due connections across tenants in one statement (``FOR UPDATE SKIP LOCKED``
        inside a SECURITY DEFINER function), so overlapping scheduler runs take disjoint sets. Connections
        refreshed since ``run_started`` (default: ``now``) are left alone: one refresh per connection per run."""
        owner = uuid.uuid4()
        claimed = func.connvault_claim_due_refreshes(
            now, horizon_seconds, limit, owner, until, run_started or now
        ).table_valued("id", "tenant_id", "stale")
        rows = self._session.execute(select(claimed.c.id, claimed.c.tenant_id, claimed.c.stale)).all()
        return [Claim(row.id, row.tenant_id, owner, now, until, row.stale) for row in rows]

    def due_backlog(self, now: datetime, horizon_seconds: int) -> int:
        return int(self._session.scalar(select(func.connvault_due_backlog(now, horizon_seconds))) or 0)

    # -- mapping -----------------------------------------------------------------------------------------

    def _select(self) -> Any:
        return select(ConnectionRow, ProviderRow.slug).join(ProviderRow, ProviderRow.id == ConnectionRow.provider_id)

    def _apply_grant(self, row: ConnectionRow, grant: NewCredentials, granted_at: datetime) -> None:
        row.credentials = self._seal(row.tenant_id, row.id, grant.credentials)
        row.credential_type = grant.credentials.type.value
        row.has_refresh_token = _has_refresh_token(grant.credentials)
        row.token_type = grant.token_type
        row.scopes = list(grant.scopes)
        row.expires_at = grant.expires_at
        row.status = ConnectionStatus.ACTIVE.value
        row.granted_at = granted_at
        row.refresh_failures = 0
        row.last_error_code = None
        row.next_refresh_at = None
        # A new grant supersedes a refresh of the old one in flight: its failure must not mark this grant.
        row.refresh_lease_until = None
        row.refresh_lease_owner = None
        row.token_version = (row.token_version or 0) + 1
        for column, value in self._account_id_columns(row.tenant_id, row.id, grant.provider_account_id).items():
            setattr(row, column, value)

    def _indexer(self) -> BlindIndexer:
        if self._index is None:
            raise RuntimeError("blind indexes need a unit of work bound to a tenant")
        return self._index

    def _account_id_columns(
        self, tenant_id: UUID, connection_id: UUID, value: Redacted[str] | None, *, like: bytes | None = None
    ) -> dict[str, bytes]:
        """The sealed provider account id and its blind index, or nothing to write for ``None``.

        ``like``: seal under that envelope's data key (as a refresh seals its tokens), and make a missing
        blind-index key the same way: the writer then needs ``kms:Decrypt`` only.
        """
        if value is None:
            return {}
        plaintext = value.reveal()
        context = SealContext(tenant_id, PROVIDER_ACCOUNT_ID_FIELD, connection_id)
        if like is None:
            sealed = self._sealer.seal(plaintext.encode(), context)
        else:
            sealed = self._sealer.reseal(plaintext.encode(), context, like)
        index = self._indexer().index(PROVIDER_ACCOUNT_ID_FIELD, plaintext, seal_like=like)
        return {"provider_account_id": sealed, "provider_account_id_bidx": index}

    def _refreshed_account_id(
        self, connection: Connection, value: Redacted[str] | None, previous: bytes
    ) -> dict[str, bytes]:
        """What a refresh writes of the account id it saw. A key-service failure here drops the id, not the
        tokens: with rotation they are the only live ones, and the next refresh captures the id again."""
        try:
            return self._account_id_columns(connection.tenant_id, connection.id, value, like=previous)
        except (DecryptionFailed, KeyServiceUnavailable) as exc:
            logger.warning(
                "provider account id not stored with refreshed tokens",
                extra={"connection_id": str(connection.id), "code": exc.code},
            )
            return {}

    def _seal(self, tenant_id: UUID, connection_id: UUID, credentials: Credentials) -> bytes:
        context = SealContext(tenant_id, CREDENTIALS_FIELD, connection_id)
        return self._sealer.seal(credentials_to_bytes(credentials), context)

    def _to_domain(self, row: ConnectionRow, provider_slug: str, *, open_credentials: bool = True) -> Connection:
        credentials = None
        if open_credentials and row.credentials is not None:
            credentials = credentials_from_bytes(
                self._sealer.open(row.credentials, SealContext(row.tenant_id, CREDENTIALS_FIELD, row.id))
            )
        account_id = None
        if row.provider_account_id is not None:
            context = SealContext(row.tenant_id, PROVIDER_ACCOUNT_ID_FIELD, row.id)
            account_id = Redacted(self._sealer.open(row.provider_account_id, context).decode())
        return Connection(
            id=row.id,
            tenant_id=row.tenant_id,
            provider_id=row.provider_id,
            provider_slug=provider_slug,
            end_user_id=row.end_user_id,
            alias=row.alias,
            credential_type=AuthType(row.credential_type),
            status=ConnectionStatus(row.status),
            credentials=credentials,
            token_type=row.token_type,
            scopes=tuple(row.scopes),
            expires_at=row.expires_at,
            granted_at=row.granted_at,
            last_refresh_at=row.last_refresh_at,
            last_used_at=row.last_used_at,
            refresh_failures=row.refresh_failures,
            last_error_code=row.last_error_code,
            next_refresh_at=row.next_refresh_at,
            metadata=dict(row.metadata_),
            created_at=row.created_at,
            updated_at=row.updated_at,
            refresh_lease_until=row.refresh_lease_until,
            provider_account_id=account_id,
            token_version=row.token_version,
            refresh_started_at=row.refresh_started_at,
            connection_config=dict(row.connection_config),
        )


def _has_refresh_token(credentials: Credentials) -> bool:
    return isinstance(credentials, OAuth2Credentials) and credentials.refresh_token is not None


PAGE_BYTES = 1_048_576
"""What one list page's items may carry: a Lambda response holds 6 MB, and a page of 100 connections with full
metadata (16 KiB of the tenant's, 4 KiB of the provider's) would pass 2 MB; a page past the budget ends early."""
ITEM_BYTES = 1024
"""A connection's response without its metadata, generously."""

_REFRESHABLE = (ConnectionStatus.ACTIVE.value, ConnectionStatus.EXPIRED.value, ConnectionStatus.ERROR.value)

_CURSOR_YEARS = (2000, 9998)
"""Rows are created now; a time outside these years in a cursor was not written by ``encode_cursor``."""


def encode_cursor(created_at: datetime, connection_id: UUID) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{connection_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Parse a cursor from ``encode_cursor``; anything else is a 400, not a 500, before any SQL.

    Only what ``encode_cursor`` writes is accepted: a UTC time within the years a row can have been created in
    and a canonical uuid, which must re-encode to the very same cursor. (An offset such as
    ``0001-01-01T00:00:00+01:00`` used to reach the driver, which overflowed converting it mid-statement.)
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        created, _, ident = raw.partition("|")
        when = datetime.fromisoformat(created)
        if when.utcoffset() != timedelta(0) or not _CURSOR_YEARS[0] <= when.year <= _CURSOR_YEARS[1]:
            raise ValueError("cursor time")
        connection_id = UUID(ident)
        if encode_cursor(when, connection_id) != cursor:
            raise ValueError("not canonical")
        return when, connection_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid", field="cursor") from None
