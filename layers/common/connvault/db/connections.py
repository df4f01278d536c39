"""Connections: the only place that reads or writes the ``connections`` table.

Credentials are sealed and opened through ``db.sealed_credentials``; no caller handles an envelope's format (token
fetch's prepared read hands its envelope to ``open_sealed_credentials`` too). List queries, and reads that only show
a connection, leave the credentials sealed (``credentials=None``): showing never needs a secret, and every open is a
chance to leak. The provider's account id is sealed too, with a blind index beside it (``db.blind_index``) to find
it by.
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

from sqlalchemy import case, delete, false, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from connvault.connection_status import issuer_left
from connvault.crypto.envelope import SealContext
from connvault.db.rowcount import rows_changed
from connvault.db.rows import ConnectionRow, ProviderRow
from connvault.db.sealed_credentials import (
    holds_refresh_token,
    open_sealed_credentials,
    renews_with_own_client,
    seal_credentials,
)
from connvault.errors import Conflict, DecryptionFailed, InvalidInput, KeyServiceUnavailable, NotFound
from connvault.models import (
    AuthType,
    Connection,
    ConnectionKind,
    ConnectionStatus,
    Credentials,
    Page,
)
from connvault.observability import logger

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.db.blind_index import BlindIndexer
    from connvault.models import OAuth2Tokens
    from connvault.redacted import Redacted

PROVIDER_ACCOUNT_ID_FIELD = "connections.provider_account_id"
USUAL_KINDS = frozenset({ConnectionKind.AUTHORIZATION_CODE, ConnectionKind.API_KEY, ConnectionKind.BASIC})
"""Kinds stored as NULL in ``connections.kind``: what the credential type implies (see migration 0060)."""
MAX_ROWS_PER_INSERT = 500
"""Rows per multi-row INSERT: each row binds 15 parameters, and PostgreSQL takes at most 65,535 per statement."""


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

    @classmethod
    def answered(cls, credentials: Credentials, tokens: OAuth2Tokens, scopes: Sequence[str]) -> NewCredentials:
        """What to store from a token response (a code exchange, a refresh, a device poll, a grant's request):
        ``credentials`` made from it, and ``scopes`` (those asked for, or held) where the provider named none."""
        return cls(
            credentials=credentials,
            token_type=tokens.token_type,
            scopes=tokens.scopes if tokens.scopes is not None else scopes,
            expires_at=tokens.expires_at,
            provider_account_id=tokens.provider_account_id,
        )


@dataclass(frozen=True, slots=True)
class SavedGrant:
    """A stored grant, and what it replaced: the caller revokes that at the provider (``services/revocation.py``)."""

    connection: Connection
    replaced: Credentials | None = None
    """The credentials a reconnect overwrote, opened just before; None for a new connection or an unreadable one."""
    replaced_unreadable: bool = False
    """The overwritten envelope could not be opened (its key is gone or KMS is down): a reconnect is how such a
    connection is repaired, so it goes ahead, and what it replaced cannot be revoked."""
    replaced_config: Mapping[str, str] = field(default_factory=dict)
    """The ``connection_config`` of the replaced grant: the hosts its tokens came from, and go back to."""
    replaced_issuer_left: bool = False
    """The replaced grant's server is no longer the provider's (``connection_status.issuer_left``): its tokens go
    nowhere, not even to be revoked."""


@dataclass(frozen=True, slots=True)
class NewConnection:
    """One connection to insert with ``add_many``; ``id`` is chosen first because the envelope is bound to it."""

    provider_id: UUID
    end_user_id: str
    alias: str
    grant: NewCredentials
    granted_at: datetime
    metadata: Mapping[str, Any]
    kind: ConnectionKind
    id: UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this caller, and nobody else, may call the provider for this connection until ``until``."""

    connection: Connection
    owner: UUID
    until: datetime
    taken_at: datetime
    stale: bool = False
    """The previous holder's lease ran out unreleased: it may have died after the provider rotated the token."""

    def stored(self, grant: NewCredentials, *, version: int, now: datetime) -> Connection:
        """The connection as a store of ``grant`` left it: what was written, without reading it back (and opening
        the envelope again)."""
        return replace(
            self.connection,
            credentials=grant.credentials,
            token_type=grant.token_type,
            scopes=tuple(grant.scopes),
            expires_at=grant.expires_at,
            status=ConnectionStatus.ACTIVE,
            last_refresh_at=now,
            refresh_failures=0,
            last_error_code=None,
            fault_count=0,
            fault_code=None,
            next_refresh_at=None,
            refresh_lease_until=None,
            has_refresh_token=holds_refresh_token(grant.credentials),
            token_version=version,
            refresh_started_at=self.taken_at,
            updated_at=now,
            provider_account_id=grant.provider_account_id or self.connection.provider_account_id,
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """One connection a scheduler run leased: refresh it under its own tenant."""

    connection_id: UUID
    tenant_id: UUID
    provider_id: UUID
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

    def get(self, connection_id: UUID, *, for_update: bool = False, open_credentials: bool = True) -> Connection:
        """The connection; with ``open_credentials=False`` its envelope stays sealed (``credentials=None``), for
        callers that show a connection rather than use it."""
        query = self._select().where(ConnectionRow.id == connection_id)
        if for_update:
            query = query.with_for_update(of=ConnectionRow)
        found = self._session.execute(query).one_or_none()
        if found is None:
            raise NotFound(f"connection {connection_id} not found")
        return self._to_domain(*found, open_credentials=open_credentials)

    def find_by_unique(self, provider_id: UUID, end_user_id: str, alias: str) -> Connection | None:
        """The connection with this key, its credentials left sealed (``None``): whether it exists is the question,
        and a reconnect must get past an envelope that no longer opens."""
        found = self._session.execute(
            self._select().where(
                ConnectionRow.provider_id == provider_id,
                ConnectionRow.end_user_id == end_user_id,
                ConnectionRow.alias == alias,
            )
        ).one_or_none()
        return None if found is None else self._to_domain(*found, open_credentials=False)

    def find_ids(self, keys: Sequence[tuple[UUID, str, str]]) -> dict[tuple[UUID, str, str], UUID]:
        """The ids of the connections that exist among ``(provider_id, end_user_id, alias)`` keys, in one query."""
        if not keys:
            return {}
        key = tuple_(ConnectionRow.provider_id, ConnectionRow.end_user_id, ConnectionRow.alias)
        rows = self._session.execute(
            select(ConnectionRow.provider_id, ConnectionRow.end_user_id, ConnectionRow.alias, ConnectionRow.id).where(
                key.in_(list(keys))
            )
        ).all()
        return {(row.provider_id, row.end_user_id, row.alias): row.id for row in rows}

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
    ) -> Page[Connection]:
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
        kind: ConnectionKind | None = None,
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
        self._apply_grant(row, grant, granted_at, kind)
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
        kind: ConnectionKind | None = None,
    ) -> SavedGrant:
        """Store a fresh grant: a reconnect replaces the existing connection's credentials (and says which they
        were, and on which hosts), never duplicates the connection.

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
            return SavedGrant(
                self.add(
                    tenant_id,
                    provider_id,
                    end_user_id=end_user_id,
                    alias=alias,
                    grant=grant,
                    granted_at=granted_at,
                    metadata=metadata,
                    kind=kind,
                )
            )
        try:
            replaced = self._open_credentials(row)
        except (DecryptionFailed, KeyServiceUnavailable):
            replaced, unreadable = None, True
        else:
            unreadable = False
        replaced_config = dict(row.connection_config)
        left = issuer_left(ConnectionStatus(row.status), row.last_error_code)
        self._apply_grant(row, grant, granted_at, kind)
        row.metadata_ = {**row.metadata_, **metadata}
        row.connection_config = dict(grant.connection_config or {})
        self._session.flush()
        return SavedGrant(self.get(row.id), replaced, unreadable, replaced_config, left)

    def add_many(self, tenant_id: UUID, connections: Sequence[NewConnection]) -> None:
        """Insert active connections, skipping any whose (provider, end user, alias) or id exists, in one
        statement per ``MAX_ROWS_PER_INSERT``. No read back and no envelope opened: a caller tells its rows by
        their ids (``find_ids``), which also holds when a retry follows a commit whose answer was lost."""
        for start in range(0, len(connections), MAX_ROWS_PER_INSERT):
            chunk = connections[start : start + MAX_ROWS_PER_INSERT]
            values = [self._new_row_values(tenant_id, item) for item in chunk]
            self._session.execute(insert(ConnectionRow).values(values).on_conflict_do_nothing())

    def _new_row_values(self, tenant_id: UUID, item: NewConnection) -> dict[str, Any]:
        return {
            "id": item.id,
            "tenant_id": tenant_id,
            "provider_id": item.provider_id,
            "end_user_id": item.end_user_id,
            "alias": item.alias,
            "metadata_": dict(item.metadata),
            "connection_config": dict(item.grant.connection_config or {}),
            "token_version": 1,
            **self._grant_values(tenant_id, item.id, item.grant, item.granted_at, item.kind),
        }

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
            changed = rows_changed(
                self._session, update(ConnectionRow).where(ConnectionRow.id == connection_id).values(values)
            )
        except IntegrityError:
            raise Conflict("another connection of this end user and provider has that alias") from None
        if not changed:
            raise NotFound(f"connection {connection_id} not found")
        return self.get(connection_id)

    def delete(self, connection_id: UUID, *, token_version: int | None = None) -> bool:
        """Delete the connection; with ``token_version``, only while its tokens are still that version (a
        refresh that stored newer ones meanwhile left a grant the caller has not revoked yet)."""
        query = delete(ConnectionRow).where(ConnectionRow.id == connection_id)
        if token_version is not None:
            query = query.where(ConnectionRow.token_version == token_version)
        return rows_changed(self._session, query) > 0

    def expire_if_lapsed(self, connection_id: UUID, now: datetime, *, error_code: str | None) -> bool:
        """Status ``expired`` if the token has run out, no live lease is held and the status is ``active`` or
        ``error``, all checked in the one statement that writes it; ``error_code`` None keeps the last one."""
        changed = rows_changed(
            self._session,
            update(ConnectionRow)
            .where(
                ConnectionRow.id == connection_id,
                ConnectionRow.expires_at <= now,
                ConnectionRow.status.in_((ConnectionStatus.ACTIVE.value, ConnectionStatus.ERROR.value)),
                or_(ConnectionRow.refresh_lease_until.is_(None), ConnectionRow.refresh_lease_until <= now),
            )
            .values(
                status=ConnectionStatus.EXPIRED.value,
                last_error_code=func.coalesce(error_code, ConnectionRow.last_error_code),
            ),
        )
        return changed > 0

    def require_reauth_for_provider(self, provider_id: UUID, reason: str) -> int:
        """Every connection of ``provider_id`` that holds a grant (any status but revoked or pending: a parked
        one could be refreshed again, and one that needs its end user already could still be revoked) now needs
        its end user again for ``reason``; how many."""
        changed = rows_changed(
            self._session,
            update(ConnectionRow)
            .where(
                ConnectionRow.provider_id == provider_id,
                ConnectionRow.status.in_(_HOLDS_A_GRANT),
            )
            .values(status=ConnectionStatus.NEEDS_REAUTH.value, last_error_code=reason, updated_at=func.now()),
        )
        return changed

    # -- the refresh lease -------------------------------------------------------------------------------

    def acquire_lease(self, connection_id: UUID, now: datetime, until: datetime) -> Lease | None:
        """Take the refresh lease unless someone holds a live one (then ``None``), and read the connection.

        A lease, not a row lock, guards the provider call: the transaction that takes it commits at once, so
        no row lock is held while a slow provider answers, and a crashed holder's lease simply runs out.
        """
        taken = self.take_lease(connection_id, now, until)
        if taken is None:
            return None
        owner, stale = taken
        return self._leased(connection_id, owner, now, until, stale=stale)

    def take_lease(self, connection_id: UUID, now: datetime, until: datetime) -> tuple[UUID, bool] | None:
        """The compare-and-set of ``acquire_lease`` alone, reading nothing sealed: the new owner and whether a
        previous holder's lease ran out unreleased, or None while someone holds a live one. The short
        ``FOR UPDATE`` only makes the check-and-set atomic."""
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
        return owner, current.refresh_lease_owner is not None

    def _leased(self, connection_id: UUID, owner: UUID, taken_at: datetime, until: datetime, *, stale: bool) -> Lease:
        found = self._session.execute(self._select().where(ConnectionRow.id == connection_id)).one_or_none()
        if found is None:
            raise NotFound(f"connection {connection_id} not found")
        row, slug = found
        return Lease(self._to_domain(row, slug), owner, until, taken_at, stale=stale)

    def release_lease(self, connection_id: UUID, owner: UUID) -> None:
        self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id, ConnectionRow.refresh_lease_owner == owner)
            .values(refresh_lease_until=None, refresh_lease_owner=None)
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
        changed = rows_changed(
            self._session,
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id, ConnectionRow.refresh_lease_owner == owner)
            .values(
                status=status.value,
                last_error_code=error_code,
                refresh_failures=ConnectionRow.refresh_failures + 1,
                fault_count=0,
                next_refresh_at=next_refresh_at,
                refresh_lease_until=None,
                refresh_lease_owner=None,
            ),
        )
        return changed > 0

    def record_own_fault(
        self,
        connection_id: UUID,
        owner: UUID,
        *,
        code: str,
        next_refresh_at: datetime,
        park_after: int | None,
    ) -> ConnectionStatus | None:
        """Record a refresh that failed on our side and end the lease, only if the lease is still ours; the
        status the connection is left in (None when the lease was not ours).

        Counted in ``fault_count``, never in the provider's ``refresh_failures``: an outage of ours must not move
        a connection towards ``error`` or lengthen its provider backoff. With ``park_after``, the
        ``park_after``-th fault in a row with the same code parks the connection (a row-specific fault such as
        an envelope that does not open); outages pass None and are never parked.
        """
        same = ConnectionRow.fault_code == code
        count = case((same, ConnectionRow.fault_count + 1), else_=1)
        parks = (count >= park_after) if park_after is not None else false()
        status = case((parks, ConnectionStatus.PARKED.value), else_=ConnectionRow.status)
        result = self._session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection_id, ConnectionRow.refresh_lease_owner == owner)
            .values(
                fault_count=count,
                fault_code=code,
                status=status,
                last_error_code=case((parks, code), else_=ConnectionRow.last_error_code),
                next_refresh_at=next_refresh_at,
                refresh_lease_until=None,
                refresh_lease_owner=None,
            )
            .returning(ConnectionRow.status)
        )
        found = result.scalar_one_or_none()
        return None if found is None else ConnectionStatus(found)

    def due_backlog(self, now: datetime, horizon_seconds: int) -> int:
        return int(self._session.scalar(select(func.connvault_due_backlog(now, horizon_seconds))) or 0)

    # -- mapping -----------------------------------------------------------------------------------------

    def _select(self) -> Any:
        return select(ConnectionRow, ProviderRow.slug).join(ProviderRow, ProviderRow.id == ConnectionRow.provider_id)

    def _apply_grant(
        self, row: ConnectionRow, grant: NewCredentials, granted_at: datetime, kind: ConnectionKind | None
    ) -> None:
        for name, value in self._grant_values(row.tenant_id, row.id, grant, granted_at, kind).items():
            setattr(row, name, value)
        row.token_version = (row.token_version or 0) + 1

    def _grant_values(
        self,
        tenant_id: UUID,
        connection_id: UUID,
        grant: NewCredentials,
        granted_at: datetime,
        kind: ConnectionKind | None,
    ) -> dict[str, Any]:
        """What a new grant sets, whatever the row held before."""
        return {
            "credentials": self._seal(tenant_id, connection_id, grant.credentials),
            "credential_type": grant.credentials.type.value,
            "kind": _stored_kind(kind),
            "has_refresh_token": holds_refresh_token(grant.credentials),
            "renews_with_own_client": renews_with_own_client(grant.credentials),
            "token_type": grant.token_type,
            "scopes": list(grant.scopes),
            "expires_at": grant.expires_at,
            "status": ConnectionStatus.ACTIVE.value,
            "granted_at": granted_at,
            "refresh_failures": 0,
            "last_error_code": None,
            "fault_count": 0,
            "fault_code": None,
            "next_refresh_at": None,
            # A new grant supersedes a refresh of the old one in flight: its failure must not mark this grant.
            "refresh_lease_until": None,
            "refresh_lease_owner": None,
            **self._account_id_columns(tenant_id, connection_id, grant.provider_account_id),
        }

    def _indexer(self) -> BlindIndexer:
        if self._index is None:
            raise RuntimeError("blind indexes need a unit of work bound to a tenant")
        return self._index

    def _account_id_columns(
        self, tenant_id: UUID, connection_id: UUID, value: Redacted[str] | None
    ) -> dict[str, bytes]:
        """The sealed provider account id and its blind index, or nothing to write for ``None``."""
        if value is None:
            return {}
        sealed = self._sealer.seal_text(value, SealContext(tenant_id, PROVIDER_ACCOUNT_ID_FIELD, connection_id))
        index = self._indexer().index(PROVIDER_ACCOUNT_ID_FIELD, value.reveal())
        return {"provider_account_id": sealed, "provider_account_id_bidx": index}

    def refreshed_account_id(self, connection: Connection, value: Redacted[str] | None) -> dict[str, bytes]:
        """What a refresh writes of the account id it saw. A key-service failure here drops the id, not the
        tokens: with rotation they are the only live ones, and the next refresh captures the id again."""
        try:
            return self._account_id_columns(connection.tenant_id, connection.id, value)
        except (DecryptionFailed, KeyServiceUnavailable) as exc:
            logger.warning(
                "provider account id not stored with refreshed tokens",
                extra={"connection_id": str(connection.id), "code": exc.code},
            )
            return {}

    def _seal(self, tenant_id: UUID, connection_id: UUID, credentials: Credentials) -> bytes:
        return seal_credentials(self._sealer, tenant_id, connection_id, credentials)

    def _open_credentials(self, row: ConnectionRow) -> Credentials | None:
        if row.credentials is None:
            return None
        return open_sealed_credentials(self._sealer, row.tenant_id, row.id, row.credentials)

    def _to_domain(self, row: ConnectionRow, provider_slug: str, *, open_credentials: bool = True) -> Connection:
        return to_connection(row, provider_slug, self._sealer, open_credentials=open_credentials)


def to_connection(row: Any, provider_slug: str, sealer: Sealer, *, open_credentials: bool = True) -> Connection:
    """The domain object for a connections row (a ``ConnectionRow``, or anything with its attribute names: the
    prepared refresh read builds one); ``open_credentials=False`` leaves the envelope sealed."""
    credentials = None
    if open_credentials and row.credentials is not None:
        credentials = open_sealed_credentials(sealer, row.tenant_id, row.id, row.credentials)
    account_id = sealer.open_text(
        row.provider_account_id, SealContext(row.tenant_id, PROVIDER_ACCOUNT_ID_FIELD, row.id)
    )
    return Connection(
        id=row.id,
        tenant_id=row.tenant_id,
        provider_id=row.provider_id,
        provider_slug=provider_slug,
        end_user_id=row.end_user_id,
        alias=row.alias,
        credential_type=AuthType(row.credential_type),
        kind=_kind_of(row),
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
        has_refresh_token=row.has_refresh_token,
        token_version=row.token_version,
        refresh_started_at=row.refresh_started_at,
        fault_count=row.fault_count,
        fault_code=row.fault_code,
        connection_config=dict(row.connection_config),
    )


def _stored_kind(kind: ConnectionKind | None) -> str | None:
    return None if kind is None or kind in USUAL_KINDS else kind.value


def _kind_of(row: Any) -> ConnectionKind:
    if row.kind is not None:
        return ConnectionKind(row.kind)
    if row.credential_type == AuthType.OAUTH2:
        return ConnectionKind.AUTHORIZATION_CODE
    return ConnectionKind(row.credential_type)


PAGE_BYTES = 1_048_576
"""What one list page's items may carry: a Lambda response holds 6 MB, and a page of 100 connections with full
metadata (16 KiB of the tenant's, 4 KiB of the provider's) would pass 2 MB; a page past the budget ends early."""
ITEM_BYTES = 1024
"""A connection's response without its metadata, generously."""

_HOLDS_A_GRANT = tuple(
    status.value for status in ConnectionStatus if status not in (ConnectionStatus.REVOKED, ConnectionStatus.PENDING)
)

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
