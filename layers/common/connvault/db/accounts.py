"""Accounts: the provider-side accounts under a connection, the only place that reads or writes ``accounts``.

Both ids are sealed here (bound to tenant, field and row like every envelope) and blind-indexed beside their
envelope; searches compare indexes and open only the rows they find. Soft-deleted rows are invisible to every
method but the purge.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import DBAPIError

from connvault.crypto.envelope import SealContext
from connvault.db.connections import decode_cursor, encode_cursor
from connvault.db.rowcount import rows_changed
from connvault.db.rows import AccountRow, ConnectionRow
from connvault.errors import Conflict, NotFound
from connvault.models import Account, Page

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.db.blind_index import BlindIndexer
    from connvault.redacted import Redacted

EXTERNAL_ID_FIELD = "accounts.external_id"
BAAS_ID_FIELD = "accounts.baas_id"
_FOREIGN_KEY_VIOLATION = "23503"
_UNIQUE_VIOLATION = "23505"
_INTEGRITY_CONSTRAINT_CLASS = "23"


class AccountRepository:
    def __init__(self, session: Session, sealer: Sealer, index: BlindIndexer | None) -> None:
        self._session = session
        self._sealer = sealer
        self._index = index

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, connection_id: UUID, account_id: UUID) -> Account:
        row = self._session.scalars(
            self._live().where(AccountRow.id == account_id, AccountRow.connection_id == connection_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"account {account_id} not found")
        return self._to_domain(row)

    def list_by_connection(self, connection_id: UUID, *, cursor: str | None = None, limit: int = 50) -> Page[Account]:
        """Keyset pagination on (created_at, id), like connections."""
        return self._page(self._live().where(AccountRow.connection_id == connection_id), cursor, limit)

    def search(
        self, *, external_id: str | None = None, baas_id: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> Page[Account]:
        """Live accounts whose ids equal the given ones exactly, by blind index: nothing else is opened."""
        query = self._live()
        for field, column, value in (
            (EXTERNAL_ID_FIELD, AccountRow.external_id_bidx, external_id),
            (BAAS_ID_FIELD, AccountRow.baas_id_bidx, baas_id),
        ):
            if value is None:
                continue
            wanted = self._indexer().lookup(field, value)
            if wanted is None:
                return Page([], None)
            query = query.where(column == wanted)
        return self._page(query, cursor, limit)

    # -- writes ------------------------------------------------------------------------------------------

    def add(
        self,
        tenant_id: UUID,
        connection_id: UUID,
        *,
        external_id: Redacted[str] | None,
        baas_id: Redacted[str] | None,
        display_name: str,
        metadata: Mapping[str, Any],
    ) -> Account:
        """A live external id may appear once under a connection (``Conflict``); an unknown connection is
        ``NotFound`` (the foreign key names the connection and the tenant together, so RLS decides)."""
        row = AccountRow(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            connection_id=connection_id,
            display_name=display_name,
            metadata_=dict(metadata),
        )
        self._set_id(row, EXTERNAL_ID_FIELD, external_id)
        self._set_id(row, BAAS_ID_FIELD, baas_id)
        self._session.add(row)
        self._flush(connection_id)
        return self._to_domain(row)

    def update(
        self,
        connection_id: UUID,
        account_id: UUID,
        *,
        external_id: Redacted[str] | None = None,
        baas_id: Redacted[str] | None = None,
        display_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Account:
        """Replace what is given; ``None`` leaves a field as it is (an id is replaced, never cleared)."""
        row = self._session.scalars(
            self._live().where(AccountRow.id == account_id, AccountRow.connection_id == connection_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise NotFound(f"account {account_id} not found")
        if external_id is not None:
            self._set_id(row, EXTERNAL_ID_FIELD, external_id)
        if baas_id is not None:
            self._set_id(row, BAAS_ID_FIELD, baas_id)
        if display_name is not None:
            row.display_name = display_name
        if metadata is not None:
            row.metadata_ = dict(metadata)
        self._flush(connection_id)
        return self._to_domain(row)

    def soft_delete(self, connection_id: UUID, account_id: UUID, now: datetime) -> bool:
        changed = rows_changed(
            self._session,
            update(AccountRow)
            .where(
                AccountRow.id == account_id, AccountRow.connection_id == connection_id, AccountRow.deleted_at.is_(None)
            )
            .values(deleted_at=now),
        )
        return changed > 0

    def purge_deleted(self, deleted_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` accounts of any tenant soft-deleted before ``deleted_before`` (a SECURITY
        DEFINER function: the scheduled purge runs without a tenant)."""
        return int(self._session.scalar(select(func.connvault_purge_deleted_accounts(deleted_before, limit))) or 0)

    def connection_exists(self, connection_id: UUID) -> bool:
        """Whether the tenant has this connection (RLS hides every other tenant's)."""
        return self._session.scalar(select(ConnectionRow.id).where(ConnectionRow.id == connection_id)) is not None

    # -- mapping -----------------------------------------------------------------------------------------

    @staticmethod
    def _live() -> Any:
        return select(AccountRow).where(AccountRow.deleted_at.is_(None))

    def _page(self, query: Any, cursor: str | None, limit: int) -> Page[Account]:
        if cursor:
            after_created, after_id = decode_cursor(cursor)
            query = query.where(tuple_(AccountRow.created_at, AccountRow.id) > tuple_(after_created, after_id))
        rows = list(self._session.scalars(query.order_by(AccountRow.created_at, AccountRow.id).limit(limit + 1)))
        items = [self._to_domain(row) for row in rows[:limit]]
        next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return Page(items, next_cursor)

    def _indexer(self) -> BlindIndexer:
        if self._index is None:
            raise RuntimeError("blind indexes need a unit of work bound to a tenant")
        return self._index

    def _set_id(self, row: AccountRow, field: str, value: Redacted[str] | None) -> None:
        sealed = index = None
        if value is not None:
            sealed = self._sealer.seal_text(value, SealContext(row.tenant_id, field, row.id))
            index = self._indexer().index(field, value.reveal())
        column = field.rpartition(".")[2]
        setattr(row, column, sealed)
        setattr(row, f"{column}_bidx", index)

    def _flush(self, connection_id: UUID) -> None:
        """Constraint violations as domain errors (pg8000 reports only a unique violation as IntegrityError)."""
        try:
            self._session.flush()
        except DBAPIError as exc:
            state = _sqlstate(exc)
            if state == _FOREIGN_KEY_VIOLATION:
                raise NotFound(f"connection {connection_id} not found") from None
            if state == _UNIQUE_VIOLATION:
                raise Conflict("an account with this external_id exists under the connection already") from None
            if state is not None and state.startswith(_INTEGRITY_CONSTRAINT_CLASS):
                raise Conflict("the account breaks a constraint of the accounts table") from None
            raise

    def _open(self, row: AccountRow, field: str, sealed: bytes | None) -> Redacted[str] | None:
        return self._sealer.open_text(sealed, SealContext(row.tenant_id, field, row.id))

    def _to_domain(self, row: AccountRow) -> Account:
        return Account(
            id=row.id,
            tenant_id=row.tenant_id,
            connection_id=row.connection_id,
            external_id=self._open(row, EXTERNAL_ID_FIELD, row.external_id),
            baas_id=self._open(row, BAAS_ID_FIELD, row.baas_id),
            display_name=row.display_name,
            metadata=dict(row.metadata_),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


def _sqlstate(exc: DBAPIError) -> str | None:
    details = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return details.get("C") if isinstance(details, dict) else None
